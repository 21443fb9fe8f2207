//! Civil dates, UTC offsets and RFC 3339 formatting.
//!
//! trecho needs only fixed UTC offsets (Brazil has had no daylight saving
//! time since 2019), so these few conversions replace a date crate. The day
//! arithmetic is Howard Hinnant's `days_from_civil` algorithm.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A calendar date, stored as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

impl Date {
    /// Builds a date from year, month (1-12) and day (1-31), or `None` when
    /// that day does not exist.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date(days_from_civil(year, month, day)))
    }

    /// Builds a date from days since 1970-01-01.
    pub fn from_days(days: i32) -> Self {
        Date(days)
    }

    /// Returns days since 1970-01-01.
    pub fn days(self) -> i32 {
        self.0
    }

    /// Returns today's date in UTC.
    pub fn today_utc() -> Self {
        Date::from_days(now_unix().div_euclid(86_400) as i32)
    }

    /// Returns the date `days` later.
    pub fn add_days(self, days: i32) -> Self {
        Date(self.0 + days)
    }

    /// Returns (year, month, day).
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    /// Returns the Unix time of this date's midnight at `offset_minutes`
    /// east of UTC.
    pub fn midnight_unix(self, offset_minutes: i32) -> i64 {
        i64::from(self.0) * 86_400 - i64::from(offset_minutes) * 60
    }

    /// Parses `YYYY-MM-DD`.
    ///
    /// # Errors
    ///
    /// Returns a message naming the problem when the text is not a real date
    /// in that form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            let part = bytes.get(range)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        let shaped = bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-';
        let parts = (digits(0..4), digits(5..7), digits(8..10));
        match (shaped, parts) {
            (true, (Some(year), Some(month), Some(day))) => Date::from_ymd(year as i32, month, day)
                .ok_or_else(|| format!("{text:?} is not a real calendar date")),
            _ => Err(format!("{text:?} is not a date in the form YYYY-MM-DD")),
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.ymd();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Date::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Returns the current Unix time in seconds.
pub fn now_unix() -> i64 {
    now_unix_millis().div_euclid(1000)
}

/// Returns the current Unix time in milliseconds.
pub fn now_unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats a Unix time as RFC 3339 at `offset_minutes` east of UTC, for
/// example `2026-12-20T07:15:00-03:00`. An offset of zero prints `Z`.
pub fn format_rfc3339(unix: i64, offset_minutes: i32) -> String {
    let local = unix + i64::from(offset_minutes) * 60;
    let date = Date::from_days(local.div_euclid(86_400) as i32);
    let second_of_day = local.rem_euclid(86_400);
    let (hour, minute, second) = (
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    );
    let zone = if offset_minutes == 0 {
        "Z".to_owned()
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let abs = offset_minutes.abs();
        format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
    };
    format!("{date}T{hour:02}:{minute:02}:{second:02}{zone}")
}

/// Returns the local date of `unix` at `offset_minutes` east of UTC.
pub fn local_date(unix: i64, offset_minutes: i32) -> Date {
    let local = unix + i64::from(offset_minutes) * 60;
    Date::from_days(local.div_euclid(86_400) as i32)
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era =
        year_of_era as u32 * 365 + year_of_era as u32 / 4 - year_of_era as u32 / 100 + day_of_year;
    era * 146_097 + day_of_era as i32 - 719_468
}

fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = (z - era * 146_097) as u32;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era as i32 + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates_convert_both_ways() {
        assert_eq!(Date::from_ymd(1970, 1, 1).unwrap().days(), 0);
        assert_eq!(Date::from_ymd(2000, 3, 1).unwrap().days(), 11_017);
        let date = Date::from_ymd(2026, 12, 20).unwrap();
        assert_eq!(date.to_string(), "2026-12-20");
        assert_eq!(Date::from_days(date.days()).ymd(), (2026, 12, 20));
    }

    #[test]
    fn parse_rejects_malformed_and_impossible_dates() {
        assert!(Date::parse("2026-02-29").is_err());
        assert!(Date::parse("2024-02-29").is_ok());
        assert!(Date::parse("2026-13-01").is_err());
        assert!(Date::parse("2026-1-01").is_err());
        assert!(Date::parse("20261201").is_err());
        assert!(Date::parse("2026-12-01x").is_err());
        assert!(Date::parse("+026-12-01").is_err());
    }

    #[test]
    fn rfc3339_uses_the_offset() {
        let midnight = Date::from_ymd(2026, 12, 20).unwrap().midnight_unix(-180);
        assert_eq!(format_rfc3339(midnight, -180), "2026-12-20T00:00:00-03:00");
        assert_eq!(format_rfc3339(midnight, 0), "2026-12-20T03:00:00Z");
        assert_eq!(
            format_rfc3339(midnight + 3600, 60),
            "2026-12-20T05:00:00+01:00"
        );
        assert_eq!(local_date(midnight - 1, -180).to_string(), "2026-12-19");
    }
}
