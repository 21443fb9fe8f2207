//! Helpers shared by the integration test files: passengers, dates, and
//! segments grouped by the shard that owns them.
//!
//! Cargo builds every `tests/*.rs` file as a test crate of its own, so this
//! module sits in `tests/common/mod.rs`, which Cargo does not build alone.
//! Each test crate uses a different part of it.
#![allow(dead_code)]

use std::time::Duration;

use rustc_hash::FxHashMap;
use trecho_client::{BookParams, Client, ClientError, Passenger, SearchParams, Segment};
use trecho_common::hashing::slot;
use trecho_common::protocol::methods::ClusterStatus;
use trecho_common::time::Date;

/// Busy airports whose departures, searched together, reach every shard.
pub const HUBS: [&str; 6] = ["GRU", "BSB", "GIG", "CGH", "CNF", "SSA"];

/// Time allowed for any one call in a test that does not expect a hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns the date `days` after today (UTC) as `YYYY-MM-DD`. Shards seed
/// 30 days from today, so 2 to 20 days ahead is on sale whatever the hour.
pub fn days_ahead(days: i32) -> String {
    Date::today_utc().add_days(days).to_string()
}

/// Returns a passenger whose name is derived from `document`.
pub fn passenger(document: &str) -> Passenger {
    Passenger {
        name: format!("Passenger {document}"),
        document: document.to_owned(),
    }
}

/// Returns `bookings.create` params for `seats` seats on `segments`.
pub fn book_params(document: &str, segments: &[&str], seats: u32) -> BookParams {
    BookParams {
        passenger: passenger(document),
        segments: segments.iter().map(|s| (*s).to_owned()).collect(),
        seats: Some(seats),
        request_id: None,
        hold_seconds: None,
    }
}

/// Returns `data.kind` of a JSON-RPC error, or a description of any other
/// failure, so that an assert shows what came back.
pub fn kind_of<T: std::fmt::Debug>(result: &Result<T, ClientError>) -> String {
    match result {
        Ok(value) => format!("success: {value:?}"),
        Err(error) => match error.kind() {
            Some(kind) => kind.to_owned(),
            None => format!("error without kind: {error}"),
        },
    }
}

/// Returns the id of the shard whose slots contain `segment`'s slot.
pub fn shard_of(status: &ClusterStatus, segment: &str) -> u32 {
    let slot = slot(segment);
    status
        .shards
        .iter()
        .find(|shard| {
            shard
                .slots
                .iter()
                .any(|[first, last]| (*first..=*last).contains(&slot))
        })
        .map(|shard| shard.id)
        .unwrap_or_else(|| panic!("no shard owns slot {slot} of {segment}"))
}

/// Returns every segment departing from [`HUBS`] on `date`, grouped by
/// the shard that owns it.
pub async fn segments_by_shard(client: &Client, date: &str) -> FxHashMap<u32, Vec<Segment>> {
    let status = client.status().await.expect("cluster.status failed");
    let mut by_shard: FxHashMap<u32, Vec<Segment>> = FxHashMap::default();
    for origin in HUBS {
        for segment in departures(client, origin, date).await {
            by_shard
                .entry(shard_of(&status, &segment.id))
                .or_default()
                .push(segment);
        }
    }
    by_shard
}

/// Returns the seats left on `segment`.
pub async fn seats_left(client: &Client, segment: &str) -> u32 {
    client
        .segment(segment)
        .await
        .expect("segments.get failed")
        .seats_left
}

/// Returns every segment departing from `origin` on `date`.
pub async fn departures(client: &Client, origin: &str, date: &str) -> Vec<Segment> {
    let params = SearchParams {
        origin: Some(origin.to_owned()),
        destination: None,
        date: Some(Date::parse(date).expect("a valid date")),
        limit: Some(1000),
    };
    let found = client.search(params).await.expect("segments.search failed");
    assert!(!found.coverage.partial, "search from {origin} was partial");
    found.segments
}

/// Books seats on `segment` in bookings of up to 9 seats until `left`
/// seats remain, and returns the locators.
pub async fn fill_until(client: &Client, segment: &str, left: u32, document: &str) -> Vec<String> {
    let mut locators = Vec::new();
    loop {
        let current = client.segment(segment).await.expect("segments.get failed");
        assert!(
            current.seats_left >= left,
            "{segment} has {} seats left, fewer than {left}",
            current.seats_left
        );
        let seats = (current.seats_left - left).min(9);
        if seats == 0 {
            return locators;
        }
        let booking = client
            .create(book_params(document, &[segment], seats))
            .await
            .unwrap_or_else(|e| panic!("filling {segment} failed: {e}"));
        locators.push(booking.id);
    }
}
