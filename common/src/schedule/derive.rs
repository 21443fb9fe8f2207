//! Values a schedule derives when its source lacks them: block time from the
//! great-circle distance, and a stable hash that spreads departures and
//! flight numbers. The built-in schedule and the importer share these, so the
//! same pair of airports gets the same block time from either.

use super::Airport;

/// Mean Earth radius, in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0;

/// Assumed cruise speed over the great-circle distance, in km/h.
const CRUISE_KMH: f64 = 780.0;

/// Minutes added to every flight for taxi, climb and approach.
const GROUND_MINUTES: f64 = 30.0;

/// Returns the great-circle distance between two airports, in kilometres,
/// by the haversine formula on a spherical Earth.
pub(crate) fn great_circle_km(from: &Airport, to: &Airport) -> f64 {
    let (lat1, lat2) = (from.latitude.to_radians(), to.latitude.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (to.longitude - from.longitude).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Returns the block time between two airports in minutes: the distance at
/// 780 km/h plus 30 minutes, rounded to the nearest 5 minutes.
pub(crate) fn block_minutes(from: &Airport, to: &Airport) -> u32 {
    let minutes = great_circle_km(from, to) / CRUISE_KMH * 60.0 + GROUND_MINUTES;
    // Rounding to 5 keeps the result at 30 or more, so it is never zero.
    ((minutes / 5.0).round() * 5.0) as u32
}

/// Returns the 64-bit FNV-1a hash of `parts` joined by `|`.
///
/// FNV-1a starts from the offset basis 0xcbf29ce484222325 and, for each byte,
/// XORs the byte in and multiplies by the prime 0x100000001b3 (wrapping). It
/// depends on nothing but the bytes, so results are the same on every run and
/// every platform.
pub(crate) fn fnv1a(parts: &[&str]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    for (i, part) in parts.iter().enumerate() {
        let separator: &[u8] = if i == 0 { b"" } else { b"|" };
        for &byte in separator.iter().chain(part.as_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn airport(code: &str, latitude: f64, longitude: f64) -> Airport {
        Airport {
            code: code.into(),
            name: code.into(),
            city: code.into(),
            latitude,
            longitude,
            utc_offset_minutes: -180,
        }
    }

    #[test]
    fn great_circle_matches_known_distance() {
        // GRU to SSA is about 1,450 km along the great circle.
        let gru = airport("GRU", -23.4356, -46.4731);
        let ssa = airport("SSA", -12.9086, -38.3225);
        let km = great_circle_km(&gru, &ssa);
        assert!((1400.0..1500.0).contains(&km), "{km}");
        assert_eq!(great_circle_km(&gru, &gru), 0.0);
    }

    #[test]
    fn block_time_rounds_to_five_minutes() {
        let gru = airport("GRU", -23.4356, -46.4731);
        let ssa = airport("SSA", -12.9086, -38.3225);
        assert_eq!(block_minutes(&gru, &ssa), 140);
        assert_eq!(block_minutes(&gru, &gru), 30);
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        // Expected FNV-1a 64-bit hashes of short strings.
        assert_eq!(fnv1a(&[""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&["a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&["foobar"]), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a(&["a", "b"]), fnv1a(&["a|b"]));
    }
}
