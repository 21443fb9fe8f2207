//! Random request ids for bookings made without `--request-id`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// Returns a new request id such as `cli-3f9a0c1d2e4b5a69`.
///
/// The 64 random bits come from the standard library's per-process hash
/// keys, mixed with the time and the process id, so two commands started at
/// once still differ.
pub(crate) fn generate() -> String {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    format!("cli-{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh_and_fit_the_limit() {
        let first = generate();
        let second = generate();
        assert_ne!(first, second);
        assert_eq!(first.len(), 20);
        assert!(first.len() <= trecho_common::protocol::methods::MAX_REQUEST_ID);
    }
}
