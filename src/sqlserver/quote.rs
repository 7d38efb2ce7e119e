//! Quoting for T-SQL text built by pacsbak. Database names come from policies and
//! from msdb: both are treated as hostile (../shared/spec/sqlserver.md).

/// `[name]` with every `]` doubled.
pub fn ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `N'text'` with every `'` doubled.
pub fn string(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_names() {
        assert_eq!(ident("PACS"), "[PACS]");
        assert_eq!(ident("a]; DROP DATABASE x;--"), "[a]]; DROP DATABASE x;--]");
        assert_eq!(string("O'Brien"), "N'O''Brien'");
        assert_eq!(string(r"E:\Backup\x'.bak"), r"N'E:\Backup\x''.bak'");
    }
}
