//! A T-SQL tokenizer: `[bracketed]` identifiers with `]]` escapes, `"quoted"`
//! identifiers, `'strings'` and `N'strings'` with `''` escapes, numbers, `@variables`,
//! `@@functions`, operators and comments. Errors carry SQL Server's numbers (105 for an
//! unclosed quotation mark) so a malformed batch gets a message, not a dropped
//! connection.

/// One token of T-SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A bare word: keyword or identifier, as written.
    Word(String),
    /// A `[quoted]` or `"quoted"` identifier, unescaped.
    QuotedIdent(String),
    /// A string literal, unescaped; `true` when it was `N'...'`.
    Str(String, bool),
    /// A number as written.
    Num(String),
    /// `@name` (a variable or parameter), without the `@`.
    Var(String),
    /// `@@NAME`, upper-cased, without the `@@`.
    Global(String),
    /// Punctuation or an operator.
    Sym(String),
}

impl Tok {
    /// True for a bare word equal (case-insensitively) to `kw`.
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// True for the symbol `s`.
    pub fn is_sym(&self, s: &str) -> bool {
        matches!(self, Tok::Sym(x) if x == s)
    }

    /// An identifier's name (bare or quoted).
    pub fn ident(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::QuotedIdent(w) => Some(w),
            _ => None,
        }
    }

    /// How the token looks in an error message.
    pub fn display(&self) -> String {
        match self {
            Tok::Word(w) => w.clone(),
            Tok::QuotedIdent(w) => w.clone(),
            Tok::Str(s, _) => s.clone(),
            Tok::Num(n) => n.clone(),
            Tok::Var(v) => format!("@{v}"),
            Tok::Global(g) => format!("@@{g}"),
            Tok::Sym(s) => s.clone(),
        }
    }
}

/// A lexing failure with its SQL Server error number.
#[derive(Debug, Clone)]
pub struct LexError {
    /// 105 (unclosed quotation mark) or 102.
    pub number: i32,
    /// SQL Server's message text.
    pub message: String,
}

/// Reserved words: an unexpected one gets error 156 instead of 102.
pub fn is_reserved(w: &str) -> bool {
    const R: &[&str] = &[
        "ADD",
        "ALL",
        "ALTER",
        "AND",
        "AS",
        "ASC",
        "BACKUP",
        "BETWEEN",
        "BY",
        "CASE",
        "CHECK",
        "COLUMN",
        "CREATE",
        "DATABASE",
        "DBCC",
        "DECLARE",
        "DEFAULT",
        "DELETE",
        "DESC",
        "DISK",
        "DISTINCT",
        "DROP",
        "ELSE",
        "END",
        "EXEC",
        "EXECUTE",
        "EXISTS",
        "FILE",
        "FROM",
        "GROUP",
        "HAVING",
        "IN",
        "INNER",
        "INSERT",
        "INTO",
        "IS",
        "JOIN",
        "LEFT",
        "LIKE",
        "NOT",
        "NULL",
        "ON",
        "OR",
        "ORDER",
        "OUTER",
        "PROCEDURE",
        "RESTORE",
        "RIGHT",
        "SELECT",
        "SET",
        "TABLE",
        "THEN",
        "TO",
        "TOP",
        "UNION",
        "UPDATE",
        "USE",
        "VALUES",
        "WHEN",
        "WHERE",
        "WITH",
    ];
    R.iter().any(|k| k.eq_ignore_ascii_case(w))
}

/// Splits T-SQL text into tokens.
pub fn lex(src: &str) -> Result<Vec<Tok>, LexError> {
    let c: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '-' && c.get(i + 1) == Some(&'-') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            if depth != 0 {
                return Err(LexError {
                    number: 113,
                    message: "Missing end comment mark '*/'.".into(),
                });
            }
        } else if ch == '\'' || ((ch == 'N' || ch == 'n') && c.get(i + 1) == Some(&'\'')) {
            let national = ch != '\'';
            i += if national { 2 } else { 1 };
            let mut s = String::new();
            loop {
                match c.get(i) {
                    None => {
                        return Err(LexError {
                            number: 105,
                            message: format!(
                                "Unclosed quotation mark after the character string '{s}'."
                            ),
                        })
                    }
                    Some('\'') if c.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        s.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s, national));
        } else if ch == '[' || ch == '"' {
            let close = if ch == '[' { ']' } else { '"' };
            i += 1;
            let mut s = String::new();
            loop {
                match c.get(i) {
                    None => {
                        return Err(LexError {
                            number: 105,
                            message: format!(
                                "Unclosed quotation mark after the character string '{s}'."
                            ),
                        })
                    }
                    Some(x) if *x == close && c.get(i + 1) == Some(&close) => {
                        s.push(close);
                        i += 2;
                    }
                    Some(x) if *x == close => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        s.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(Tok::QuotedIdent(s));
        } else if ch == '@' {
            let global = c.get(i + 1) == Some(&'@');
            i += if global { 2 } else { 1 };
            let start = i;
            while i < c.len()
                && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '#' || c[i] == '$')
            {
                i += 1;
            }
            let name: String = c[start..i].iter().collect();
            out.push(if global {
                Tok::Global(name.to_ascii_uppercase())
            } else {
                Tok::Var(name)
            });
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num(c[start..i].iter().collect()));
        } else if ch.is_alphabetic() || ch == '_' || ch == '#' {
            let start = i;
            while i < c.len()
                && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '#' || c[i] == '$')
            {
                i += 1;
            }
            out.push(Tok::Word(c[start..i].iter().collect()));
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            if ["<>", "<=", ">=", "!=", "!<", "!>", "||"].contains(&two.as_str()) {
                out.push(Tok::Sym(two));
                i += 2;
            } else {
                out.push(Tok::Sym(ch.to_string()));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Quotes a string as `N'...'` with `'` doubled.
pub fn quote_str(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_and_quotes() {
        let t = lex("SELECT [PACS]]x], N'O''Brien' -- c\n FROM sys.databases").unwrap();
        assert_eq!(t[1], Tok::QuotedIdent("PACS]x".into()));
        assert_eq!(t[3], Tok::Str("O'Brien".into(), true));
        assert!(t[4].is_kw("from"));
        assert_eq!(lex("SELECT 'abc").unwrap_err().number, 105);
    }
}
