//! Framing, pipelining, batches and connection limits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trecho_common::internal::ShardOp;

use crate::fake_shard::FakeShard;
use crate::harness::{request, segments_on, start_router, Client};

const PING: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";

fn assert_pong(response: &Value, id: u64) {
    assert_eq!(response["jsonrpc"], "2.0", "{response}");
    assert_eq!(response["id"], id, "{response}");
    assert_eq!(response["result"], json!({"pong": true}), "{response}");
}

#[tokio::test]
async fn request_split_into_single_bytes_is_answered() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    for byte in PING {
        client.send(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_pong(&client.json().await, 1);
    router.stop().await;
}

#[tokio::test]
async fn many_requests_in_one_write_are_all_answered() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    let mut burst = String::new();
    for id in 0..50u64 {
        burst.push_str(&request(id, "ping", json!({})));
    }
    // Carriage returns before newlines and empty lines are tolerated.
    burst = burst.replace("}\n", "}\r\n\n");
    client.send(burst.as_bytes()).await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        let response = client.json().await;
        assert_eq!(response["result"]["pong"], true, "{response}");
        ids.push(response["id"].as_u64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..50).collect::<Vec<u64>>());
    router.stop().await;
}

#[tokio::test]
async fn responses_past_output_limit_are_all_sent() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    // Each airports.list answer is a few KiB, so 400 of them pass the
    // router's per-connection output limit and reading must resume after
    // the flush.
    let mut burst = String::new();
    for id in 0..400u64 {
        burst.push_str(&request(id, "airports.list", json!({})));
    }
    client.send(burst.as_bytes()).await;
    let mut answered = 0;
    for _ in 0..400 {
        let response = client.json().await;
        assert!(response["result"]["airports"].is_array(), "{response}");
        answered += 1;
    }
    assert_eq!(answered, 400);
    router.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_matched_by_id() {
    let shard = FakeShard::start(0).await;
    let segments = segments_on(0, 1, 10);
    for id in &segments {
        shard.add_segment(id, 7);
    }
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    let mut burst = String::new();
    for id in 0..500u64 {
        let line = if id % 2 == 0 {
            request(format!("r-{id}"), "ping", json!({}))
        } else {
            let segment = &segments[id as usize % segments.len()];
            request(format!("r-{id}"), "segments.get", json!({"id": segment}))
        };
        burst.push_str(&line);
    }
    client.send(burst.as_bytes()).await;
    let mut responses = HashMap::new();
    for _ in 0..500 {
        let response = client.json().await;
        let id = response["id"].as_str().unwrap().to_owned();
        assert!(
            responses.insert(id, response).is_none(),
            "one response per id"
        );
    }
    for id in 0..500u64 {
        let response = &responses[&format!("r-{id}")];
        if id % 2 == 0 {
            assert_eq!(response["result"]["pong"], true, "{response}");
        } else {
            let segment = &segments[id as usize % segments.len()];
            assert_eq!(response["result"]["id"], segment.as_str(), "{response}");
            assert_eq!(response["result"]["seats_left"], 7, "{response}");
        }
    }
    router.stop().await;
}

#[tokio::test]
async fn requests_reach_the_shard_in_the_order_sent() {
    let shard = FakeShard::start(0).await;
    let segments = segments_on(0, 1, 3);
    for id in &segments {
        shard.add_segment(id, 1000);
    }
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    let mut burst = String::new();
    let mut expected = Vec::new();
    for id in 0..200usize {
        let segment = &segments[id % segments.len()];
        if id % 3 == 0 {
            let params = crate::harness::booking_params(std::slice::from_ref(segment), 1);
            burst.push_str(&request(id as u64, "bookings.create", params));
            expected.push(format!("book {segment}"));
        } else {
            burst.push_str(&request(id as u64, "segments.get", json!({"id": segment})));
            expected.push(format!("get {segment}"));
        }
    }
    client.send(burst.as_bytes()).await;
    for _ in 0..200 {
        let response = client.json().await;
        assert!(response.get("result").is_some(), "{response}");
    }
    let received: Vec<String> = shard
        .received()
        .into_iter()
        .map(|op| match op {
            ShardOp::Book { request } => format!("book {}", request.segments[0]),
            ShardOp::GetSegment { id } => format!("get {id}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(received, expected);
    router.stop().await;
}

#[tokio::test]
async fn batch_answers_requests_and_skips_notifications() {
    let shard = FakeShard::start(0).await;
    let segment = segments_on(0, 1, 1).remove(0);
    shard.add_segment(&segment, 3);
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "segments.get", "params": {"id": segment}},
        {"foo": 1},
        {"jsonrpc": "2.0", "id": 3, "method": "bookings.delete"},
    ]);
    client.send(format!("{batch}\n").as_bytes()).await;
    let response = client.json().await;
    let items = response.as_array().expect("a batch gets an array");
    assert_eq!(items.len(), 4, "{response}");
    assert_pong(&items[0], 1);
    assert_eq!(items[1]["id"], 2);
    assert_eq!(items[1]["result"]["id"], segment.as_str());
    assert_eq!(items[2]["id"], Value::Null);
    assert_eq!(items[2]["error"]["code"], -32600);
    assert_eq!(items[3]["id"], 3);
    assert_eq!(items[3]["error"]["code"], -32601);

    client.send(b"[]\n").await;
    let response = client.json().await;
    assert_eq!(response["error"]["code"], -32600, "{response}");
    assert_eq!(response["id"], Value::Null);

    // A batch of notifications gets nothing: the next line answers the ping.
    let notifications = json!([
        {"jsonrpc": "2.0", "method": "ping"},
        {"jsonrpc": "2.0", "method": "segments.get", "params": {"id": segment}},
    ]);
    client.send(format!("{notifications}\n").as_bytes()).await;
    client.send(PING).await;
    assert_pong(&client.json().await, 1);
    router.stop().await;
}

#[tokio::test]
async fn notification_is_executed_without_a_response() {
    let shard = FakeShard::start(0).await;
    let segment = segments_on(0, 1, 1).remove(0);
    shard.add_segment(&segment, 3);
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    let params = crate::harness::booking_params(std::slice::from_ref(&segment), 2);
    let notification = json!({"jsonrpc": "2.0", "method": "bookings.create", "params": params});
    client.send(format!("{notification}\n").as_bytes()).await;
    client.send(PING).await;
    assert_pong(&client.json().await, 1);
    let deadline = Instant::now() + Duration::from_secs(2);
    while shard.seats_left(&segment) != 1 {
        assert!(
            Instant::now() < deadline,
            "the notification was not executed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    router.stop().await;
}

#[tokio::test]
async fn overlong_line_gets_one_error_and_the_connection_stays_usable() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| config.max_line = 4096).await;
    let mut client = Client::connect(&router.address).await;
    let long = vec![b'x'; 10_000];
    client.send(&long[..6000]).await;
    client.send(&long[6000..]).await;
    client.send(b"\n").await;
    client.send(PING).await;
    let error = client.json().await;
    assert_eq!(error["id"], Value::Null, "{error}");
    assert_eq!(error["error"]["code"], -32600, "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("4096"), "{message}");
    assert_pong(&client.json().await, 1);

    // A line of exactly max_line bytes is accepted.
    let mut exact = br#"{"jsonrpc":"2.0","id":1,"method":"ping","pad":""#.to_vec();
    exact.resize(4096 - 2, b' ');
    exact.extend_from_slice(b"\"}");
    assert_eq!(exact.len(), 4096);
    exact.push(b'\n');
    client.send(&exact).await;
    assert_pong(&client.json().await, 1);
    router.stop().await;
}

#[tokio::test]
async fn invalid_json_and_utf8_get_parse_errors() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    client.send(b"{oops\n").await;
    let error = client.json().await;
    assert_eq!(error["error"]["code"], -32700, "{error}");
    assert_eq!(error["id"], Value::Null);
    client.send(b"\xff\xfe\n").await;
    let error = client.json().await;
    assert_eq!(error["error"]["code"], -32700, "{error}");
    client.send(b"\n  \r\n").await;
    client
        .send(br#"{"jsonrpc":"2.0","id":9,"method":"segments.get","params":{"id":"x"}}"#)
        .await;
    client.send(b"\n").await;
    let error = client.json().await;
    assert_eq!(error["id"], 9, "{error}");
    assert_eq!(error["error"]["code"], -32602, "{error}");
    client.send(PING).await;
    assert_pong(&client.json().await, 1);
    router.stop().await;
}

#[tokio::test]
async fn silent_shard_fails_requests_within_about_a_second() {
    let shard = FakeShard::start(0).await;
    let segment = segments_on(0, 1, 1).remove(0);
    shard.add_segment(&segment, 3);
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    let response = client.call(1, "segments.get", json!({"id": segment})).await;
    assert_eq!(response["result"]["seats_left"], 3, "{response}");

    shard
        .silent
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let response = client.call(2, "segments.get", json!({"id": segment})).await;
    let waited = started.elapsed();
    assert_eq!(response["error"]["code"], 1005, "{response}");
    assert_eq!(response["error"]["data"]["kind"], "shard_unavailable");
    assert_eq!(response["error"]["data"]["shard"], 0);
    assert!(response["error"]["data"]["retry_after_ms"].is_u64());
    assert!(waited < Duration::from_millis(1500), "{waited:?}");

    // The link is down now, so the next request fails without waiting.
    let started = Instant::now();
    let response = client.call(3, "segments.get", json!({"id": segment})).await;
    assert_eq!(response["error"]["code"], 1005, "{response}");
    assert!(started.elapsed() < Duration::from_millis(300));

    // Local methods keep working.
    client.send(PING).await;
    assert_pong(&client.json().await, 1);
    router.stop().await;
}

#[tokio::test]
async fn connection_over_the_limit_gets_overloaded_and_is_closed() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| config.max_connections = 1).await;
    let mut first = Client::connect(&router.address).await;
    first.send(PING).await;
    assert_pong(&first.json().await, 1);

    let mut second = Client::connect(&router.address).await;
    let error = second.json().await;
    assert_eq!(error["id"], Value::Null, "{error}");
    assert_eq!(error["error"]["code"], 1007, "{error}");
    assert_eq!(error["error"]["data"]["kind"], "overloaded");
    assert_eq!(
        second.try_line().await,
        None,
        "the router closes the connection"
    );

    drop(first);
    // The slot frees once the router sees the first client leave.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut third = Client::connect(&router.address).await;
        third.send(PING).await;
        let response = third.json().await;
        if response.get("result").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot never freed: {response}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    router.stop().await;
}

#[tokio::test]
async fn client_that_does_not_read_does_not_stall_others() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| config.max_in_flight = 64).await;
    let mut greedy = Client::connect(&router.address).await;
    let mut burst = Vec::new();
    for id in 0..2000u64 {
        burst.extend_from_slice(request(id, "airports.list", json!({})).as_bytes());
    }
    // The router stops reading this client once its responses back up, so
    // the write may not finish; it runs on its own task.
    let writer = tokio::spawn(async move {
        for _ in 0..20 {
            greedy.send(&burst).await;
        }
        greedy
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut other = Client::connect(&router.address).await;
    let started = Instant::now();
    other.send(PING).await;
    assert_pong(&other.json().await, 1);
    assert!(started.elapsed() < Duration::from_millis(500));
    writer.abort();
    router.stop().await;
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| config.idle_timeout_ms = 200).await;
    let mut client = Client::connect(&router.address).await;
    client.send(PING).await;
    assert_pong(&client.json().await, 1);
    let answered = Instant::now();

    let closed = client.try_line().await;

    assert_eq!(closed, None, "the router closed the idle connection");
    let waited = answered.elapsed();
    assert!(
        waited >= Duration::from_millis(150),
        "closed after {waited:?}"
    );
    router.stop().await;
}

#[tokio::test]
async fn busy_connection_outlives_idle_timeout() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| config.idle_timeout_ms = 200).await;
    let mut client = Client::connect(&router.address).await;

    for _ in 0..12 {
        client.send(PING).await;
        assert_pong(&client.json().await, 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    client.send(PING).await;
    assert_pong(&client.json().await, 1);
    router.stop().await;
}

#[tokio::test]
async fn zero_idle_timeout_keeps_connections_open() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| config.idle_timeout_ms = 0).await;
    let mut client = Client::connect(&router.address).await;

    tokio::time::sleep(Duration::from_millis(400)).await;

    client.send(PING).await;
    assert_pong(&client.json().await, 1);
    router.stop().await;
}

#[tokio::test]
async fn slowly_arriving_line_outlives_idle_timeout() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| config.idle_timeout_ms = 200).await;
    let mut client = Client::connect(&router.address).await;

    // One byte every 50 ms: the line takes longer than the timeout, but
    // the connection is never silent for long.
    for byte in PING {
        client.send(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_pong(&client.json().await, 1);
    router.stop().await;
}
