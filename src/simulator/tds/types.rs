//! The SQL types the simulator sends and their TDS encodings (MS-TDS §2.2.5.4-5):
//! TYPE_INFO in COLMETADATA and the value bytes in ROW, as a real server sends them
//! for the catalog results in sqlserver.md (INTN, BITN, NUMERICN, DATETIMN,
//! DATETIMEOFFSETN, GUIDTYPE, FLTN, BIGVARCHR/BIGCHAR, NVARCHAR/NCHAR, BIGVARBIN,
//! XML, SSVARIANT).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// SQL_Latin1_General_CP1_CI_AS, the default server collation, as its 5 TDS bytes.
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// Marker for `(max)` lengths.
pub const MAX: u16 = 0xFFFF;

/// A column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// tinyint.
    TinyInt,
    /// smallint.
    SmallInt,
    /// int.
    Int,
    /// bigint.
    BigInt,
    /// bit.
    Bit,
    /// numeric(p, s).
    Numeric(u8, u8),
    /// datetime.
    DateTime,
    /// datetimeoffset(7).
    DateTimeOffset,
    /// uniqueidentifier.
    Guid,
    /// real.
    Real,
    /// float.
    Float,
    /// varchar(n) (single-byte, Latin-1 here).
    VarChar(u16),
    /// char(n).
    Char(u16),
    /// nvarchar(n) in characters, or [`MAX`].
    NVarChar(u16),
    /// nchar(n).
    NChar(u16),
    /// varbinary(n) or [`MAX`].
    VarBinary(u16),
    /// xml.
    Xml,
    /// sql_variant (holding nvarchar or int here).
    Variant,
}

/// A value of a column or parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// Any integer type, bit, or a numeric with scale 0.
    Int(i64),
    /// real or float.
    Float(f64),
    /// Character data.
    Str(String),
    /// Binary data.
    Bytes(Vec<u8>),
    /// datetime (no zone).
    DateTime(PrimitiveDateTime),
    /// datetimeoffset.
    DateTimeOffset(OffsetDateTime),
    /// uniqueidentifier as its canonical 16 bytes (big-endian text order).
    Guid([u8; 16]),
}

impl SqlType {
    /// Parses a declared type such as `numeric(25,0)` or `nvarchar(128)`.
    pub fn parse(decl: &str) -> Option<SqlType> {
        let d = decl.trim().to_ascii_lowercase();
        let (name, args) = match d.find('(') {
            Some(i) => (
                d[..i].trim().to_string(),
                d[i + 1..].trim_end_matches(')').to_string(),
            ),
            None => (d.clone(), String::new()),
        };
        let nums: Vec<u16> = args
            .split(',')
            .filter_map(|a| {
                let a = a.trim();
                if a == "max" {
                    Some(MAX)
                } else {
                    a.parse().ok()
                }
            })
            .collect();
        let n0 = nums.first().copied();
        Some(match name.as_str() {
            "tinyint" => SqlType::TinyInt,
            "smallint" => SqlType::SmallInt,
            "int" | "integer" => SqlType::Int,
            "bigint" => SqlType::BigInt,
            "bit" => SqlType::Bit,
            "numeric" | "decimal" => SqlType::Numeric(
                n0.unwrap_or(18).min(38) as u8,
                nums.get(1).copied().unwrap_or(0).min(38) as u8,
            ),
            "datetime" => SqlType::DateTime,
            "datetimeoffset" => SqlType::DateTimeOffset,
            "uniqueidentifier" => SqlType::Guid,
            "real" => SqlType::Real,
            "float" => SqlType::Float,
            "varchar" => SqlType::VarChar(n0.unwrap_or(1).min(8000)),
            "char" => SqlType::Char(n0.unwrap_or(1).min(8000)),
            "nvarchar" | "sysname" => SqlType::NVarChar(n0.unwrap_or(128)),
            "nchar" => SqlType::NChar(n0.unwrap_or(1).min(4000)),
            "varbinary" => SqlType::VarBinary(n0.unwrap_or(1)),
            "xml" => SqlType::Xml,
            "sql_variant" => SqlType::Variant,
            _ => return None,
        })
    }

    /// The type a value of unknown origin (an expression) is sent as.
    pub fn infer(v: &Value) -> SqlType {
        match v {
            Value::Null | Value::Int(_) => match v {
                Value::Int(i) if i32::try_from(*i).is_err() => SqlType::BigInt,
                _ => SqlType::Int,
            },
            Value::Float(_) => SqlType::Float,
            Value::Str(_) => SqlType::NVarChar(4000),
            Value::Bytes(_) => SqlType::VarBinary(8000),
            Value::DateTime(_) => SqlType::DateTime,
            Value::DateTimeOffset(_) => SqlType::DateTimeOffset,
            Value::Guid(_) => SqlType::Guid,
        }
    }

    /// Appends TYPE_INFO (§2.2.5.6).
    pub fn encode_type_info(&self, out: &mut Vec<u8>) {
        match *self {
            SqlType::TinyInt => out.extend_from_slice(&[0x26, 1]),
            SqlType::SmallInt => out.extend_from_slice(&[0x26, 2]),
            SqlType::Int => out.extend_from_slice(&[0x26, 4]),
            SqlType::BigInt => out.extend_from_slice(&[0x26, 8]),
            SqlType::Bit => out.extend_from_slice(&[0x68, 1]),
            SqlType::Numeric(p, s) => out.extend_from_slice(&[0x6C, numeric_len(p), p, s]),
            SqlType::DateTime => out.extend_from_slice(&[0x6F, 8]),
            SqlType::DateTimeOffset => out.extend_from_slice(&[0x2B, 7]),
            SqlType::Guid => out.extend_from_slice(&[0x24, 16]),
            SqlType::Real => out.extend_from_slice(&[0x6D, 4]),
            SqlType::Float => out.extend_from_slice(&[0x6D, 8]),
            SqlType::VarChar(n) | SqlType::Char(n) => {
                out.push(if matches!(self, SqlType::VarChar(_)) {
                    0xA7
                } else {
                    0xAF
                });
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(&COLLATION);
            }
            SqlType::NVarChar(n) | SqlType::NChar(n) => {
                out.push(if matches!(self, SqlType::NVarChar(_)) {
                    0xE7
                } else {
                    0xEF
                });
                let bytes = if n == MAX { MAX } else { n.saturating_mul(2) };
                out.extend_from_slice(&bytes.to_le_bytes());
                out.extend_from_slice(&COLLATION);
            }
            SqlType::VarBinary(n) => {
                out.push(0xA5);
                out.extend_from_slice(&n.to_le_bytes());
            }
            SqlType::Xml => out.extend_from_slice(&[0xF1, 0]),
            SqlType::Variant => {
                out.push(0x62);
                out.extend_from_slice(&8009u32.to_le_bytes());
            }
        }
    }

    /// Appends a value in this type's wire form (§2.2.5.5); the value is converted
    /// to the column's type first (text to datetime, integer to numeric...).
    pub fn encode_value(&self, v: &Value, out: &mut Vec<u8>) {
        let v = v.coerce(*self);
        match (*self, &v) {
            (SqlType::Variant, Value::Null) => out.extend_from_slice(&0u32.to_le_bytes()),
            (SqlType::Xml, Value::Null) => out.extend_from_slice(&u64::MAX.to_le_bytes()),
            (SqlType::NVarChar(MAX) | SqlType::VarBinary(MAX), Value::Null) => {
                out.extend_from_slice(&u64::MAX.to_le_bytes())
            }
            (
                SqlType::VarChar(_)
                | SqlType::Char(_)
                | SqlType::NVarChar(_)
                | SqlType::NChar(_)
                | SqlType::VarBinary(_),
                Value::Null,
            ) => out.extend_from_slice(&0xFFFFu16.to_le_bytes()),
            (_, Value::Null) => out.push(0),
            (SqlType::TinyInt, Value::Int(i)) => out.extend_from_slice(&[1, *i as u8]),
            (SqlType::SmallInt, Value::Int(i)) => {
                out.push(2);
                out.extend_from_slice(&(*i as i16).to_le_bytes());
            }
            (SqlType::Int, Value::Int(i)) => {
                out.push(4);
                out.extend_from_slice(&(*i as i32).to_le_bytes());
            }
            (SqlType::BigInt, Value::Int(i)) => {
                out.push(8);
                out.extend_from_slice(&i.to_le_bytes());
            }
            (SqlType::Bit, Value::Int(i)) => out.extend_from_slice(&[1, u8::from(*i != 0)]),
            (SqlType::Numeric(p, s), Value::Int(i)) => {
                let scaled = (*i as i128) * 10i128.pow(s as u32);
                encode_numeric(p, scaled, out)
            }
            (SqlType::Numeric(p, s), Value::Str(t)) if t.parse::<i128>().is_ok() => {
                let v = t.parse::<i128>().unwrap_or(0);
                encode_numeric(p, v.saturating_mul(10i128.pow(s as u32)), out)
            }
            (SqlType::Numeric(p, s), Value::Float(f)) => {
                let scaled = (f * 10f64.powi(s as i32)).round() as i128;
                encode_numeric(p, scaled, out)
            }
            (SqlType::DateTime, Value::DateTime(dt)) => {
                out.push(8);
                let base = Date::from_calendar_date(1900, Month::January, 1).unwrap_or(Date::MIN);
                let days = (dt.date() - base).whole_days() as i32;
                let t = dt.time();
                let ns = t.hour() as u64 * 3_600_000_000_000
                    + t.minute() as u64 * 60_000_000_000
                    + t.second() as u64 * 1_000_000_000
                    + t.nanosecond() as u64;
                let ticks = (ns * 3 / 10_000_000) as u32; // 1/300 s
                out.extend_from_slice(&days.to_le_bytes());
                out.extend_from_slice(&ticks.to_le_bytes());
            }
            (SqlType::DateTimeOffset, Value::DateTimeOffset(dto)) => {
                out.push(10);
                let utc = dto.to_offset(time::UtcOffset::UTC);
                let t = utc.time();
                let hundred_ns =
                    (t.hour() as u64 * 3600 + t.minute() as u64 * 60 + t.second() as u64)
                        * 10_000_000
                        + t.nanosecond() as u64 / 100;
                out.extend_from_slice(&hundred_ns.to_le_bytes()[..5]);
                let base = Date::from_calendar_date(1, Month::January, 1).unwrap_or(Date::MIN);
                let days = (utc.date() - base).whole_days() as u32;
                out.extend_from_slice(&days.to_le_bytes()[..3]);
                let off = dto.offset().whole_minutes();
                out.extend_from_slice(&off.to_le_bytes());
            }
            (SqlType::Guid, Value::Guid(g)) => {
                out.push(16);
                out.extend_from_slice(&guid_to_wire(g));
            }
            (SqlType::Real, Value::Float(f)) => {
                out.push(4);
                out.extend_from_slice(&(*f as f32).to_le_bytes());
            }
            (SqlType::Float, Value::Float(f)) => {
                out.push(8);
                out.extend_from_slice(&f.to_le_bytes());
            }
            (SqlType::VarChar(_), Value::Str(s)) | (SqlType::Char(_), Value::Str(s)) => {
                let b = latin1(s, self);
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(&b);
            }
            (SqlType::NVarChar(MAX), Value::Str(s)) => encode_plp(&utf16(s), out),
            (SqlType::NVarChar(_), Value::Str(s)) | (SqlType::NChar(_), Value::Str(s)) => {
                let mut b = utf16(s);
                if let SqlType::NChar(n) = self {
                    b.resize(*n as usize * 2, 0);
                    for c in b.chunks_mut(2).skip(s.encode_utf16().count()) {
                        c[0] = b' ';
                    }
                }
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(&b);
            }
            (SqlType::VarBinary(MAX), Value::Bytes(b)) => encode_plp(b, out),
            (SqlType::VarBinary(_), Value::Bytes(b)) => {
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(b);
            }
            (SqlType::Xml, Value::Str(s)) => encode_plp(&utf16(s), out),
            (SqlType::Variant, Value::Str(s)) => {
                let b = utf16(s);
                out.extend_from_slice(&((2 + 7 + b.len()) as u32).to_le_bytes());
                out.extend_from_slice(&[0xE7, 7]);
                out.extend_from_slice(&COLLATION);
                out.extend_from_slice(&(b.len().max(2) as u16).to_le_bytes());
                out.extend_from_slice(&b);
            }
            (SqlType::Variant, Value::Int(i)) => {
                out.extend_from_slice(&(2u32 + 4).to_le_bytes());
                out.extend_from_slice(&[0x38, 0]);
                out.extend_from_slice(&(*i as i32).to_le_bytes());
            }
            // Anything left could not be converted: send NULL in the column's form.
            (t, _) => t.encode_value(&Value::Null, out),
        }
    }
}

fn numeric_len(p: u8) -> u8 {
    match p {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

fn encode_numeric(p: u8, v: i128, out: &mut Vec<u8>) {
    let len = numeric_len(p);
    out.push(len);
    out.push(u8::from(v >= 0));
    let mag = v.unsigned_abs().to_le_bytes();
    out.extend_from_slice(&mag[..(len - 1) as usize]);
}

fn encode_plp(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    for chunk in data.chunks(8000) {
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// UTF-16LE bytes of a string.
pub fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|c| c.to_le_bytes()).collect()
}

fn latin1(s: &str, ty: &SqlType) -> Vec<u8> {
    let mut b: Vec<u8> = s
        .chars()
        .map(|c| {
            if (c as u32) < 256 {
                c as u32 as u8
            } else {
                b'?'
            }
        })
        .collect();
    if let SqlType::Char(n) = ty {
        b.resize(*n as usize, b' ');
    }
    b
}

/// The wire order of a GUID: the first three groups little-endian.
pub fn guid_to_wire(g: &[u8; 16]) -> [u8; 16] {
    let mut w = *g;
    w[0..4].reverse();
    w[4..6].reverse();
    w[6..8].reverse();
    w
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn parse_guid(s: &str) -> Option<[u8; 16]> {
    let h: String = s
        .trim()
        .trim_matches(['{', '}'])
        .chars()
        .filter(|c| *c != '-')
        .collect();
    let v = hex::decode(h).ok()?;
    v.try_into().ok()
}

/// Formats a GUID as SQL Server shows it (upper case).
pub fn format_guid(g: &[u8; 16]) -> String {
    let h = hex::encode_upper(g);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.fffffff]` (zone ignored).
pub fn parse_datetime(s: &str) -> Option<PrimitiveDateTime> {
    let s = s.trim();
    let (d, t) = s.split_at(s.find([' ', 'T']).unwrap_or(s.len()));
    let mut dp = d.split('-').map(|x| x.parse::<i32>().ok());
    let (y, m, day) = (dp.next()??, dp.next()??, dp.next()??);
    let date = Date::from_calendar_date(y, Month::try_from(m as u8).ok()?, day as u8).ok()?;
    let t = t.trim_start_matches([' ', 'T']);
    let t = t.split([' ', '+', 'Z']).next().unwrap_or("");
    if t.is_empty() {
        return Some(PrimitiveDateTime::new(date, Time::MIDNIGHT));
    }
    let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
    let mut tp = hms.split(':').map(|x| x.parse::<u8>().ok());
    let (h, mi) = (tp.next()??, tp.next()??);
    let sec = tp.next().flatten().unwrap_or(0);
    let mut ns = 0u32;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        ns = digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32);
    }
    Some(PrimitiveDateTime::new(
        date,
        Time::from_hms_nano(h, mi, sec, ns).ok()?,
    ))
}

/// Formats a datetime as SQL Server's text form with milliseconds.
pub fn format_datetime(dt: &PrimitiveDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

impl Value {
    /// Converts the value to what a column of type `ty` holds, where it can.
    pub fn coerce(&self, ty: SqlType) -> Value {
        match (ty, self) {
            (_, Value::Null) => Value::Null,
            (SqlType::DateTime, Value::Str(s)) => parse_datetime(s)
                .map(Value::DateTime)
                .unwrap_or(Value::Null),
            (SqlType::DateTime, Value::DateTimeOffset(d)) => {
                Value::DateTime(PrimitiveDateTime::new(d.date(), d.time()))
            }
            (SqlType::DateTimeOffset, Value::Str(s)) => parse_datetime(s)
                .map(|d| Value::DateTimeOffset(d.assume_utc()))
                .unwrap_or(Value::Null),
            (SqlType::DateTimeOffset, Value::DateTime(d)) => Value::DateTimeOffset(d.assume_utc()),
            (SqlType::Guid, Value::Str(s)) => parse_guid(s).map(Value::Guid).unwrap_or(Value::Null),
            (SqlType::Guid, Value::Bytes(b)) if b.len() == 16 => {
                let mut g = [0u8; 16];
                g.copy_from_slice(b);
                Value::Guid(g)
            }
            (SqlType::Real | SqlType::Float, Value::Int(i)) => Value::Float(*i as f64),
            (SqlType::Real | SqlType::Float, Value::Str(s)) => {
                s.trim().parse().map(Value::Float).unwrap_or(Value::Null)
            }
            (
                SqlType::TinyInt
                | SqlType::SmallInt
                | SqlType::Int
                | SqlType::BigInt
                | SqlType::Bit,
                Value::Float(f),
            ) => Value::Int(*f as i64),
            // Past i64 (LSNs of real servers) a numeric stays text for encode_value.
            (SqlType::Numeric(..), Value::Str(s)) => match s.trim().parse() {
                Ok(i) => Value::Int(i),
                Err(_) if s.trim().parse::<i128>().is_ok() => Value::Str(s.trim().to_string()),
                Err(_) => Value::Null,
            },
            (
                SqlType::TinyInt
                | SqlType::SmallInt
                | SqlType::Int
                | SqlType::BigInt
                | SqlType::Bit,
                Value::Str(s),
            ) => s.trim().parse().map(Value::Int).unwrap_or(Value::Null),
            (
                SqlType::VarChar(_)
                | SqlType::Char(_)
                | SqlType::NVarChar(_)
                | SqlType::NChar(_)
                | SqlType::Xml
                | SqlType::Variant,
                v,
            ) if !(matches!(v, Value::Str(_))
                || (ty == SqlType::Variant && matches!(v, Value::Int(_)))) =>
            {
                Value::Str(v.to_text())
            }
            (SqlType::VarBinary(_), Value::Str(s)) => Value::Bytes(s.as_bytes().to_vec()),
            _ => self.clone(),
        }
    }

    /// The value as text (how it would print).
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
            Value::Bytes(b) => format!("0x{}", hex::encode_upper(b)),
            Value::DateTime(d) => format_datetime(d),
            Value::DateTimeOffset(d) => format!(
                "{} {}",
                format_datetime(&PrimitiveDateTime::new(d.date(), d.time())),
                d.offset()
            ),
            Value::Guid(g) => format_guid(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_lsn_encoding() {
        let mut out = Vec::new();
        SqlType::Numeric(25, 0).encode_value(&Value::Int(37_000_012_345_600_001), &mut out);
        assert_eq!(out[0], 13);
        assert_eq!(out[1], 1);
        assert_eq!(
            u64::from_le_bytes(out[2..10].try_into().unwrap()),
            37_000_012_345_600_001
        );
    }

    #[test]
    fn parses_types_and_dates() {
        assert_eq!(
            SqlType::parse("numeric(20,0)"),
            Some(SqlType::Numeric(20, 0))
        );
        assert_eq!(
            SqlType::parse("nvarchar(max)"),
            Some(SqlType::NVarChar(MAX))
        );
        let d = parse_datetime("2026-11-25T03:00:00.123").unwrap();
        assert_eq!(format_datetime(&d), "2026-11-25 03:00:00.123");
        let g = parse_guid("01234567-89ab-cdef-0123-456789abcdef").unwrap();
        assert_eq!(format_guid(&g), "01234567-89AB-CDEF-0123-456789ABCDEF");
    }
}
