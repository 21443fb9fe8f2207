//! The shard map belongs to the shards. A router started from the shards'
//! addresses takes their map. Shards reject a request for a slot they do
//! not own, so a router with an older map refreshes it and books on the
//! owner. Two routers sell the same seats without selling one twice.

mod common;

use std::ops::RangeInclusive;

use common::{book_params, days_ahead, departures, kind_of, seats_left, CALL_TIMEOUT, HUBS};
use trecho_client::{BookParams, Client, RoutesParams, Segment};
use trecho_common::hashing::slot;
use trecho_tests::{even_ranges, Cluster};

/// The shards' map in these tests: uneven, so that it differs from the
/// even split a router is given as its older map.
const SHARD_RANGES: [[u16; 2]; 3] = [[0, 2000], [2001, 12000], [12001, 16383]];

/// Slots that the even split gives shard 0 but [`SHARD_RANGES`] gives
/// shard 1.
const MOVED_FROM_0: RangeInclusive<u16> = 2001..=5460;
/// Slots that stay on shard 2 in both maps.
const STAYED_ON_2: RangeInclusive<u16> = 12001..=16383;
/// Slots that stay on shard 0 in both maps.
const STAYED_ON_0: RangeInclusive<u16> = 0..=2000;

/// Returns a passenger document whose slot is in `range`.
fn document_in(range: &RangeInclusive<u16>) -> String {
    (1..)
        .map(|n| format!("DOC{n}"))
        .find(|document| range.contains(&slot(document)))
        .expect("some document hashes into the range")
}

/// Starts three shards on [`SHARD_RANGES`] at version 2 and a router
/// whose map is the even split at version 1.
async fn stale_router_cluster() -> Cluster {
    Cluster::builder(3)
        .shard_map(&SHARD_RANGES, 2)
        .router_map(&even_ranges(3), 1)
        .start()
        .await
}

/// Returns every segment departing from the hubs in five days.
async fn hub_segments(client: &Client) -> Vec<Segment> {
    let date = days_ahead(5);
    let mut segments = Vec::new();
    for origin in HUBS {
        segments.extend(departures(client, origin, &date).await);
    }
    segments
}

/// Returns the ids of segments whose slot is in `range`, at least `count`.
fn ids_in(segments: &[Segment], range: &RangeInclusive<u16>, count: usize) -> Vec<String> {
    let ids: Vec<String> = segments
        .iter()
        .map(|segment| segment.id.clone())
        .filter(|id| range.contains(&slot(id)))
        .collect();
    assert!(
        ids.len() >= count,
        "only {} segments in slots {range:?}, {count} needed",
        ids.len()
    );
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_router_routes_by_shards_map() {
    let cluster = Cluster::builder(3)
        .shard_map(&SHARD_RANGES, 7)
        .router_from_seeds()
        .start()
        .await;
    let client = cluster.client().await;

    let status = client.status().await.expect("cluster.status failed");
    assert_eq!(status.map_version, 7);
    let ranges: Vec<Vec<[u16; 2]>> = status.shards.iter().map(|s| s.slots.clone()).collect();
    assert_eq!(ranges, SHARD_RANGES.map(|range| vec![range]).to_vec());

    let segments = hub_segments(&client).await;
    let moved = &ids_in(&segments, &MOVED_FROM_0, 1)[0];
    let before = seats_left(&client, moved).await;
    let booking = tokio::time::timeout(CALL_TIMEOUT, client.create(book_params("S1", &[moved], 2)))
        .await
        .expect("the booking timed out")
        .expect("the booking failed");
    assert_eq!(seats_left(&client, moved).await, before - 2);
    let found = client
        .booking(&booking.id, "S1")
        .await
        .expect("bookings.get failed");
    assert_eq!(found.segments, vec![moved.clone()]);
    assert!(
        !cluster.log("router").contains("shard map refreshed"),
        "a router that started from the shards' map had nothing to refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_router_books_on_true_owner() {
    let cluster = stale_router_cluster().await;
    let client = cluster.client().await;
    let segments = hub_segments(&client).await;
    let moved = ids_in(&segments, &MOVED_FROM_0, 2);
    let capacity = segments
        .iter()
        .find(|segment| segment.id == moved[0])
        .map(|segment| segment.capacity)
        .expect("a listed segment");

    // The first request the router routes by its map: it goes to shard 0,
    // which refuses it, and the router refreshes its map and books on
    // shard 1.
    assert!(!cluster.log("router").contains("shard map refreshed"));
    let booking = client
        .create(book_params("F1", &[&moved[0]], 1))
        .await
        .expect("a booking on a slot the router's map placed wrongly failed");

    assert_eq!(seats_left(&client, &moved[0]).await, capacity - 1);
    let status = client.status().await.expect("cluster.status failed");
    assert_eq!(status.map_version, 2);
    assert!(cluster.log("router").contains("shard map refreshed"));
    let found = client
        .booking(&booking.id, "F1")
        .await
        .expect("bookings.get failed");
    assert_eq!(found.id, booking.id);

    // With a request id, a retry finds the booking on the same owner.
    let params = BookParams {
        request_id: Some("fencing-1".to_owned()),
        ..book_params("F2", &[&moved[1]], 1)
    };
    let first = client.create(params.clone()).await.expect("booking failed");
    let again = client.create(params).await.expect("retry failed");
    assert_eq!(first.id, again.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_router_books_trip_once() {
    let cluster = stale_router_cluster().await;
    let client = cluster.client().await;
    let segments = hub_segments(&client).await;
    let moved = &ids_in(&segments, &MOVED_FROM_0, 1)[0];
    let stayed = &ids_in(&segments, &STAYED_ON_2, 1)[0];
    let capacity = |id: &String| {
        let segment = segments
            .iter()
            .find(|s| &s.id == id)
            .expect("a listed segment");
        assert_eq!(
            segment.seats_left, segment.capacity,
            "{id} was booked before"
        );
        segment.capacity
    };
    let capacities = (capacity(moved), capacity(stayed));

    // The first request the router routes by its map is this two-shard
    // booking, whose first segment the map places on a shard that does not
    // own it. Searches went to every shard, so nothing was refreshed yet.
    assert!(!cluster.log("router").contains("shard map refreshed"));
    let trip = client
        .create(book_params("T1", &[moved, stayed], 3))
        .await
        .expect("a trip through a router with an older map failed");

    assert!(cluster.log("router").contains("shard map refreshed"));
    assert_eq!(trip.segments, vec![moved.clone(), stayed.clone()]);
    let after = (
        seats_left(&client, moved).await,
        seats_left(&client, stayed).await,
    );
    assert_eq!(after, (capacities.0 - 3, capacities.1 - 3));
    let listed = client.bookings("T1").await.expect("bookings.list failed");
    assert_eq!(listed.bookings.len(), 1, "{:?}", listed.bookings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_never_oversell() {
    let mut cluster = Cluster::builder(2).start().await;
    let second = cluster.start_router_from_seeds().await;
    let first = cluster.client().await;
    let other = Client::connect(&second)
        .await
        .expect("the second router accepts clients");
    let segment = hub_segments(&first).await[0].id.clone();
    let capacity = seats_left(&first, &segment).await;

    let sell = |client: Client, document: &'static str| {
        let segment = segment.clone();
        tokio::spawn(async move {
            let mut sold = 0;
            loop {
                let result = client.create(book_params(document, &[&segment], 1)).await;
                match kind_of(&result).as_str() {
                    "sold_out" => return sold,
                    _ if result.is_ok() => sold += 1,
                    other => panic!("booking through a router failed: {other}"),
                }
            }
        })
    };
    let (a, b) = tokio::join!(sell(first, "R1"), sell(other, "R2"));
    let sold = a.expect("the first seller ran") + b.expect("the second seller ran");

    assert_eq!(sold, capacity);
    let check = cluster.client().await;
    assert_eq!(seats_left(&check, &segment).await, 0);
    let listed = check
        .bookings("R1")
        .await
        .expect("bookings.list failed")
        .bookings
        .len()
        + check
            .bookings("R2")
            .await
            .expect("bookings.list failed")
            .bookings
            .len();
    assert_eq!(listed as u32, capacity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_router_replans_split_booking() {
    let cluster = stale_router_cluster().await;
    let client = cluster.client().await;
    let segments = hub_segments(&client).await;
    let stayed = &ids_in(&segments, &STAYED_ON_0, 1)[0];
    let moved = &ids_in(&segments, &MOVED_FROM_0, 1)[0];

    // The router's map puts both segments on shard 0, which now owns only
    // the first: the router must plan the booking again, across shards.
    let booking = client
        .create(book_params("P1", &[stayed, moved], 1))
        .await
        .expect("a booking split by the shards' map failed");

    assert_eq!(booking.segments, vec![stayed.clone(), moved.clone()]);
    assert!(cluster.log("router").contains("shard map refreshed"));
    let listed = client.bookings("P1").await.expect("bookings.list failed");
    assert_eq!(listed.bookings.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_router_claims_request_id_on_owner() {
    let cluster = stale_router_cluster().await;
    let client = cluster.client().await;
    let segments = hub_segments(&client).await;
    let on_0 = &ids_in(&segments, &STAYED_ON_0, 1)[0];
    let on_2 = &ids_in(&segments, &STAYED_ON_2, 1)[0];
    // The router's map puts this document on shard 0 beside the segment,
    // so it would book in one step there. The document is shard 1's now,
    // so shard 1 must keep the request id.
    let document = document_in(&MOVED_FROM_0);
    let params = |segment: &String| BookParams {
        request_id: Some("claim-1".to_owned()),
        ..book_params(&document, &[segment], 1)
    };

    let first = client
        .create(params(on_0))
        .await
        .expect("the first booking failed");
    // Another home, shard 2: only the document's shard can see the reuse.
    let reused = client.create(params(on_2)).await;
    let again = client.create(params(on_0)).await;

    assert_eq!(kind_of(&reused), "request_id_reused");
    assert_eq!(again.expect("the retry failed").id, first.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_router_finds_complete_routes() {
    let cluster = stale_router_cluster().await;
    let client = cluster.client().await;
    let params = RoutesParams {
        origin: "GRU".to_owned(),
        destination: "POA".to_owned(),
        date: trecho_common::time::Date::parse(&days_ahead(5)).expect("a valid date"),
        seats: None,
        max_stops: Some(1),
        limit: Some(50),
    };

    let found = client.routes(params).await.expect("routes.find failed");

    assert!(!found.coverage.partial, "{:?}", found.coverage);
    assert!(!found.routes.is_empty(), "no route from GRU to POA");
    assert!(cluster.log("router").contains("shard map refreshed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_router_trip_claims_request_id() {
    let cluster = stale_router_cluster().await;
    let client = cluster.client().await;
    let segments = hub_segments(&client).await;
    let on_0 = &ids_in(&segments, &STAYED_ON_0, 1)[0];
    let on_2 = &ids_in(&segments, &STAYED_ON_2, 1)[0];
    // Both maps make shard 2 the home of the trip. The router's map also
    // gives shard 2 the document, which the shards' map gives shard 1.
    let document = document_in(&(10922..=12000));
    let params = |segments: &[&str]| BookParams {
        request_id: Some("claim-2".to_owned()),
        ..book_params(&document, segments, 1)
    };

    let first = client
        .create(params(&[on_2, on_0]))
        .await
        .expect("the trip failed");
    // Another home, shard 0: only the document's shard can see the reuse.
    let reused = client.create(params(&[on_0])).await;
    let again = client.create(params(&[on_2, on_0])).await;

    assert_eq!(kind_of(&reused), "request_id_reused");
    assert_eq!(again.expect("the retry failed").id, first.id);
}
