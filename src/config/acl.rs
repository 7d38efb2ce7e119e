//! Who may read a secrets file on Windows: its DACL, held to "the account pacsbak
//! runs as, SYSTEM and Administrators, nobody else" (as group/other mode bits are
//! on Unix). The evaluation is plain data, so it is tested on every platform; only
//! reading the DACL (`read_dacl`) needs Windows.

/// One entry of a DACL, with its trustee resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    /// The trustee's SID, `S-1-5-...`.
    pub sid: String,
    /// `DOMAIN\name` when it resolves, else the SID.
    pub name: String,
    /// An access-allowed entry (deny entries only narrow access: not counted).
    pub allow: bool,
    /// The access mask.
    pub mask: u32,
}

/// SIDs that may always read: SYSTEM, BUILTIN\Administrators, OWNER RIGHTS.
const TRUSTED: &[&str] = &["S-1-5-18", "S-1-5-32-544", "S-1-3-4"];

/// Rights that read the file's bytes, or let a trustee give itself that right:
/// FILE_READ_DATA, GENERIC_READ, GENERIC_ALL, MAXIMUM_ALLOWED, WRITE_DAC,
/// WRITE_OWNER.
const READS: u32 =
    0x0000_0001 | 0x8000_0000 | 0x1000_0000 | 0x0200_0000 | 0x0004_0000 | 0x0008_0000;

/// The trustees beyond the account running pacsbak, SYSTEM and Administrators
/// that may read the file. `None` for the DACL means no DACL at all: everyone
/// may. A SID that could not be read (empty) is never trusted.
pub fn wide_readers(dacl: Option<&[Ace]>, me: &str) -> Vec<String> {
    let Some(aces) = dacl else {
        return vec!["Everyone (the file has no DACL)".into()];
    };
    let mut out: Vec<String> = aces
        .iter()
        .filter(|a| a.allow && a.mask & READS != 0)
        .filter(|a| a.sid.is_empty() || (a.sid != me && !TRUSTED.contains(&a.sid.as_str())))
        .map(|a| a.name.clone())
        .collect();
    out.dedup();
    out
}

/// The command that narrows the file to `account` (the one pacsbak runs as),
/// SYSTEM and Administrators, by SID so it works on any Windows language.
pub fn fix_command(path: &std::path::Path, account: &str) -> String {
    format!(
        "icacls \"{}\" /inheritance:r /grant:r \"{account}:R\" *S-1-5-18:F *S-1-5-32-544:F",
        path.display()
    )
}

/// The DACL of `path` and the current user: (DACL, my SID, my name).
#[cfg(windows)]
pub fn read_dacl(path: &std::path::Path) -> std::io::Result<(Option<Vec<Ace>>, String, String)> {
    win::read(path)
}

#[cfg(windows)]
mod win {
    use std::os::windows::ffi::OsStrExt;

    use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSidToStringSidW, GetNamedSecurityInfoW, SE_FILE_OBJECT,
    };
    use windows_sys::Win32::Security::{
        AclSizeInformation, GetAce, GetAclInformation, GetTokenInformation, LookupAccountSidW,
        TokenUser, ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, ACL_SIZE_INFORMATION,
        DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, TOKEN_QUERY, TOKEN_USER,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    use super::Ace;

    fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
        s.encode_wide().chain(std::iter::once(0)).collect()
    }

    fn from_wide(p: *const u16) -> String {
        if p.is_null() {
            return String::new();
        }
        // SAFETY: `p` is a NUL-terminated UTF-16 string the API returned.
        unsafe {
            let mut n = 0;
            while *p.add(n) != 0 {
                n += 1;
            }
            String::from_utf16_lossy(std::slice::from_raw_parts(p, n))
        }
    }

    fn sid_string(sid: PSID) -> String {
        let mut s: *mut u16 = std::ptr::null_mut();
        // SAFETY: `sid` is valid for the descriptor's lifetime; `s` is freed below.
        unsafe {
            if ConvertSidToStringSidW(sid, &mut s) == 0 {
                return String::new();
            }
            let out = from_wide(s);
            LocalFree(s as _);
            out
        }
    }

    fn account_name(sid: PSID) -> Option<String> {
        let mut name = [0u16; 256];
        let mut domain = [0u16; 256];
        let (mut n, mut d, mut use_) = (256u32, 256u32, 0i32);
        // SAFETY: buffers and their lengths are as the API expects.
        let ok = unsafe {
            LookupAccountSidW(
                std::ptr::null(),
                sid,
                name.as_mut_ptr(),
                &mut n,
                domain.as_mut_ptr(),
                &mut d,
                &mut use_,
            )
        };
        if ok == 0 {
            return None;
        }
        let name = String::from_utf16_lossy(&name[..n as usize]);
        let domain = String::from_utf16_lossy(&domain[..d as usize]);
        Some(if domain.is_empty() {
            name
        } else {
            format!("{domain}\\{name}")
        })
    }

    fn me() -> std::io::Result<(String, String)> {
        // SAFETY: the token is closed; the buffer is sized by the first call.
        unsafe {
            let mut token: HANDLE = std::ptr::null_mut();
            if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut len = 0u32;
            GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut len);
            // u64s: TOKEN_USER holds a pointer and needs its alignment.
            let mut buf = vec![0u64; (len as usize).div_ceil(8)];
            let ok = GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len);
            CloseHandle(token);
            if ok == 0 {
                return Err(std::io::Error::last_os_error());
            }
            let user = &*(buf.as_ptr() as *const TOKEN_USER);
            let sid = user.User.Sid;
            Ok((
                sid_string(sid),
                account_name(sid).unwrap_or_else(|| sid_string(sid)),
            ))
        }
    }

    pub fn read(path: &std::path::Path) -> std::io::Result<(Option<Vec<Ace>>, String, String)> {
        let name = wide(path.as_os_str());
        let mut dacl: *mut ACL = std::ptr::null_mut();
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: out-pointers point into the descriptor `sd`, freed at the end.
        let err = unsafe {
            GetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut dacl,
                std::ptr::null_mut(),
                &mut sd,
            )
        };
        if err != 0 {
            return Err(std::io::Error::from_raw_os_error(err as i32));
        }
        let aces = if dacl.is_null() {
            None
        } else {
            let mut info = ACL_SIZE_INFORMATION {
                AceCount: 0,
                AclBytesInUse: 0,
                AclBytesFree: 0,
            };
            let mut out = Vec::new();
            // SAFETY: `dacl` is valid while `sd` lives; each ACE is read by its header.
            let read = unsafe {
                if GetAclInformation(
                    dacl,
                    (&mut info as *mut ACL_SIZE_INFORMATION).cast(),
                    std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
                    AclSizeInformation,
                ) == 0
                {
                    Err(std::io::Error::last_os_error())
                } else {
                    let mut failed = None;
                    for i in 0..info.AceCount {
                        let mut ace: *mut core::ffi::c_void = std::ptr::null_mut();
                        if GetAce(dacl, i, &mut ace) == 0 {
                            failed = Some(std::io::Error::last_os_error());
                            break;
                        }
                        let header = &*(ace as *const ACE_HEADER);
                        // Inherit-only entries are for children, not this file.
                        if header.AceFlags & 0x08 != 0 {
                            continue;
                        }
                        match header.AceType {
                            // Allowed (0), denied (1), allowed-callback (9): a mask
                            // and then the SID, 8 bytes into the entry.
                            0 | 1 | 9 => {
                                let a = ace as *const ACCESS_ALLOWED_ACE;
                                let sid: PSID = (ace as *mut u8).add(8).cast();
                                let s = sid_string(sid);
                                out.push(Ace {
                                    name: account_name(sid).unwrap_or_else(|| s.clone()),
                                    sid: s,
                                    allow: header.AceType != 1,
                                    mask: (*a).Mask,
                                });
                            }
                            // Any other kind is not understood here: counted as a
                            // reader, so the file is refused rather than trusted.
                            t => out.push(Ace {
                                sid: String::new(),
                                name: format!("an access entry of type {t} pacsbak cannot read"),
                                allow: true,
                                mask: u32::MAX,
                            }),
                        }
                    }
                    failed.map_or(Ok(()), Err)
                }
            };
            if let Err(e) = read {
                // SAFETY: `sd` was allocated by GetNamedSecurityInfoW.
                unsafe { LocalFree(sd as _) };
                return Err(e);
            }
            Some(out)
        };
        // SAFETY: `sd` was allocated by GetNamedSecurityInfoW.
        unsafe { LocalFree(sd as _) };
        let (me_sid, me_name) = me()?;
        Ok((aces, me_sid, me_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ace(sid: &str, name: &str, allow: bool, mask: u32) -> Ace {
        Ace {
            sid: sid.into(),
            name: name.into(),
            allow,
            mask,
        }
    }

    #[test]
    fn only_the_account_system_and_administrators_may_read() {
        let me = "S-1-5-80-1111";
        let tight = [
            ace("S-1-5-18", "NT AUTHORITY\\SYSTEM", true, 0x1f01ff),
            ace("S-1-5-32-544", "BUILTIN\\Administrators", true, 0x1f01ff),
            ace(me, "NT SERVICE\\pacsbak", true, 0x120089),
        ];
        assert!(wide_readers(Some(&tight), me).is_empty());
        // Inherited from C:\ProgramData: BUILTIN\Users may read.
        let mut wide = tight.to_vec();
        wide.push(ace("S-1-5-32-545", "BUILTIN\\Users", true, 0x1200a9));
        wide.push(ace("S-1-1-0", "Everyone", true, 0x8000_0000));
        // A deny entry and a right that reads nothing are not readers.
        wide.push(ace(
            "S-1-5-11",
            "NT AUTHORITY\\Authenticated Users",
            false,
            0x1f01ff,
        ));
        wide.push(ace(
            "S-1-5-32-547",
            "BUILTIN\\Power Users",
            true,
            0x0010_0000,
        ));
        assert_eq!(
            wide_readers(Some(&wide), me),
            ["BUILTIN\\Users", "Everyone"]
        );
        // Another engineer's account, a right to rewrite the DACL, an entry that
        // could not be read: all readers.
        let other = [ace("S-1-5-21-9", "HOSP\\wang", true, 1)];
        assert_eq!(wide_readers(Some(&other), me).len(), 1);
        let dac = [ace("S-1-5-32-545", "Users", true, 0x0004_0000)];
        assert_eq!(wide_readers(Some(&dac), me).len(), 1);
        let unknown = [ace("", "type 5", true, u32::MAX)];
        assert_eq!(wide_readers(Some(&unknown), "").len(), 1);
        assert_eq!(wide_readers(None, me).len(), 1);
        assert!(
            fix_command(std::path::Path::new("C:\\x.pass"), "NT SERVICE\\pacsbak")
                .starts_with("icacls \"C:\\x.pass\" /inheritance:r")
        );
    }
}
