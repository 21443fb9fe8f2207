//! Seats by aircraft type, keyed by IATA aircraft type code.
//!
//! The counts are typical single-operator cabins, estimates rather than any
//! airline's published figure. Real cabins vary by tens of seats.

/// Seats assumed for an aircraft type missing from [`SEATS`].
pub(crate) const DEFAULT_SEATS: u32 = 150;

/// Typical seats per IATA aircraft type code.
const SEATS: &[(&str, u32)] = &[
    // Airbus narrow-bodies.
    ("318", 132),
    ("319", 144),
    ("31N", 156),
    ("320", 174),
    ("32N", 174),
    ("32A", 174),
    ("321", 220),
    ("32Q", 220),
    ("32B", 220),
    ("221", 120),
    ("223", 145),
    // Boeing narrow-bodies.
    ("717", 110),
    ("733", 140),
    ("734", 150),
    ("735", 120),
    ("736", 110),
    ("73G", 144),
    ("73W", 144),
    ("738", 186),
    ("73H", 186),
    ("739", 200),
    ("7M8", 186),
    ("7M9", 200),
    ("752", 190),
    ("753", 240),
    ("757", 190),
    // Wide-bodies.
    ("330", 270),
    ("332", 250),
    ("333", 290),
    ("339", 290),
    ("342", 260),
    ("343", 280),
    ("346", 330),
    ("359", 320),
    ("351", 350),
    ("380", 520),
    ("388", 520),
    ("744", 400),
    ("747", 400),
    ("748", 410),
    ("763", 220),
    ("764", 240),
    ("767", 220),
    ("772", 310),
    ("773", 370),
    ("777", 310),
    ("77L", 300),
    ("77W", 350),
    ("787", 250),
    ("788", 240),
    ("789", 290),
    ("781", 320),
    // Regional jets.
    ("E70", 76),
    ("E75", 76),
    ("E7W", 76),
    ("E90", 106),
    ("E95", 118),
    ("295", 136),
    ("ERJ", 50),
    ("ER4", 50),
    ("ERD", 44),
    ("ER3", 37),
    ("CRJ", 50),
    ("CR2", 50),
    ("CR7", 70),
    ("CR9", 90),
    ("CRK", 100),
    ("100", 100),
    ("F70", 80),
    ("146", 90),
    ("SU9", 98),
    ("M88", 150),
    ("M90", 160),
    // Turboprops.
    ("ATR", 70),
    ("AT7", 70),
    ("AT5", 48),
    ("AT4", 48),
    ("DH4", 76),
    ("DH8", 50),
    ("DH3", 50),
    ("SF3", 34),
    ("BEH", 19),
    ("DHT", 19),
];

/// Returns the seats on `code`, or `None` when the table lacks the type.
pub(crate) fn seats(code: &str) -> Option<u32> {
    SEATS
        .iter()
        .find(|(known, _)| *known == code)
        .map(|&(_, seats)| seats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_repeated_codes() {
        let mut codes: Vec<&str> = SEATS.iter().map(|(code, _)| *code).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), before);
    }

    #[test]
    fn seats_cover_common_types() {
        assert_eq!(seats("320"), Some(174));
        assert_eq!(seats("738"), Some(186));
        assert_eq!(seats("E95"), Some(118));
        assert_eq!(seats("AT7"), Some(70));
        assert_eq!(seats("XYZ"), None);
    }
}
