//! The router's side of slot moves: requests rejected with `slot_moving`
//! are sent again, searches skip shards that own no slots, and a slot that
//! changed shards is followed to its new owner.

use std::time::{Duration, Instant};

use serde_json::json;
use trecho_common::internal::ShardOp;
use trecho_common::shardmap::ShardMap;

use crate::fake_shard::{FakeShard, Moving};
use crate::harness::{booking_params, segments_on, slot_range, start_router, Client};

fn pause(shard: &FakeShard, refusals_left: Option<u32>, retry_after_ms: u64) {
    shard.state.lock().unwrap().moving = Some(Moving {
        refusals_left,
        retry_after_ms,
    });
}

fn count(shard: &FakeShard, pick: fn(&ShardOp) -> bool) -> usize {
    shard.received().iter().filter(|op| pick(op)).count()
}

fn kind(response: &serde_json::Value) -> &str {
    response["error"]["data"]["kind"].as_str().unwrap_or("")
}

#[tokio::test]
async fn get_waits_out_a_short_move_pause() {
    let shard = FakeShard::start(0).await;
    let segment = segments_on(0, 1, 1).remove(0);
    shard.add_segment(&segment, 5);
    let router = start_router(&[&shard], |_| {}).await;
    pause(&shard, Some(3), 20);
    let mut client = Client::connect(&router.address).await;
    let response = client.call(1, "segments.get", json!({"id": segment})).await;
    assert_eq!(response["result"]["id"], segment.as_str(), "{response}");
    let gets = count(&shard, |op| matches!(op, ShardOp::GetSegment { .. }));
    assert_eq!(gets, 4, "three refusals, then the answer");
    router.stop().await;
}

#[tokio::test]
async fn pause_longer_than_the_budget_gives_map_changed() {
    let shard = FakeShard::start(0).await;
    let segment = segments_on(0, 1, 1).remove(0);
    shard.add_segment(&segment, 5);
    let router = start_router(&[&shard], |_| {}).await;
    pause(&shard, None, 100);
    let mut client = Client::connect(&router.address).await;
    let started = Instant::now();
    let response = client.call(1, "segments.get", json!({"id": segment})).await;
    let waited = started.elapsed();
    assert_eq!(response["error"]["code"], 1011, "{response}");
    assert_eq!(kind(&response), "map_changed");
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    let gets = count(&shard, |op| matches!(op, ShardOp::GetSegment { .. }));
    assert!(
        (15..=25).contains(&gets),
        "about one try per 100 ms: {gets}"
    );
    router.stop().await;
}

#[tokio::test]
async fn single_shard_booking_waits_out_a_pause() {
    let shard = FakeShard::start(0).await;
    let segments = segments_on(0, 1, 2);
    for id in &segments {
        shard.add_segment(id, 5);
    }
    let router = start_router(&[&shard], |_| {}).await;
    pause(&shard, Some(2), 10);
    let mut client = Client::connect(&router.address).await;
    let response = client
        .call(1, "bookings.create", booking_params(&segments, 2))
        .await;
    assert_eq!(response["result"]["status"], "confirmed", "{response}");
    assert_eq!(shard.seats_left(&segments[0]), 3, "seats taken once");
    let books = count(&shard, |op| matches!(op, ShardOp::Book { .. }));
    assert_eq!(books, 3);
    router.stop().await;
}

#[tokio::test]
async fn two_phase_booking_aborts_and_retries_after_a_pause() {
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    let on = [segments_on(0, 2, 1), segments_on(1, 2, 1)];
    shards[0].add_segment(&on[0][0], 5);
    shards[1].add_segment(&on[1][0], 5);
    let router = start_router(&[&shards[0], &shards[1]], |_| {}).await;
    // The participant, not the home shard, pauses once.
    pause(&shards[1], Some(1), 10);
    let mut client = Client::connect(&router.address).await;
    let segments = vec![on[0][0].clone(), on[1][0].clone()];
    let response = client
        .call(1, "bookings.create", booking_params(&segments, 1))
        .await;
    assert_eq!(response["result"]["status"], "confirmed", "{response}");
    let decides: Vec<bool> = shards[0]
        .received()
        .into_iter()
        .filter_map(|op| match op {
            ShardOp::Decide { commit, .. } => Some(commit),
            _ => None,
        })
        .collect();
    assert_eq!(decides, [false, true], "the first attempt is aborted");
    let prepares = count(&shards[1], |op| matches!(op, ShardOp::Prepare { .. }));
    assert_eq!(prepares, 2);
    router.stop().await;
}

#[tokio::test]
async fn moved_slot_is_followed_to_its_new_owner() {
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    let segment = segments_on(0, 2, 1).remove(0);
    // After the move, shard 1 owns the segment's slot.
    shards[1].add_segment(&segment, 5);
    let router = start_router(&[&shards[0], &shards[1]], |_| {}).await;
    let slot = trecho_common::hashing::slot(&segment);
    let (first, last) = slot_range(0, 2);
    let mut map = ShardMap::parse_spec(
        1,
        &format!(
            "0={}@{first}-{last};1={}@{}-16383",
            shards[0].address,
            shards[1].address,
            last + 1
        ),
    )
    .unwrap();
    map.assign(slot, slot, 1, &shards[1].address, 2).unwrap();
    for shard in &shards {
        shard.state.lock().unwrap().map = Some(map.clone());
    }
    pause(&shards[0], None, 10);
    let mut client = Client::connect(&router.address).await;
    let response = client.call(1, "segments.get", json!({"id": segment})).await;
    assert_eq!(response["result"]["id"], segment.as_str(), "{response}");
    let status = client.call(2, "cluster.status", json!({})).await;
    assert_eq!(status["result"]["map_version"], 2, "{status}");
    router.stop().await;
}

#[tokio::test]
async fn search_asks_a_paused_shard_again() {
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    for (index, shard) in shards.iter().enumerate() {
        for id in segments_on(index, 2, 2) {
            shard.add_segment(&id, 5);
        }
    }
    let router = start_router(&[&shards[0], &shards[1]], |_| {}).await;
    pause(&shards[1], Some(1), 10);
    let mut client = Client::connect(&router.address).await;
    let response = client
        .call(1, "segments.search", json!({"origin": "GRU"}))
        .await;
    let result = &response["result"];
    assert_eq!(result["partial"], false, "{response}");
    assert_eq!(result["segments"].as_array().unwrap().len(), 4);
    let searches = count(&shards[1], |op| matches!(op, ShardOp::Search { .. }));
    assert_eq!(searches, 2);
    router.stop().await;
}

#[tokio::test]
async fn searches_skip_shards_without_slots_and_status_lists_them() {
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    let spec = format!("0={}@0-16383;1={}@", shards[0].address, shards[1].address);
    let router = start_router(&[&shards[0], &shards[1]], |config| {
        config.shards = Some(spec);
    })
    .await;
    shards[0].state.lock().unwrap().slots = vec![[0, 16383]];
    shards[1].state.lock().unwrap().slots = Vec::new();
    let mut client = Client::connect(&router.address).await;
    let search = client
        .call(1, "segments.search", json!({"origin": "GRU"}))
        .await;
    assert_eq!(search["result"]["partial"], false, "{search}");
    let list = client
        .call(2, "bookings.list", json!({"document": "DOC-1"}))
        .await;
    assert_eq!(list["result"]["partial"], false, "{list}");
    assert!(
        shards[1].received().is_empty(),
        "{:?}",
        shards[1].received()
    );
    let status = client.call(3, "cluster.status", json!({})).await;
    let listed = status["result"]["shards"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{status}");
    assert_eq!(listed[1]["id"], 1);
    assert_eq!(listed[1]["slots"], json!([]));
    assert_eq!(listed[1]["healthy"], true);
    router.stop().await;
}
