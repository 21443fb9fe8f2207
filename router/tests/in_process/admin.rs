//! `admin.add_shard` and `admin.move_slots` in front of fake shards, and
//! the admin token that guards them.

use serde_json::{json, Value};
use trecho_common::internal::ShardOp;
use trecho_common::protocol::methods::AdminToken;

use crate::fake_shard::FakeShard;
use crate::harness::{start_router, Client};

const TOKEN: &str = "t0ken-for-tests";

fn message(response: &Value) -> &str {
    response["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn admin_methods_are_off_without_a_token() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |_| {}).await;
    let mut client = Client::connect(&router.address).await;
    let params = json!({"token": "anything", "address": "127.0.0.1:1"});
    let response = client.call(1, "admin.add_shard", params).await;
    assert_eq!(response["error"]["code"], 1012, "{response}");
    assert_eq!(response["error"]["data"]["kind"], "unauthorized");
    assert!(
        message(&response).contains("admin methods are off"),
        "{response}"
    );
    router.stop().await;
}

#[tokio::test]
async fn wrong_admin_token_is_unauthorized() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| {
        config.admin_token = Some(AdminToken(TOKEN.into()));
    })
    .await;
    let mut client = Client::connect(&router.address).await;
    let params = json!({"token": "guess", "first": 0, "last": 9, "to": 0});
    let response = client.call(1, "admin.move_slots", params).await;
    assert_eq!(response["error"]["code"], 1012, "{response}");
    assert!(message(&response).contains("token is wrong"), "{response}");
    assert!(!response.to_string().contains(TOKEN));
    assert!(!response.to_string().contains("guess"));
    assert!(shard.received().is_empty(), "no shard is asked");
    router.stop().await;
}

#[tokio::test]
async fn add_shard_links_a_shard_with_no_slots() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| {
        config.admin_token = Some(AdminToken(TOKEN.into()));
    })
    .await;
    let joining = FakeShard::start(7).await;
    let mut client = Client::connect(&router.address).await;
    let params = json!({"token": TOKEN, "address": joining.address});
    let response = client.call(1, "admin.add_shard", params.clone()).await;
    assert_eq!(
        response["result"],
        json!({"id": 7, "slots": []}),
        "{response}"
    );
    let again = client.call(2, "admin.add_shard", params).await;
    assert_eq!(again["result"], json!({"id": 7, "slots": []}), "{again}");

    let status = client.call(3, "cluster.status", json!({})).await;
    let listed = status["result"]["shards"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{status}");
    assert_eq!(listed[1]["id"], 7);
    assert_eq!(listed[1]["address"], joining.address.as_str());
    assert_eq!(listed[1]["healthy"], true);

    let search = client
        .call(4, "segments.search", json!({"origin": "GRU"}))
        .await;
    assert_eq!(search["result"]["partial"], false, "{search}");
    let searched = joining
        .received()
        .iter()
        .any(|op| matches!(op, ShardOp::Search { .. }));
    assert!(!searched, "a shard with no slots is not searched");
    router.stop().await;
}

#[tokio::test]
async fn add_shard_rejects_bad_and_unreachable_addresses() {
    let shard = FakeShard::start(0).await;
    let router = start_router(&[&shard], |config| {
        config.admin_token = Some(AdminToken(TOKEN.into()));
    })
    .await;
    let mut client = Client::connect(&router.address).await;
    let params = json!({"token": TOKEN, "address": "no-port"});
    let response = client.call(1, "admin.add_shard", params).await;
    assert_eq!(response["error"]["code"], -32602, "{response}");
    assert!(message(&response).contains("not HOST:PORT"), "{response}");

    // A port nothing listens on: bind one, then free it.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = free.local_addr().unwrap().to_string();
    drop(free);
    let params = json!({"token": TOKEN, "address": address});
    let response = client.call(2, "admin.add_shard", params).await;
    assert_eq!(response["error"]["code"], -32602, "{response}");
    assert!(
        message(&response).contains("no shard responded"),
        "{response}"
    );

    // A second shard with an id the map has.
    let twin = FakeShard::start(0).await;
    let params = json!({"token": TOKEN, "address": twin.address});
    let response = client.call(3, "admin.add_shard", params).await;
    assert!(
        message(&response).contains("in the map already"),
        "{response}"
    );
    router.stop().await;
}

#[tokio::test]
async fn move_slots_sends_the_move_to_the_owner() {
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    let router = start_router(&[&shards[0], &shards[1]], |config| {
        config.admin_token = Some(AdminToken(TOKEN.into()));
    })
    .await;
    shards[0].state.lock().unwrap().moved = Some((7, 3));
    let mut client = Client::connect(&router.address).await;
    let params = json!({"token": TOKEN, "first": 10, "last": 20, "to": 1});
    let response = client.call(1, "admin.move_slots", params).await;
    assert_eq!(
        response["result"],
        json!({"from": 0, "to": 1, "map_version": 2, "rows": 7, "pause_ms": 3}),
        "{response}"
    );
    let moves: Vec<ShardOp> = shards[0]
        .received()
        .into_iter()
        .filter(|op| matches!(op, ShardOp::MoveSlots { .. }))
        .collect();
    let expected = ShardOp::MoveSlots {
        first: 10,
        last: 20,
        target: 1,
        target_address: shards[1].address.clone(),
        version: 2,
    };
    assert_eq!(moves, [expected]);
    router.stop().await;
}

#[tokio::test]
async fn move_slots_rejects_split_ranges_and_unknown_targets() {
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    let router = start_router(&[&shards[0], &shards[1]], |config| {
        config.admin_token = Some(AdminToken(TOKEN.into()));
    })
    .await;
    let mut client = Client::connect(&router.address).await;
    let split = json!({"token": TOKEN, "first": 8000, "last": 8300, "to": 1});
    let response = client.call(1, "admin.move_slots", split).await;
    assert_eq!(response["error"]["code"], -32602, "{response}");
    assert!(
        message(&response).contains("each shard's part"),
        "{response}"
    );

    let unknown = json!({"token": TOKEN, "first": 0, "last": 9, "to": 9});
    let response = client.call(2, "admin.move_slots", unknown).await;
    assert_eq!(response["error"]["code"], -32602, "{response}");
    assert!(message(&response).contains("admin.add_shard"), "{response}");

    for shard in &shards {
        let moved = shard
            .received()
            .iter()
            .any(|op| matches!(op, ShardOp::MoveSlots { .. }));
        assert!(!moved, "no move is sent");
    }
    router.stop().await;
}

#[tokio::test]
async fn move_of_slots_the_target_owns_moves_nothing() {
    let shards = [FakeShard::start(0).await, FakeShard::start(1).await];
    let router = start_router(&[&shards[0], &shards[1]], |config| {
        config.admin_token = Some(AdminToken(TOKEN.into()));
    })
    .await;
    let mut client = Client::connect(&router.address).await;
    let owned = json!({"token": TOKEN, "first": 0, "last": 9, "to": 0});
    let response = client.call(1, "admin.move_slots", owned).await;
    assert_eq!(
        response["result"],
        json!({"from": 0, "to": 0, "map_version": 1, "rows": 0, "pause_ms": 0}),
        "{response}"
    );
    let moved = shards[0]
        .received()
        .iter()
        .any(|op| matches!(op, ShardOp::MoveSlots { .. }));
    assert!(!moved, "no move is sent");
    router.stop().await;
}
