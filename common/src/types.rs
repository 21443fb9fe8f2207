//! The data shapes of the protocol: segments, bookings, locators.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hashing::SLOT_COUNT;

/// A flight segment as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Flight number plus local departure date, `AD4521-2026-12-20`.
    pub id: String,
    /// Flight number, `AD4521`.
    pub flight: String,
    /// Origin airport code.
    pub origin: String,
    /// Destination airport code.
    pub destination: String,
    /// RFC 3339 with the origin's UTC offset.
    pub departure: String,
    /// RFC 3339 with the destination's UTC offset.
    pub arrival: String,
    /// Seats on the aircraft.
    pub capacity: u32,
    /// Seats not taken by any booking or hold.
    pub seats_left: u32,
}

/// A passenger's identity as given at booking time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Passenger {
    /// Full name, 1 to 100 characters.
    pub name: String,
    /// Identity document number, 1 to 32 letters, digits, `.`, `-` or `/`.
    pub document: String,
}

impl Passenger {
    /// Checks the name and document.
    ///
    /// # Errors
    ///
    /// Returns a message naming the field and the rule it breaks.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || self.name.chars().count() > 100 {
            return Err("passenger.name must be 1 to 100 characters".into());
        }
        if self.name.chars().any(char::is_control) {
            return Err("passenger.name must not contain control characters".into());
        }
        // Spaces, punctuation and invisible format characters alone (such
        // as U+200B ZERO WIDTH SPACE) would make an empty-looking ticket.
        if !name.chars().any(char::is_alphanumeric) {
            return Err("passenger.name must contain at least one letter or digit".into());
        }
        validate_document(&self.document).map_err(|e| format!("passenger.{e}"))
    }
}

/// Checks a document number.
///
/// # Errors
///
/// Returns a message starting with `document` that names the rule broken.
pub fn validate_document(document: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '/');
    if document.is_empty() || document.len() > 32 || !document.chars().all(allowed) {
        return Err("document must be 1 to 32 letters, digits, '.', '-' or '/'".into());
    }
    Ok(())
}

/// Where a booking stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// Seats taken until `expires_at`; confirm makes them final.
    Held,
    /// Seats taken for good.
    Confirmed,
    /// Cancelled by the passenger; seats released.
    Cancelled,
    /// The hold ran out; seats released.
    Expired,
}

impl BookingStatus {
    /// Returns the protocol name, `held` and so on.
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Held => "held",
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::Cancelled => "cancelled",
            BookingStatus::Expired => "expired",
        }
    }

    /// Returns whether the booking's seats are taken.
    pub fn takes_seats(self) -> bool {
        matches!(self, BookingStatus::Held | BookingStatus::Confirmed)
    }
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A booking as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    /// The locator, six symbols of A-Z and 2-9.
    pub id: String,
    /// Where the booking stands.
    pub status: BookingStatus,
    /// Who travels.
    pub passenger: Passenger,
    /// Seats on every segment.
    pub seats: u32,
    /// Segment ids in the order the client gave them.
    pub segments: Vec<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC; set only while held.
    pub expires_at: Option<String>,
}

/// The 34 symbols of a locator: A-Z then 2-9.
const LOCATOR_ALPHABET: &[u8; 34] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ23456789";
/// Number of distinct locators, 34^6.
const LOCATOR_SPACE: u64 = 34u64.pow(6);

/// A booking locator: a number below 34^6 whose remainder by 16384 is the
/// slot of the booking's home shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Locator(pub u64);

impl Locator {
    /// Number of locators available per slot.
    pub const PER_SLOT: u64 = LOCATOR_SPACE / SLOT_COUNT as u64;

    /// Builds the locator number `index` of `slot`, for `index` below
    /// [`Locator::PER_SLOT`].
    pub fn new(slot: u16, index: u64) -> Self {
        Locator(u64::from(slot) + u64::from(SLOT_COUNT) * (index % Self::PER_SLOT))
    }

    /// Returns the home slot.
    pub fn slot(self) -> u16 {
        (self.0 % u64::from(SLOT_COUNT)) as u16
    }

    /// Parses six symbols of A-Z and 2-9.
    ///
    /// # Errors
    ///
    /// Returns a message when the text is not a locator.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not a locator: expected 6 characters of A-Z and 2-9");
        if text.len() != 6 {
            return Err(invalid());
        }
        let mut value = 0u64;
        for byte in text.bytes() {
            let digit = LOCATOR_ALPHABET
                .iter()
                .position(|&b| b == byte)
                .ok_or_else(invalid)?;
            value = value * 34 + digit as u64;
        }
        Ok(Locator(value))
    }
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut symbols = [0u8; 6];
        let mut value = self.0 % LOCATOR_SPACE;
        for symbol in symbols.iter_mut().rev() {
            *symbol = LOCATOR_ALPHABET[(value % 34) as usize];
            value /= 34;
        }
        f.write_str(std::str::from_utf8(&symbols).unwrap_or("??????"))
    }
}

/// Checks an airport code: three capital letters.
///
/// # Errors
///
/// Returns a message naming `field`.
pub fn validate_airport(field: &str, code: &str) -> Result<(), String> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be an airport code of three capital letters, got {code:?}"
        ))
    }
}

/// Checks a segment id: a flight number of 2 to 8 letters and digits, `-`,
/// and a date `YYYY-MM-DD`.
///
/// # Errors
///
/// Returns a message naming `field`.
pub fn validate_segment_id(field: &str, id: &str) -> Result<(), String> {
    let shaped = id.len() > 11 && id.len() <= 19 && id.as_bytes()[id.len() - 11] == b'-';
    let valid = shaped && {
        let (flight, date) = id.split_at(id.len() - 11);
        flight
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && crate::time::Date::parse(&date[1..]).is_ok()
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{field} must be a segment id such as AD4521-2026-12-20, got {id:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator_round_trips_and_keeps_its_slot() {
        for (slot, index) in [(0u16, 0u64), (16383, 94_286), (1234, 777)] {
            let locator = Locator::new(slot, index);
            let text = locator.to_string();
            assert_eq!(text.len(), 6);
            assert_eq!(Locator::parse(&text).unwrap(), locator);
            assert_eq!(locator.slot(), slot);
        }
        assert_eq!(Locator(0).to_string(), "AAAAAA");
        assert_eq!(Locator(33).to_string(), "AAAAA9");
    }

    #[test]
    fn locator_parse_rejects_bad_symbols() {
        assert!(Locator::parse("AAAAA1").is_err());
        assert!(Locator::parse("aaaaaa").is_err());
        assert!(Locator::parse("AAAAA").is_err());
        assert!(Locator::parse("AAAAAO0").is_err());
    }

    #[test]
    fn segment_id_and_airport_checks() {
        assert!(validate_segment_id("id", "AD4521-2026-12-20").is_ok());
        assert!(validate_segment_id("id", "AD4521-2026-13-20").is_err());
        assert!(validate_segment_id("id", "ad4521-2026-12-20").is_err());
        assert!(validate_segment_id("id", "-2026-12-20").is_err());
        assert!(validate_airport("origin", "GRU").is_ok());
        assert!(validate_airport("origin", "gru").is_err());
        assert!(validate_airport("origin", "GRUX").is_err());
    }

    #[test]
    fn passenger_checks_name_and_document() {
        let ok = Passenger {
            name: "Ana Souza".into(),
            document: "123.456.789-00".into(),
        };
        assert!(ok.validate().is_ok());
        let bad = Passenger {
            name: " ".into(),
            ..ok.clone()
        };
        assert!(bad.validate().unwrap_err().contains("passenger.name"));
        let bad = Passenger {
            document: "12 34".into(),
            ..ok
        };
        assert!(bad.validate().unwrap_err().contains("passenger.document"));
    }

    #[test]
    fn passenger_name_needs_a_letter_or_digit() {
        let named = |name: &str| Passenger {
            name: name.into(),
            document: "X1".into(),
        };
        let invisible = named("\u{200B}\u{2060}").validate();
        assert!(invisible.unwrap_err().contains("at least one letter"));
        let punctuation = named("-- .").validate();
        assert!(punctuation.unwrap_err().contains("at least one letter"));
        assert!(named("Zoë O'Brien").validate().is_ok());
        assert!(named("李小龙").validate().is_ok());
    }
}
