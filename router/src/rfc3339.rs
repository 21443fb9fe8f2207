//! Parsing of the RFC 3339 timestamps shards send, so that merges compare
//! instants: segment departures carry their airport's UTC offset, and the
//! same text order would misplace flights from different time zones.

use trecho_common::time::Date;

/// Parses `YYYY-MM-DDTHH:MM:SS`, optional fractional seconds, then `Z` or
/// `+HH:MM`/`-HH:MM`, into Unix seconds; `None` for anything else.
pub(crate) fn parse(text: &str) -> Option<i64> {
    let date = Date::parse(text.get(..10)?).ok()?;
    let bytes = text.as_bytes();
    let separators = [(10, b'T'), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, byte)| bytes.get(at) != Some(&byte))
    {
        return None;
    }
    let hour = number(text, 11)?;
    let minute = number(text, 14)?;
    let second = number(text, 17)?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset_minutes = offset(skip_fraction(text.get(19..)?))?;
    let local = date.midnight_unix(0) + hour * 3600 + minute * 60 + second;
    Some(local - offset_minutes * 60)
}

/// Parses the same text as [`parse`] into Unix milliseconds, reading the
/// first three fractional digits, so that instants within one second still
/// compare in order.
pub(crate) fn parse_millis(text: &str) -> Option<i64> {
    let seconds = parse(text)?;
    let fraction = text.get(19..)?.strip_prefix('.').unwrap_or("");
    let digits: String = fraction
        .chars()
        .take_while(char::is_ascii_digit)
        .take(3)
        .collect();
    let millis: i64 = format!("{digits:0<3}").parse().ok()?;
    Some(seconds * 1000 + millis)
}

/// Reads two digits at `at`.
fn number(text: &str, at: usize) -> Option<i64> {
    let digits = text.get(at..at + 2)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn skip_fraction(zone: &str) -> &str {
    match zone.strip_prefix('.') {
        Some(rest) => rest.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => zone,
    }
}

/// Reads `Z` or `±HH:MM` as minutes east of UTC.
fn offset(zone: &str) -> Option<i64> {
    if zone == "Z" || zone == "z" {
        return Some(0);
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if zone.len() != 6 || zone.as_bytes()[3] != b':' {
        return None;
    }
    let hours = number(zone, 1)?;
    let minutes = number(zone, 4)?;
    Some(sign * (hours * 60 + minutes))
}

#[cfg(test)]
mod tests {
    use trecho_common::time::format_rfc3339;

    use super::*;

    #[test]
    fn offsets_compare_as_instants() {
        let sao_paulo = parse("2026-12-20T10:00:00-03:00").unwrap();
        let manaus = parse("2026-12-20T09:30:00-04:00").unwrap();
        assert!(sao_paulo < manaus, "09:30 in Manaus is 10:30 in Sao Paulo");
        assert_eq!(parse("2026-12-20T13:00:00Z"), Some(sao_paulo));
    }

    #[test]
    fn round_trips_with_the_common_formatter() {
        for (unix, offset) in [(0, 0), (1_797_000_000, -180), (1_797_000_059, 330)] {
            assert_eq!(parse(&format_rfc3339(unix, offset)), Some(unix));
        }
        assert_eq!(parse("1970-01-01T00:00:01.250Z"), Some(1));
    }

    #[test]
    fn millis_keep_the_fraction() {
        assert_eq!(parse_millis("1970-01-01T00:00:01.250Z"), Some(1250));
        assert_eq!(parse_millis("1970-01-01T00:00:01.2Z"), Some(1200));
        assert_eq!(parse_millis("1970-01-01T00:00:01.123456Z"), Some(1123));
        assert_eq!(parse_millis("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_millis("1970-01-01T01:00:01.5+01:00"), Some(1500));
    }

    #[test]
    fn malformed_text_is_rejected() {
        for text in [
            "",
            "2026-12-20",
            "2026-12-20 10:00:00Z",
            "2026-12-20T10:00:00",
            "2026-12-20T24:00:00Z",
            "2026-12-20T10:00:00+0300",
            "2026-12-20T1a:00:00Z",
            "2026-13-20T10:00:00Z",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
