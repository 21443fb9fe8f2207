//! Methods answered by the router, forwarded to one shard, or merged from
//! all shards.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use trecho_common::internal::ShardOp;
use trecho_common::schedule::{Airport, Flight, Schedule};

use crate::fake_shard::FakeShard;
use crate::harness::{booking_params, segments_on, start_router, Client};

#[tokio::test]
async fn airports_list_comes_from_the_schedule_sorted_by_code() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    let response = client.call(1, "airports.list", json!({})).await;
    let airports = response["result"]["airports"].as_array().unwrap();
    let builtin = Schedule::builtin();
    assert_eq!(airports.len(), builtin.airports.len());
    let codes: Vec<&str> = airports
        .iter()
        .map(|a| a["code"].as_str().unwrap())
        .collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted);
    assert!(airports[0]["name"].is_string() && airports[0]["city"].is_string());
    assert!(shard.received().is_empty(), "no shard is asked");
    router.stop().await;
}

#[tokio::test]
async fn search_merges_shards_and_reports_missing_ones() {
    let shards = [
        FakeShard::start(0).await,
        FakeShard::start(1).await,
        FakeShard::start(2).await,
    ];
    for (index, shard) in shards.iter().enumerate() {
        for id in segments_on(index, 3, 4) {
            shard.add_segment(&id, 5);
        }
    }
    let refs: Vec<&FakeShard> = shards.iter().collect();
    let router = start_router(&refs, |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    let response = client
        .call(1, "segments.search", json!({"origin": "GRU", "limit": 10}))
        .await;
    let result = &response["result"];
    assert_eq!(result["partial"], false, "{response}");
    assert_eq!(result["unavailable_shards"], json!([]));
    let ids: Vec<&str> = result["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 10, "truncated to the limit");
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "equal departures are ordered by id");

    shards[2].silent.store(true, Ordering::SeqCst);
    let response = client
        .call(2, "segments.search", json!({"origin": "GRU"}))
        .await;
    let result = &response["result"];
    assert_eq!(result["partial"], true, "{response}");
    assert_eq!(result["unavailable_shards"], json!([2]));
    assert_eq!(result["segments"].as_array().unwrap().len(), 8);
    router.stop().await;
}

#[tokio::test]
async fn cluster_status_lists_every_shard() {
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    shards[1].add_segment(&segments_on(1, 2, 1)[0], 5);
    let router = start_router(&[&shards[0], &shards[1]], |config| config.map_version = 1).await;
    let mut client = Client::connect(&router.address).await;
    let response = client.call(1, "cluster.status", json!({})).await;
    let result = &response["result"];
    assert_eq!(result["slots_total"], 16384, "{response}");
    assert_eq!(result["map_version"], 1);
    let listed = result["shards"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], 0);
    assert_eq!(listed[0]["slots"], json!([[0, 8191]]));
    assert_eq!(listed[0]["address"], shards[0].address.as_str());
    assert_eq!(listed[1]["segments"], 1);
    assert_eq!(listed[1]["healthy"], true);
    router.stop().await;
}

#[tokio::test]
async fn booking_methods_go_to_the_home_shard_of_the_locator() {
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    let segment = segments_on(1, 2, 1).remove(0);
    shards[1].add_segment(&segment, 5);
    let router = start_router(&[&shards[0], &shards[1]], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    let created = client
        .call(
            1,
            "bookings.create",
            booking_params(std::slice::from_ref(&segment), 1),
        )
        .await;
    let locator = created["result"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["result"]["status"], "confirmed", "{created}");
    for (id, method) in [
        (2, "bookings.get"),
        (3, "bookings.confirm"),
        (4, "bookings.cancel"),
    ] {
        let response = client
            .call(id, method, json!({"id": locator, "document": "DOC-1"}))
            .await;
        assert_eq!(response["result"]["id"], locator.as_str(), "{response}");
    }
    let response = client
        .call(
            5,
            "bookings.get",
            json!({"id": locator, "document": "OTHER"}),
        )
        .await;
    assert_eq!(
        response["error"]["data"]["kind"], "unknown_booking",
        "{response}"
    );
    assert!(
        shards[0].received().is_empty(),
        "{:?}",
        shards[0].received()
    );
    let listed = client
        .call(6, "bookings.list", json!({"document": "DOC-1"}))
        .await;
    assert_eq!(
        listed["result"]["bookings"][0]["id"],
        locator.as_str(),
        "{listed}"
    );
    assert_eq!(listed["result"]["partial"], false);
    assert!(shards[0]
        .received()
        .iter()
        .all(|op| matches!(op, ShardOp::ListBookings { .. })));
    router.stop().await;
}

fn airport(code: &str) -> Airport {
    Airport {
        code: code.into(),
        name: format!("{code} airport"),
        city: code.into(),
        latitude: 0.0,
        longitude: 0.0,
        utc_offset_minutes: -180,
    }
}

fn flight(number: &str, from: &str, to: &str, minutes: u32, duration: u32) -> Flight {
    Flight {
        number: number.into(),
        origin: from.into(),
        destination: to.into(),
        departure_minutes: minutes,
        duration_minutes: duration,
        aircraft: "320".into(),
        capacity: 100,
    }
}

#[tokio::test]
async fn routes_find_uses_the_schedule_and_seats_from_shards() {
    let schedule = Schedule {
        airports: vec![airport("GRU"), airport("SSA"), airport("REC")],
        flights: vec![
            flight("T1", "GRU", "SSA", 8 * 60, 150),
            flight("T2", "SSA", "REC", 11 * 60 + 30, 60),
            flight("T3", "GRU", "REC", 9 * 60, 200),
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schedule.json");
    schedule.save(&path).unwrap();
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    let seats = [
        ("T1-2030-01-01", 9),
        ("T2-2030-01-01", 4),
        ("T3-2030-01-01", 2),
    ];
    for (id, left) in seats {
        let owner = segments_owner(id, 2);
        shards[owner].add_segment(id, left);
    }
    let router = start_router(&[&shards[0], &shards[1]], |config| {
        config.schedule = Some(path.clone());
    })
    .await;
    let mut client = Client::connect(&router.address).await;
    let params = json!({"origin": "GRU", "destination": "REC", "date": "2030-01-01"});
    let response = client.call(1, "routes.find", params).await;
    let routes = response["result"]["routes"].as_array().unwrap();
    let flights = |route: &Value| -> Vec<String> {
        let segments = route["segments"].as_array().unwrap();
        segments
            .iter()
            .map(|s| s["flight"].as_str().unwrap().to_owned())
            .collect()
    };
    // T3 arrives 12:20, T1+T2 at 12:30.
    assert_eq!(flights(&routes[0]), ["T3"], "{response}");
    assert_eq!(flights(&routes[1]), ["T1", "T2"]);
    assert_eq!(routes[1]["seats_left"], 4);
    assert_eq!(routes[1]["stops"], 1);
    assert_eq!(routes[1]["duration_minutes"], 270);
    assert_eq!(routes[1]["segments"][0]["seats_left"], 9);
    assert_eq!(routes[1]["departure"], "2030-01-01T08:00:00-03:00");
    assert_eq!(response["result"]["partial"], false);

    let params = json!({"origin": "GRU", "destination": "REC", "date": "2030-01-01", "seats": 3});
    let response = client.call(2, "routes.find", params).await;
    let routes = response["result"]["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "{response}");
    assert_eq!(flights(&routes[0]), ["T1", "T2"]);

    // A date the shards have no segments for gives no routes.
    let params = json!({"origin": "GRU", "destination": "REC", "date": "2030-01-02"});
    let response = client.call(3, "routes.find", params).await;
    assert_eq!(response["result"]["routes"], json!([]), "{response}");
    router.stop().await;
}

/// Returns the index of the shard of `count` that owns segment `id`.
fn segments_owner(id: &str, count: usize) -> usize {
    let slot = trecho_common::hashing::slot(id);
    (0..count)
        .find(|&index| {
            let (first, last) = crate::harness::slot_range(index, count);
            (first..=last).contains(&slot)
        })
        .unwrap()
}

#[tokio::test]
async fn searches_past_max_fanouts_get_overloaded() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| config.max_fanouts = 2).await;
    let mut client = Client::connect(&router.address).await;
    // The shard answers nothing, so the first two searches hold their
    // permits until the request timeout.
    shard.silent.store(true, Ordering::SeqCst);
    let search = |id: u64| crate::harness::request(id, "segments.search", json!({"origin": "GRU"}));
    let pipelined = format!("{}{}{}", search(1), search(2), search(3));
    client.send(pipelined.as_bytes()).await;
    let refused = client.json().await;
    assert_eq!(
        refused["id"], 3,
        "the third search is answered first: {refused}"
    );
    assert_eq!(refused["error"]["code"], 1007);
    assert_eq!(refused["error"]["data"]["kind"], "overloaded");
    let mut partial_ids = vec![
        client.json().await["id"].clone(),
        client.json().await["id"].clone(),
    ];
    partial_ids.sort_by_key(|id| id.as_u64());
    assert_eq!(partial_ids, vec![json!(1), json!(2)]);

    // Once they finished, their permits are back.
    shard.silent.store(false, Ordering::SeqCst);
    let response = client
        .call(4, "segments.search", json!({"origin": "GRU"}))
        .await;
    assert!(response["result"].is_object(), "{response}");
    router.stop().await;
}
