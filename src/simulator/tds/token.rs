//! Encoders for the tokens of a server reply (MS-TDS §2.2.7): COLMETADATA, ROW,
//! DONE/DONEPROC/DONEINPROC, RETURNSTATUS, INFO, ERROR, ENVCHANGE and LOGINACK.

use super::types::{utf16, SqlType, Value, COLLATION};

/// DONE status: more results follow.
pub const DONE_MORE: u16 = 0x01;
/// DONE status: the statement failed.
pub const DONE_ERROR: u16 = 0x02;
/// DONE status: the row count is valid.
pub const DONE_COUNT: u16 = 0x10;
/// DONE status: acknowledges an attention.
pub const DONE_ATTN: u16 = 0x20;

/// The server name sent in INFO/ERROR tokens and LOGINACK.
pub const SERVER_NAME: &str = "PACSSIM";

/// A result column: name and type.
#[derive(Debug, Clone)]
pub struct Column {
    /// Column name (may be empty for an unnamed expression).
    pub name: String,
    /// Its SQL type.
    pub ty: SqlType,
}

impl Column {
    /// A column of the given name and type.
    pub fn new(name: impl Into<String>, ty: SqlType) -> Self {
        Self {
            name: name.into(),
            ty,
        }
    }
}

fn b_varchar(s: &str, out: &mut Vec<u8>) {
    let u = utf16(s);
    out.push((u.len() / 2).min(255) as u8);
    out.extend_from_slice(&u[..u.len().min(510)]);
}

fn us_varchar(s: &str, out: &mut Vec<u8>) {
    let u = utf16(s);
    let n = (u.len() / 2).min(65535);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&u[..n * 2]);
}

/// COLMETADATA (0x81).
pub fn colmetadata(cols: &[Column], out: &mut Vec<u8>) {
    out.push(0x81);
    out.extend_from_slice(&(cols.len() as u16).to_le_bytes());
    for c in cols {
        out.extend_from_slice(&0u32.to_le_bytes()); // user type
        out.extend_from_slice(&0x0001u16.to_le_bytes()); // flags: nullable
        c.ty.encode_type_info(out);
        b_varchar(&c.name, out);
    }
}

/// ROW (0xD1).
pub fn row(cols: &[Column], values: &[Value], out: &mut Vec<u8>) {
    out.push(0xD1);
    for (i, c) in cols.iter().enumerate() {
        c.ty.encode_value(values.get(i).unwrap_or(&Value::Null), out);
    }
}

fn done_token(token: u8, status: u16, curcmd: u16, rows: u64, out: &mut Vec<u8>) {
    out.push(token);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&curcmd.to_le_bytes());
    out.extend_from_slice(&rows.to_le_bytes());
}

/// DONE (0xFD).
pub fn done(status: u16, curcmd: u16, rows: u64, out: &mut Vec<u8>) {
    done_token(0xFD, status, curcmd, rows, out)
}

/// DONEPROC (0xFE).
pub fn doneproc(status: u16, curcmd: u16, rows: u64, out: &mut Vec<u8>) {
    done_token(0xFE, status, curcmd, rows, out)
}

/// DONEINPROC (0xFF).
pub fn doneinproc(status: u16, curcmd: u16, rows: u64, out: &mut Vec<u8>) {
    done_token(0xFF, status, curcmd, rows, out)
}

/// RETURNSTATUS (0x79).
pub fn returnstatus(value: i32, out: &mut Vec<u8>) {
    out.push(0x79);
    out.extend_from_slice(&value.to_le_bytes());
}

/// INFO or ERROR: no procedure name, line 1 (a batch's statements are not numbered).
fn message(token: u8, number: i32, state: u8, class: u8, text: &str, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    body.extend_from_slice(&number.to_le_bytes());
    body.push(state);
    body.push(class);
    us_varchar(text, &mut body);
    b_varchar(SERVER_NAME, &mut body);
    b_varchar("", &mut body);
    body.extend_from_slice(&1u32.to_le_bytes());
    out.push(token);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
}

/// INFO (0xAB), class 0..=10.
pub fn info(number: i32, state: u8, class: u8, text: &str, out: &mut Vec<u8>) {
    message(0xAB, number, state, class, text, out)
}

/// ERROR (0xAA).
pub fn error(number: i32, state: u8, class: u8, text: &str, out: &mut Vec<u8>) {
    message(0xAA, number, state, class, text, out)
}

/// ENVCHANGE (0xE3) with string values (database 1, language 2, packet size 4).
pub fn envchange_str(kind: u8, new: &str, old: &str, out: &mut Vec<u8>) {
    let mut body = vec![kind];
    b_varchar(new, &mut body);
    b_varchar(old, &mut body);
    out.push(0xE3);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
}

/// ENVCHANGE type 7: the SQL collation.
pub fn envchange_collation(out: &mut Vec<u8>) {
    let mut body = vec![7u8, 5];
    body.extend_from_slice(&COLLATION);
    body.push(0);
    out.push(0xE3);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
}

/// LOGINACK (0xAD) for TDS 7.4.
pub fn loginack(out: &mut Vec<u8>) {
    let mut body = vec![1u8];
    body.extend_from_slice(&0x7400_0004u32.to_be_bytes());
    b_varchar("Microsoft SQL Server", &mut body);
    body.extend_from_slice(&[15, 0, 0x11, 0x03]); // 15.0.4355
    out.push(0xAD);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
}

/// A whole result set: COLMETADATA, ROWs, and DONE with a count.
pub fn result_set(cols: &[Column], rows: &[Vec<Value>], more: bool, out: &mut Vec<u8>) {
    colmetadata(cols, out);
    for r in rows {
        row(cols, r, out);
    }
    let status = DONE_COUNT | if more { DONE_MORE } else { 0 };
    done(status, 0xC1, rows.len() as u64, out);
}
