//! The router's side of bookings: the single-shard fast path and the
//! prepare and decide steps of the two-phase commit.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use trecho_common::hashing::slot;
use trecho_common::internal::ShardOp;
use trecho_common::types::{Booking, BookingStatus, Passenger};

use crate::fake_shard::FakeShard;
use crate::harness::{booking_params, segments_on, start_router, Client, Router};

/// Two fake shards behind a router, with `seats` seats on three segments of
/// each: `on[shard][n]`.
async fn two_shards(seats: u32) -> ([FakeShard; 2], [Vec<String>; 2], Router) {
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    let on = [segments_on(0, 2, 3), segments_on(1, 2, 3)];
    for (shard, ids) in shards.iter().zip(&on) {
        for id in ids {
            shard.add_segment(id, seats);
        }
    }
    let router = start_router(&[&shards[0], &shards[1]], |_| {}).await;
    (shards, on, router)
}

fn decides(shard: &FakeShard) -> Vec<bool> {
    shard
        .received()
        .into_iter()
        .filter_map(|op| match op {
            ShardOp::Decide { commit, .. } => Some(commit),
            _ => None,
        })
        .collect()
}

fn kind(response: &Value) -> &str {
    response["error"]["data"]["kind"].as_str().unwrap_or("")
}

#[tokio::test]
async fn single_shard_booking_is_one_book_request() {
    let (shards, on, router) = two_shards(5).await;
    let mut client = Client::connect(&router.address).await;
    let segments = vec![on[1][0].clone(), on[1][1].clone()];
    let response = client
        .call(1, "bookings.hold", booking_params(&segments, 2))
        .await;
    assert_eq!(response["result"]["status"], "held", "{response}");
    assert_eq!(response["result"]["segments"], serde_json::json!(segments));
    let received = shards[1].received();
    assert_eq!(received.len(), 1, "{received:?}");
    let ShardOp::Book { request } = &received[0] else {
        panic!("expected a book request, got {received:?}");
    };
    assert_eq!(request.hold_seconds, Some(600));
    assert_eq!(request.seats, 2);
    assert!(shards[0].received().is_empty());
    router.stop().await;
}

#[tokio::test]
async fn multi_shard_booking_prepares_everywhere_and_commits_at_home() {
    let (shards, on, router) = two_shards(5).await;
    let mut client = Client::connect(&router.address).await;
    // The first segment lives on shard 1, which makes it the home shard.
    let segments = vec![on[1][0].clone(), on[0][0].clone(), on[1][1].clone()];
    let response = client
        .call(1, "bookings.create", booking_params(&segments, 2))
        .await;
    assert_eq!(response["result"]["status"], "confirmed", "{response}");
    assert_eq!(shards[0].seats_left(&on[0][0]), 3);
    assert_eq!(shards[1].seats_left(&on[1][1]), 3);

    let home = shards[1].received();
    assert_eq!(home.len(), 2, "{home:?}");
    let ShardOp::Prepare {
        txn,
        home_slot,
        segments: home_segments,
        participant_slots,
        booking,
        deadline_ms,
        ..
    } = &home[0]
    else {
        panic!("expected a prepare first, got {home:?}");
    };
    assert_eq!(*home_slot, slot(&segments[0]));
    assert_eq!(home_segments, &vec![on[1][0].clone(), on[1][1].clone()]);
    // Home's slots first, each segment's slot once.
    let expected_slots: Vec<u16> = [&segments[0], &segments[2], &segments[1]]
        .into_iter()
        .map(|segment| slot(segment))
        .collect();
    assert_eq!(participant_slots, &expected_slots);
    assert_eq!(booking.as_ref().unwrap().segments, segments);
    let now = trecho_common::time::now_unix_millis();
    assert!(
        (now..now + 6000).contains(deadline_ms),
        "deadline about 5 s ahead"
    );
    assert!(matches!(&home[1], ShardOp::Decide { commit: true, txn: t, .. } if t == txn));

    let other = shards[0].received();
    assert_eq!(other.len(), 1, "{other:?}");
    let ShardOp::Prepare {
        txn: t,
        booking,
        segments,
        ..
    } = &other[0]
    else {
        panic!("expected a prepare, got {other:?}");
    };
    assert_eq!(t, txn);
    assert!(
        booking.is_none(),
        "only the home prepare carries the booking"
    );
    assert_eq!(segments, &vec![on[0][0].clone()]);
    router.stop().await;
}

#[tokio::test]
async fn refusal_aborts_and_reports_the_earliest_segment() {
    let (shards, on, router) = two_shards(5).await;
    // Shard 0 refuses its second segment (position 3), shard 1 its only one
    // (position 2): the client hears about position 2.
    shards[0].add_segment(&on[0][1], 0);
    let unknown = on[1][2].clone();
    shards[1].state.lock().unwrap().segments.remove(&unknown);
    let mut client = Client::connect(&router.address).await;
    let segments = vec![on[0][0].clone(), unknown.clone(), on[0][1].clone()];
    let response = client
        .call(1, "bookings.create", booking_params(&segments, 1))
        .await;
    assert_eq!(response["error"]["code"], 1002, "{response}");
    assert_eq!(response["error"]["data"]["segment"], unknown.as_str());
    assert_eq!(
        decides(&shards[0]),
        [false],
        "the home shard is told to abort"
    );

    let segments = vec![on[0][0].clone(), on[1][0].clone(), on[0][1].clone()];
    let response = client
        .call(2, "bookings.create", booking_params(&segments, 1))
        .await;
    assert_eq!(kind(&response), "sold_out", "{response}");
    assert_eq!(response["error"]["data"]["segment"], on[0][1].as_str());
    assert_eq!(response["error"]["data"]["left"], 0);
    router.stop().await;
}

#[tokio::test]
async fn retry_of_a_finished_booking_returns_it_and_aborts_the_new_attempt() {
    let (shards, on, router) = two_shards(5).await;
    let existing = Booking {
        id: "ABCDEF".into(),
        status: BookingStatus::Confirmed,
        passenger: Passenger {
            name: "Ana Souza".into(),
            document: "DOC-1".into(),
        },
        seats: 1,
        segments: vec![on[0][0].clone(), on[1][0].clone()],
        created_at: "2030-01-01T00:00:00Z".into(),
        expires_at: None,
    };
    shards[0].state.lock().unwrap().existing = Some(existing);
    let mut client = Client::connect(&router.address).await;
    let mut params = booking_params(&[on[0][0].clone(), on[1][0].clone()], 1);
    params["request_id"] = "retry-1".into();
    let response = client.call(1, "bookings.create", params).await;
    assert_eq!(response["result"]["id"], "ABCDEF", "{response}");
    assert_eq!(decides(&shards[0]), [false]);
    router.stop().await;
}

#[tokio::test]
async fn lost_participant_prepare_is_unavailable_after_acknowledged_abort() {
    let (shards, on, router) = two_shards(5).await;
    shards[1].ignore_prepares.store(true, Ordering::SeqCst);
    let mut client = Client::connect(&router.address).await;
    let started = Instant::now();
    let segments = vec![on[0][0].clone(), on[1][0].clone()];
    let response = client
        .call(1, "bookings.create", booking_params(&segments, 1))
        .await;
    assert_eq!(kind(&response), "shard_unavailable", "{response}");
    assert_eq!(response["error"]["data"]["shard"], 1);
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(decides(&shards[0]), [false]);
    router.stop().await;
}

#[tokio::test]
async fn lost_home_prepare_is_outcome_unknown() {
    let (shards, on, router) = two_shards(5).await;
    shards[0].ignore_prepares.store(true, Ordering::SeqCst);
    let mut client = Client::connect(&router.address).await;
    let segments = vec![on[0][0].clone(), on[1][0].clone()];
    let response = client
        .call(1, "bookings.create", booking_params(&segments, 1))
        .await;
    // The prepare timed out, so the link to the home shard dropped and the
    // abort could not be delivered: the home shard decides at its deadline.
    assert_eq!(response["error"]["code"], 1006, "{response}");
    assert_eq!(kind(&response), "outcome_unknown");
    assert_eq!(response["error"]["data"]["shard"], 0);
    router.stop().await;
}

#[tokio::test]
async fn unreachable_participant_is_shard_unavailable() {
    let (shards, on, router) = two_shards(5).await;
    let mut client = Client::connect(&router.address).await;
    // Make shard 1's link go down: a silent shard times out one request.
    shards[1].silent.store(true, Ordering::SeqCst);
    let response = client
        .call(1, "segments.get", serde_json::json!({"id": on[1][0]}))
        .await;
    assert_eq!(kind(&response), "shard_unavailable", "{response}");
    let started = Instant::now();
    let segments = vec![on[0][0].clone(), on[1][0].clone()];
    let response = client
        .call(2, "bookings.create", booking_params(&segments, 1))
        .await;
    assert_eq!(kind(&response), "shard_unavailable", "{response}");
    assert_eq!(response["error"]["data"]["shard"], 1);
    assert!(started.elapsed() < Duration::from_millis(500), "fails fast");
    assert_eq!(decides(&shards[0]), [false]);
    router.stop().await;
}
