//! Splits one line of an OpenFlights `.dat` file into fields.
//!
//! The files are comma-separated with optional double quotes. Inside quotes a
//! doubled quote (`""`) and a backslash-escaped quote (`\"`) both stand for
//! one quote, and `\\` for one backslash. Any other backslash is kept as it
//! is. An unquoted `\N` marks a missing value. Lines may end in CR, and
//! spaces around fields are dropped.

/// A quoting problem that keeps a line from splitting into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LineError {
    /// A quoted field never closes.
    UnterminatedQuote,
    /// Text follows a closing quote before the next comma.
    TextAfterQuote,
}

/// Splits `line` at the commas outside quotes and unquotes each field.
///
/// # Errors
///
/// Returns the first quoting problem found.
pub(super) fn split(line: &str) -> Result<Vec<String>, LineError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let mut chars = line.chars().peekable();
    let mut fields = Vec::new();
    loop {
        skip_spaces(&mut chars);
        let field = if chars.next_if_eq(&'"').is_some() {
            let text = quoted(&mut chars)?;
            skip_spaces(&mut chars);
            text
        } else {
            unquoted(&mut chars)
        };
        fields.push(field);
        match chars.next() {
            None => return Ok(fields),
            Some(',') => {}
            Some(_) => return Err(LineError::TextAfterQuote),
        }
    }
}

/// Returns `field` unless it is empty or the null marker `\N`.
pub(super) fn present(field: &str) -> Option<&str> {
    match field {
        "" | "\\N" => None,
        text => Some(text),
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_spaces(chars: &mut Chars<'_>) {
    while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
}

/// Reads up to the next comma, and trims trailing spaces.
fn unquoted(chars: &mut Chars<'_>) -> String {
    let mut text = String::new();
    while let Some(c) = chars.next_if(|c| *c != ',') {
        text.push(c);
    }
    text.truncate(text.trim_end().len());
    text
}

/// Reads a quoted field whose opening quote is already consumed, through its
/// closing quote.
fn quoted(chars: &mut Chars<'_>) -> Result<String, LineError> {
    let mut text = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => match chars.next_if_eq(&'"') {
                Some(_) => text.push('"'),
                None => return Ok(text),
            },
            '\\' => match chars.next_if(|next| *next == '"' || *next == '\\') {
                Some(escaped) => text.push(escaped),
                None => text.push('\\'),
            },
            other => text.push(other),
        }
    }
    Err(LineError::UnterminatedQuote)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Vec<String> {
        split(line).unwrap_or_else(|e| panic!("{line:?}: {e:?}"))
    }

    #[test]
    fn plain_and_quoted_fields_split() {
        assert_eq!(fields("a,b,,c"), ["a", "b", "", "c"]);
        assert_eq!(
            fields(r#"1,"Goroka, PNG",GKA"#),
            ["1", "Goroka, PNG", "GKA"]
        );
        assert_eq!(fields(r#""""#), [""]);
    }

    #[test]
    fn escaped_quotes_unescape() {
        assert_eq!(
            fields(r#""Magdeburg ""City"" Airport""#),
            [r#"Magdeburg "City" Airport"#]
        );
        assert_eq!(fields(r#""say \"hi\"",x"#), [r#"say "hi""#, "x"]);
        assert_eq!(fields(r#""\\'\\""#), [r"\'\"]);
        assert_eq!(fields(r#""C:\path""#), [r"C:\path"]);
    }

    #[test]
    fn null_marker_and_spaces() {
        let line = "  a , \\N,\"b \" ,c  \r";
        assert_eq!(fields(line), ["a", "\\N", "b ", "c"]);
        assert_eq!(present("\\N"), None);
        assert_eq!(present(""), None);
        assert_eq!(present("GRU"), Some("GRU"));
    }

    #[test]
    fn broken_quotes_are_errors() {
        assert_eq!(split(r#"1,"open"#), Err(LineError::UnterminatedQuote));
        assert_eq!(split(r#"1,"closed"x,2"#), Err(LineError::TextAfterQuote));
    }
}
