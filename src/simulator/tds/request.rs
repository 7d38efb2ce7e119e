//! Client requests after login: the SQL batch (§2.2.6.7: ALL_HEADERS, then UTF-16LE
//! text) and the RPC request (§2.2.6.6), of which the simulator runs sp_executesql
//! (ProcID 10, the way tiberius sends every parameterised query) and calls of other
//! procedures by name.

use time::{Date, Duration, Month, PrimitiveDateTime, Time};

use super::types::Value;

/// A parsed RPC call.
#[derive(Debug, Clone)]
pub struct RpcCall {
    /// Procedure name (`sp_executesql` for ProcID 10).
    pub proc_name: String,
    /// Parameters in order, with their names (may be empty).
    pub params: Vec<(String, Value)>,
}

struct Cur<'a> {
    d: &'a [u8],
    p: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.p + n > self.d.len() {
            return Err("request truncated".into());
        }
        let s = &self.d[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn utf16(&mut self, chars: usize) -> Result<String, String> {
        Ok(decode_utf16(self.take(chars * 2)?))
    }
}

fn decode_utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn skip_all_headers(d: &[u8]) -> usize {
    if d.len() >= 4 {
        let total = u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as usize;
        if total >= 4 && total <= d.len() && total < 1024 {
            return total;
        }
    }
    0
}

/// The text of a SQL batch.
pub fn parse_batch(d: &[u8]) -> String {
    decode_utf16(&d[skip_all_headers(d)..])
}

/// Parses an RPC request (only the first call of a batch of calls).
pub fn parse_rpc(d: &[u8]) -> Result<RpcCall, String> {
    let mut c = Cur {
        d,
        p: skip_all_headers(d),
    };
    let name_len = c.u16()?;
    let proc_name = if name_len == 0xFFFF {
        match c.u16()? {
            10 => "sp_executesql".to_string(),
            1 => "sp_cursor".to_string(),
            11 => "sp_prepare".to_string(),
            12 => "sp_execute".to_string(),
            13 => "sp_prepexec".to_string(),
            15 => "sp_unprepare".to_string(),
            id => format!("procid_{id}"),
        }
    } else {
        c.utf16(name_len as usize)?
    };
    let _flags = c.u16()?;
    let mut params = Vec::new();
    while c.p < d.len() {
        let b = d[c.p];
        if b == 0xFF || b == 0x80 || b == 0xFE {
            break; // next call in the batch: not supported, ignored
        }
        let n = c.u8()? as usize;
        let name = c.utf16(n)?;
        let _status = c.u8()?;
        let v = read_typed_value(&mut c)?;
        params.push((name, v));
    }
    Ok(RpcCall { proc_name, params })
}

fn read_plp(c: &mut Cur) -> Result<Option<Vec<u8>>, String> {
    let total = c.u64()?;
    if total == u64::MAX {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let n = c.u32()? as usize;
        if n == 0 {
            break;
        }
        out.extend_from_slice(c.take(n)?);
    }
    Ok(Some(out))
}

fn le_int(b: &[u8]) -> i64 {
    match b.len() {
        1 => b[0] as i64,
        2 => i16::from_le_bytes([b[0], b[1]]) as i64,
        4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_le_bytes(a)
        }
        _ => 0,
    }
}

fn le_uint(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    u64::from_le_bytes(a)
}

/// A `date` value (days since 0001-01-01); an error past the range of `date`.
fn date_from_days(days: u64) -> Result<Date, String> {
    let base = Date::from_calendar_date(1, Month::January, 1).unwrap_or(Date::MIN);
    i64::try_from(days)
        .ok()
        .and_then(|d| base.checked_add(Duration::days(d)))
        .ok_or_else(|| "date out of range".to_string())
}

fn time_from(b: &[u8], scale: u8) -> Time {
    let units = le_uint(b);
    let ns = units as u128 * 10u128.pow(9 - scale.min(7) as u32);
    let secs = (ns / 1_000_000_000) as u64;
    Time::from_hms_nano(
        (secs / 3600 % 24) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
        (ns % 1_000_000_000) as u32,
    )
    .unwrap_or(Time::MIDNIGHT)
}

fn read_typed_value(c: &mut Cur) -> Result<Value, String> {
    let ty = c.u8()?;
    Ok(match ty {
        0x1F => Value::Null,
        0x30 => Value::Int(c.u8()? as i64),
        0x34 => Value::Int(le_int(c.take(2)?)),
        0x38 => Value::Int(le_int(c.take(4)?)),
        0x7F => Value::Int(le_int(c.take(8)?)),
        0x32 => Value::Int(c.u8()? as i64),
        0x3B => Value::Float(f32::from_le_bytes(c.take(4)?.try_into().map_err(|_| "real")?) as f64),
        0x3E => Value::Float(f64::from_le_bytes(
            c.take(8)?.try_into().map_err(|_| "float")?,
        )),
        0x26 | 0x68 | 0x6D | 0x24 | 0x6F | 0x6E => {
            let _max = c.u8()?;
            let n = c.u8()? as usize;
            let b = c.take(n)?;
            match (ty, n) {
                (_, 0) => Value::Null,
                (0x26 | 0x68, _) => Value::Int(le_int(b)),
                (0x6D, 4) => Value::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
                (0x6D, 8) => Value::Float(f64::from_le_bytes(b.try_into().map_err(|_| "float")?)),
                (0x24, 16) => {
                    let mut g = [0u8; 16];
                    g.copy_from_slice(b);
                    Value::Guid(super::types::guid_to_wire(&g))
                }
                (0x6F, 8) => {
                    let days = le_int(&b[0..4]);
                    let ticks = le_uint(&b[4..8]);
                    let base =
                        Date::from_calendar_date(1900, Month::January, 1).unwrap_or(Date::MIN);
                    // 1/300 s ticks since midnight, at most a day's worth.
                    let ns = (ticks.min(25_920_000) as i64) * 10_000_000 / 3;
                    base.checked_add(Duration::days(days))
                        .and_then(|d| {
                            PrimitiveDateTime::new(d, Time::MIDNIGHT)
                                .checked_add(Duration::nanoseconds(ns))
                        })
                        .map(Value::DateTime)
                        .ok_or("datetime out of range")?
                }
                (0x6E, 8) => {
                    let hi = le_int(&b[0..4]);
                    let lo = le_uint(&b[4..8]) as i64;
                    Value::Float(((hi << 32) | lo) as f64 / 10000.0)
                }
                (0x6E, 4) => Value::Float(le_int(b) as f64 / 10000.0),
                _ => Value::Null,
            }
        }
        0x28 => {
            let n = c.u8()? as usize;
            if n == 0 {
                Value::Null
            } else {
                let b = c.take(n)?;
                Value::DateTime(PrimitiveDateTime::new(
                    date_from_days(le_uint(b))?,
                    Time::MIDNIGHT,
                ))
            }
        }
        0x29..=0x2B => {
            let scale = c.u8()?;
            let n = c.u8()? as usize;
            if n == 0 {
                Value::Null
            } else {
                let b = c.take(n)?;
                let tlen = match scale {
                    0..=2 => 3,
                    3..=4 => 4,
                    _ => 5,
                };
                let t = time_from(&b[..tlen.min(b.len())], scale);
                match ty {
                    0x29 => Value::Str(format!("{t}")),
                    _ => {
                        let days = b.get(tlen..tlen + 3).ok_or("date part missing")?;
                        let d = date_from_days(le_uint(days))?;
                        let dt = PrimitiveDateTime::new(d, t);
                        if ty == 0x2A {
                            Value::DateTime(dt)
                        } else {
                            let off = le_int(b.get(tlen + 3..tlen + 5).ok_or("offset missing")?);
                            let o = time::UtcOffset::from_whole_seconds(off as i32 * 60)
                                .unwrap_or(time::UtcOffset::UTC);
                            Value::DateTimeOffset(dt.assume_utc().to_offset(o))
                        }
                    }
                }
            }
        }
        0x6A | 0x6C | 0x37 | 0x3F => {
            let _len = c.u8()?;
            let _p = c.u8()?;
            let s = c.u8()?;
            let n = c.u8()? as usize;
            if n == 0 {
                Value::Null
            } else {
                let b = c.take(n)?;
                let sign = b[0];
                let mut a = [0u8; 16];
                a[..(n - 1).min(16)].copy_from_slice(&b[1..n.min(17)]);
                let mag = u128::from_le_bytes(a) as i128;
                let v = if sign == 1 { mag } else { mag.wrapping_neg() };
                if s == 0 {
                    Value::Int(v as i64)
                } else {
                    Value::Float(v as f64 / 10f64.powi(s as i32))
                }
            }
        }
        0xA7 | 0xAF | 0xE7 | 0xEF | 0xA5 | 0xAD => {
            let max = c.u16()?;
            if matches!(ty, 0xA7 | 0xAF | 0xE7 | 0xEF) {
                c.take(5)?;
            }
            let bytes = if max == 0xFFFF {
                read_plp(c)?
            } else {
                let n = c.u16()?;
                if n == 0xFFFF {
                    None
                } else {
                    Some(c.take(n as usize)?.to_vec())
                }
            };
            match bytes {
                None => Value::Null,
                Some(b) => match ty {
                    0xE7 | 0xEF => Value::Str(decode_utf16(&b)),
                    0xA7 | 0xAF => Value::Str(b.iter().map(|&x| x as char).collect()),
                    _ => Value::Bytes(b),
                },
            }
        }
        0xF1 => {
            if c.u8()? == 1 {
                for _ in 0..2 {
                    let n = c.u8()? as usize;
                    c.take(n * 2)?;
                }
                let n = c.u16()? as usize;
                c.take(n * 2)?;
            }
            match read_plp(c)? {
                None => Value::Null,
                Some(b) => Value::Str(decode_utf16(&b)),
            }
        }
        other => return Err(format!("unsupported parameter type 0x{other:02X}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bytes: &[u8]) -> Result<Value, String> {
        read_typed_value(&mut Cur { d: bytes, p: 0 })
    }

    #[test]
    fn malformed_parameters_are_errors_not_panics() {
        // datetimeoffset(7) whose value is too short for its date and offset parts.
        assert!(value(&[0x2B, 7, 5, 0, 0, 0, 0, 0]).is_err());
        // date past 9999-12-31.
        assert!(value(&[0x28, 3, 0xFF, 0xFF, 0xFF]).is_err());
        // datetime whose day count overflows the calendar.
        assert!(value(&[0x6F, 8, 8, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0]).is_err());
        // The smallest negative numeric(38) magnitude does not overflow.
        let mut n = vec![0x6C, 17, 38, 0, 17, 0];
        n.extend_from_slice(&[0xFF; 16]);
        assert!(value(&n).is_ok());
    }
}
