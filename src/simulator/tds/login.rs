//! The connection handshake: PRELOGIN (§2.2.6.5; the simulator answers
//! ENCRYPT_NOT_SUP, so everything after it is plaintext) and LOGIN7 (§2.2.6.4), whose
//! password is obfuscated by swapping nibbles and XOR 0xA5.

/// PRELOGIN option: version.
const PL_VERSION: u8 = 0;
/// PRELOGIN option: encryption.
const PL_ENCRYPTION: u8 = 1;
/// PRELOGIN option: instance.
const PL_INSTOPT: u8 = 2;
/// PRELOGIN option: thread id.
const PL_THREADID: u8 = 3;
/// PRELOGIN option: MARS.
const PL_MARS: u8 = 4;
/// ENCRYPT_NOT_SUP.
pub const ENCRYPT_NOT_SUP: u8 = 2;

/// What a client's PRELOGIN asked for.
#[derive(Debug, Default)]
pub struct PreLogin {
    /// The client's ENCRYPTION option, if sent.
    pub encryption: Option<u8>,
}

/// Parses a PRELOGIN request's option table.
pub fn parse_prelogin(data: &[u8]) -> Result<PreLogin, String> {
    let mut p = PreLogin::default();
    let mut i = 0;
    while i < data.len() && data[i] != 0xFF {
        if i + 5 > data.len() {
            return Err("PRELOGIN option table truncated".into());
        }
        let kind = data[i];
        let off = u16::from_be_bytes([data[i + 1], data[i + 2]]) as usize;
        let len = u16::from_be_bytes([data[i + 3], data[i + 4]]) as usize;
        if off + len > data.len() {
            return Err("PRELOGIN option outside the packet".into());
        }
        if kind == PL_ENCRYPTION && len >= 1 {
            p.encryption = Some(data[off]);
        }
        i += 5;
    }
    Ok(p)
}

/// The PRELOGIN reply: version 15.0.4355, encryption not supported, no MARS.
pub fn prelogin_reply(_thread_id: u32) -> Vec<u8> {
    let opts: [(u8, Vec<u8>); 5] = [
        (PL_VERSION, vec![15, 0, 0x11, 0x03, 0, 0]),
        (PL_ENCRYPTION, vec![ENCRYPT_NOT_SUP]),
        (PL_INSTOPT, vec![0]),
        (PL_THREADID, Vec::new()), // empty from a server (tiberius asserts it)
        (PL_MARS, vec![0]),
    ];
    let table_len = opts.len() * 5 + 1;
    let mut out = Vec::new();
    let mut data = Vec::new();
    for (kind, v) in &opts {
        out.push(*kind);
        out.extend_from_slice(&((table_len + data.len()) as u16).to_be_bytes());
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        data.extend_from_slice(v);
    }
    out.push(0xFF);
    out.extend_from_slice(&data);
    out
}

/// The fields of LOGIN7 the simulator uses.
#[derive(Debug, Default, Clone)]
pub struct Login7 {
    /// TDS version the client asked for.
    pub tds_version: u32,
    /// Requested packet size.
    pub packet_size: u32,
    /// Client host name.
    pub host_name: String,
    /// SQL login name.
    pub user_name: String,
    /// De-obfuscated password.
    pub password: String,
    /// Application name.
    pub app_name: String,
    /// Initial database, if any.
    pub database: String,
}

fn utf16_field(data: &[u8], table_pos: usize) -> Result<Vec<u8>, String> {
    if table_pos + 4 > data.len() {
        return Err("LOGIN7 offset table truncated".into());
    }
    let off = u16::from_le_bytes([data[table_pos], data[table_pos + 1]]) as usize;
    let chars = u16::from_le_bytes([data[table_pos + 2], data[table_pos + 3]]) as usize;
    let end = off + chars * 2;
    if end > data.len() {
        return Err("LOGIN7 field outside the packet".into());
    }
    Ok(data[off..end].to_vec())
}

fn decode_utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Parses LOGIN7 and de-obfuscates the password.
pub fn parse_login7(data: &[u8]) -> Result<Login7, String> {
    if data.len() < 94 {
        return Err("LOGIN7 shorter than its fixed part".into());
    }
    let u32_at = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let mut pw = utf16_field(data, 44)?;
    for b in pw.iter_mut() {
        *b ^= 0xA5;
        *b = b.rotate_left(4);
    }
    Ok(Login7 {
        tds_version: u32_at(4),
        packet_size: u32_at(8),
        host_name: decode_utf16(&utf16_field(data, 36)?),
        user_name: decode_utf16(&utf16_field(data, 40)?),
        password: decode_utf16(&pw),
        app_name: decode_utf16(&utf16_field(data, 48)?),
        database: decode_utf16(&utf16_field(data, 68)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deobfuscates_password() {
        // Build a minimal LOGIN7 with user "sa" and password "Pw1".
        let mut d = vec![0u8; 94];
        let user: Vec<u8> = "sa".encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
        let pw: Vec<u8> = "Pw1"
            .encode_utf16()
            .flat_map(|c| c.to_le_bytes())
            .map(|b| b.rotate_left(4) ^ 0xA5)
            .collect();
        d[40..42].copy_from_slice(&94u16.to_le_bytes());
        d[42..44].copy_from_slice(&2u16.to_le_bytes());
        d[44..46].copy_from_slice(&98u16.to_le_bytes());
        d[46..48].copy_from_slice(&3u16.to_le_bytes());
        for p in [36, 48, 68] {
            d[p..p + 2].copy_from_slice(&94u16.to_le_bytes());
        }
        d.extend_from_slice(&user);
        d.extend_from_slice(&pw);
        let l = parse_login7(&d).unwrap();
        assert_eq!(l.user_name, "sa");
        assert_eq!(l.password, "Pw1");
    }
}
