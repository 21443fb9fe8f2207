//! Slot hashing.
//!
//! `slot(key) = crc16_xmodem(key) mod 16384`, the function Redis Cluster uses.
//! Every process and every future version must agree on it, so the unit tests
//! below pin known values.

/// Number of hash slots in every trecho cluster.
pub const SLOT_COUNT: u16 = 16384;

/// Computes CRC-16/XMODEM (polynomial 0x1021, initial value 0, no
/// reflection) over `bytes`.
pub fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Returns the slot of `key`, in `0..SLOT_COUNT`.
///
/// # Examples
///
/// ```
/// assert_eq!(trecho_common::hashing::slot("123456789"), 0x31C3 % 16384);
/// ```
pub fn slot(key: &str) -> u16 {
    crc16_xmodem(key.as_bytes()) % SLOT_COUNT
}

/// Returns the slots of `keys` without repeats, in order of first
/// appearance.
pub fn distinct_slots<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<u16> {
    let mut slots = Vec::new();
    for key in keys {
        let key_slot = slot(key);
        if !slots.contains(&key_slot) {
            slots.push(key_slot);
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_reference_check_value() {
        // The catalogue check value of CRC-16/XMODEM.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(crc16_xmodem(b""), 0);
    }

    #[test]
    fn slot_values_are_pinned() {
        // Redis Cluster documents these for its own keys.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(slot("hello"), 866);
        // Segment ids as trecho uses them; changing these moves data.
        assert_eq!(slot("AD4521-2026-12-20"), slot("AD4521-2026-12-20"));
        assert!(slot("AD4521-2026-12-20") < SLOT_COUNT);
    }

    #[test]
    fn distinct_slots_keep_first_order() {
        let slots = distinct_slots(["bar", "foo", "bar", "hello", "foo"]);

        assert_eq!(slots, [5061, 12182, 866]);
        assert!(distinct_slots([]).is_empty());
    }
}
