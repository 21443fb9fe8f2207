//! `trecho admin` against an in-process router that keeps a shard map,
//! applies `admin.move_slots` to it, and fails calls as scripted.
//!
//! The router here is a stand-in. It moves no data, and only checks what
//! the command line sends and how it reacts to each response.

use std::collections::VecDeque;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use trecho_common::hashing::{slot, SLOT_COUNT};
use trecho_common::internal::MoveView;
use trecho_common::protocol::methods::{
    AddShardParams, AddShardResult, ClusterStatus, MoveSlotsParams, MoveSlotsResult,
    ShardStatusView,
};
use trecho_common::shardmap::ShardMap;
use trecho_common::Error;

const TOKEN: &str = "test-admin-token";
/// Time a whole command may take.
const LIMIT: Duration = Duration::from_secs(60);

/// How the router responds to the next `admin.move_slots` call.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `shard_unavailable`, moving nothing.
    Unavailable,
    /// Moves the slots, then closes the connection without a response.
    LoseResponse,
    /// `map_changed`, moving nothing.
    MapChanged,
    /// `invalid params`, moving nothing.
    Invalid,
    /// Responds that the slots moved, but moves nothing.
    Pretend,
}

struct State {
    map: ShardMap,
    segments: Vec<u64>,
    faults: VecDeque<Fault>,
    /// Every move applied: first, last, from, to.
    moves: Vec<(u16, u16, u32, u32)>,
    /// Status reads still to respond to with a move in progress.
    busy_reads: u32,
    status_reads: u32,
}

type Shared = Arc<Mutex<State>>;

/// Segments per slot of 336 flights a day over 30 days.
fn segment_counts() -> Vec<u64> {
    let mut counts = vec![0; usize::from(SLOT_COUNT)];
    for flight in 0..336 {
        for day in 1..=30 {
            let id = format!("AD{}-2026-11-{day:02}", 1000 + flight);
            counts[usize::from(slot(&id))] += 1;
        }
    }
    counts
}

fn addresses(count: u16) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.0.0.{}:7001", i + 1))
        .collect()
}

fn state(shards: u16) -> Shared {
    Arc::new(Mutex::new(State {
        map: ShardMap::even(&addresses(shards)).unwrap(),
        segments: segment_counts(),
        faults: VecDeque::new(),
        moves: Vec::new(),
        busy_reads: 0,
        status_reads: 0,
    }))
}

fn status(state: &mut State) -> ClusterStatus {
    state.status_reads += 1;
    let busy = state.busy_reads > 0;
    state.busy_reads = state.busy_reads.saturating_sub(1);
    let shards = state
        .map
        .shards
        .iter()
        .map(|info| {
            let segments = info
                .slots
                .iter()
                .flat_map(|&[a, b]| a..=b)
                .map(|s| state.segments[usize::from(s)])
                .sum();
            let moving = (busy && info.id == 0).then_some(MoveView {
                first: 0,
                last: 9,
                target: 1,
                version: state.map.version + 1,
                rows: 12,
                paused_since_ms: 0,
            });
            ShardStatusView {
                id: info.id,
                address: info.address.clone(),
                slots: info.slots.clone(),
                healthy: true,
                segments: Some(segments),
                bookings: Some(0),
                moving,
            }
        })
        .collect();
    ClusterStatus {
        slots_total: SLOT_COUNT,
        map_version: state.map.version,
        shards,
    }
}

/// Returns the response to one request line, or `None` to close the
/// connection.
fn answer(state: &Shared, request: &Value) -> Option<Result<Value, Error>> {
    let mut state = state.lock().unwrap();
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    match request["method"].as_str() {
        Some("cluster.status") => Some(Ok(json!(status(&mut state)))),
        Some("admin.move_slots") => {
            let params: MoveSlotsParams = serde_json::from_value(params).unwrap();
            move_slots(&mut state, &params)
        }
        Some("admin.add_shard") => {
            let params: AddShardParams = serde_json::from_value(params).unwrap();
            Some(add_shard(&mut state, &params))
        }
        other => panic!("unexpected method {other:?}"),
    }
}

fn unauthorized(token: &trecho_common::protocol::methods::AdminToken) -> Option<Error> {
    (!token.matches(TOKEN)).then(|| Error::Unauthorized {
        message: "the admin token does not match the router's".into(),
    })
}

fn move_slots(state: &mut State, params: &MoveSlotsParams) -> Option<Result<Value, Error>> {
    if let Some(error) = unauthorized(&params.token) {
        return Some(Err(error));
    }
    let fault = state.faults.pop_front();
    if let Some(response) = fault.and_then(|fault| scripted_response(state, fault, params)) {
        return Some(response);
    }
    let result = apply_move(state, params);
    if matches!(fault, Some(Fault::LoseResponse)) {
        return None;
    }
    Some(Ok(json!(result)))
}

/// Returns the response a fault sends in place of moving, or `None` for a
/// fault that moves the slots.
fn scripted_response(
    state: &State,
    fault: Fault,
    params: &MoveSlotsParams,
) -> Option<Result<Value, Error>> {
    let error = match fault {
        Fault::Unavailable => Error::ShardUnavailable {
            shard: 0,
            retry_after_ms: 10,
        },
        Fault::MapChanged => Error::MapChanged { slot: 0, shard: 0 },
        Fault::Invalid => Error::invalid_params("slots 5-9 do not belong to one shard"),
        Fault::Pretend => {
            let result = MoveSlotsResult {
                from: state.map.owner_of_slot(params.first).id,
                to: params.to,
                map_version: state.map.version,
                rows: 0,
                pause_ms: 0,
            };
            return Some(Ok(json!(result)));
        }
        Fault::LoseResponse => return None,
    };
    Some(Err(error))
}

/// Gives the slots to the target, checking that one shard owned them all
/// and that it is not the target.
fn apply_move(state: &mut State, params: &MoveSlotsParams) -> MoveSlotsResult {
    let from = state.map.owner_of_slot(params.first).id;
    for slot in params.first..=params.last {
        let owner = state.map.owner_of_slot(slot).id;
        assert_eq!(owner, from, "slot {slot} of {params:?} has another owner");
    }
    assert_ne!(from, params.to, "a move to the shard that owns {params:?}");

    let address = state.map.shard(params.to).unwrap().address.clone();
    let version = state.map.version + 1;
    state
        .map
        .assign(params.first, params.last, params.to, &address, version)
        .unwrap();
    state
        .moves
        .push((params.first, params.last, from, params.to));

    let rows = (params.first..=params.last)
        .map(|s| state.segments[usize::from(s)])
        .sum();
    MoveSlotsResult {
        from,
        to: params.to,
        map_version: version,
        rows,
        pause_ms: 7,
    }
}

fn add_shard(state: &mut State, params: &AddShardParams) -> Result<Value, Error> {
    if let Some(error) = unauthorized(&params.token) {
        return Err(error);
    }
    let id = state.map.shards.len() as u32;
    let mut shards = state.map.shards.clone();
    shards.push(trecho_common::shardmap::ShardInfo {
        id,
        address: params.address.clone(),
        slots: Vec::new(),
    });
    state.map = ShardMap::new(state.map.version, shards).unwrap();
    Ok(json!(AddShardResult {
        id,
        slots: Vec::new()
    }))
}

async fn serve_connection(stream: TcpStream, state: Shared) {
    let (read_half, mut write_half) = stream.into_split();
    let mut lines = BufReader::new(read_half).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let request: Value = serde_json::from_str(&line).unwrap();
        let Some(outcome) = answer(&state, &request) else {
            return;
        };
        let response = match outcome {
            Ok(result) => json!({"jsonrpc": "2.0", "id": request["id"], "result": result}),
            Err(error) => json!({"jsonrpc": "2.0", "id": request["id"], "error": error.to_json()}),
        };
        let mut bytes = serde_json::to_vec(&response).unwrap();
        bytes.push(b'\n');
        if write_half.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Starts the router and returns its address.
async fn start_router(state: Shared) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, state.clone()));
        }
    });
    address
}

/// Runs `trecho admin ARGS --router ROUTER` with the admin token in the
/// environment, unless `token` is `None`.
async fn trecho(router: &str, args: &[&str], token: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_trecho"));
    command.arg("admin").args(args).args(["--router", router]);
    command.env_remove("TRECHO_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("TRECHO_ADMIN_TOKEN", token);
    }
    command.kill_on_drop(true);
    tokio::time::timeout(LIMIT, command.output())
        .await
        .expect("the command ends in time")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn segments_of(state: &State, id: u32) -> u64 {
    let shard = state.map.shard(id).unwrap();
    shard
        .slots
        .iter()
        .flat_map(|&[a, b]| a..=b)
        .map(|s| state.segments[usize::from(s)])
        .sum()
}

#[tokio::test]
async fn move_slots_skips_owned_slots_in_batches() {
    let shared = state(2);
    let router = start_router(shared.clone()).await;
    let args = ["move-slots", "8000-8700", "--to", "1", "--batch", "100"];
    let output = trecho(&router, &args, Some(TOKEN)).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("done: 2 moves, 192 slots"), "{stdout}");
    let state = shared.lock().unwrap();
    assert_eq!(state.moves, [(8000, 8099, 0, 1), (8100, 8191, 0, 1)]);
    assert_eq!(state.map.shard(0).unwrap().slots, [[0, 7999]]);
}

#[tokio::test]
async fn add_shard_survives_retryable_errors() {
    let shared = state(3);
    shared.lock().unwrap().faults =
        VecDeque::from([Fault::Unavailable, Fault::LoseResponse, Fault::MapChanged]);
    let router = start_router(shared.clone()).await;
    let output = trecho(&router, &["add-shard", "10.0.0.9:7001"], Some(TOKEN)).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("retry 1 of 7"), "{stderr}");
    assert!(stderr.contains("retry 3 of 7"), "{stderr}");
    assert!(text(&output.stdout).contains("added shard 3 at 10.0.0.9:7001"));
    let state = shared.lock().unwrap();
    for &(first, last, _, to) in &state.moves {
        assert!(last - first < 256, "{first}-{last}");
        assert_eq!(to, 3);
    }
    // The move whose reply was lost is not sent again.
    let mut ranges: Vec<(u16, u16)> = state.moves.iter().map(|m| (m.0, m.1)).collect();
    ranges.sort_unstable();
    ranges.dedup();
    assert_eq!(ranges.len(), state.moves.len());
    let total: u64 = state.segments.iter().sum();
    let quarter = total as f64 / 4.0;
    for id in 0..4 {
        let segments = segments_of(&state, id) as f64;
        assert!(
            (segments - quarter).abs() < quarter * 0.05,
            "shard {id}: {segments}"
        );
    }
}

#[tokio::test]
async fn add_shard_twice_rebalances_without_adding() {
    let shared = state(2);
    let router = start_router(shared.clone()).await;
    let first = trecho(&router, &["add-shard", "10.0.0.9:7001"], Some(TOKEN)).await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    let moves = shared.lock().unwrap().moves.len();
    let again = trecho(&router, &["add-shard", "10.0.0.9:7001"], Some(TOKEN)).await;
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(stdout.contains("in the shard map already"), "{stdout}");
    assert!(stdout.contains("nothing to move"), "{stdout}");
    let state = shared.lock().unwrap();
    assert_eq!(state.map.shards.len(), 3);
    assert_eq!(state.moves.len(), moves);
}

#[tokio::test]
async fn remove_shard_empties_it() {
    let shared = state(4);
    let router = start_router(shared.clone()).await;
    let output = trecho(&router, &["remove-shard", "2"], Some(TOKEN)).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("shard 2 owns no slots now and can be stopped"),
        "{stdout}"
    );
    let state = shared.lock().unwrap();
    assert!(state.map.shard(2).unwrap().slots.is_empty());
    assert!(state.moves.iter().all(|m| m.2 == 2 && m.3 != 2));
}

#[tokio::test]
async fn remove_last_shard_is_rejected() {
    let shared = state(1);
    let router = start_router(shared.clone()).await;
    let output = trecho(&router, &["remove-shard", "0"], Some(TOKEN)).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("only shard that owns slots"), "{stderr}");
    assert!(shared.lock().unwrap().moves.is_empty());
}

#[tokio::test]
async fn wrong_token_says_how_to_pass_one() {
    let shared = state(2);
    let router = start_router(shared.clone()).await;
    let args = ["move-slots", "0-9", "--to", "1"];
    let output = trecho(&router, &args, Some("wrong-secret")).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--token"), "{stderr}");
    assert!(stderr.contains("TRECHO_ADMIN_TOKEN"), "{stderr}");
    assert!(stderr.contains("kind unauthorized, code 1012"), "{stderr}");
    assert!(!stderr.contains("wrong-secret"), "{stderr}");
    assert!(shared.lock().unwrap().moves.is_empty());
}

#[tokio::test]
async fn missing_token_fails_before_any_call() {
    let shared = state(2);
    let router = start_router(shared.clone()).await;
    let output = trecho(&router, &["rebalance"], None).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("missing admin token"), "{stderr}");
    assert_eq!(shared.lock().unwrap().status_reads, 0);
}

#[tokio::test]
async fn dry_run_prints_plan_and_moves_nothing() {
    let shared = state(3);
    // Shard 0 gets half the slots of shard 1, so the cluster is uneven.
    shared
        .lock()
        .unwrap()
        .map
        .assign(2731, 5460, 1, "10.0.0.2:7001", 2)
        .unwrap();
    let router = start_router(shared.clone()).await;
    let output = trecho(&router, &["rebalance", "--dry-run"], None).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.starts_with("plan: move "), "{stdout}");
    assert!(stdout.contains("dry run: nothing moved"), "{stdout}");
    assert!(shared.lock().unwrap().moves.is_empty());
}

#[tokio::test]
async fn other_errors_stop_with_next_step() {
    let shared = state(2);
    shared.lock().unwrap().faults = VecDeque::from([Fault::Invalid]);
    let router = start_router(shared.clone()).await;
    let args = ["move-slots", "0-9", "--to", "1"];
    let output = trecho(&router, &args, Some(TOKEN)).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("do not belong to one shard"), "{stderr}");
    assert!(stderr.contains("run the same command again"), "{stderr}");
}

#[tokio::test]
async fn move_in_progress_is_waited_for() {
    let shared = state(2);
    shared.lock().unwrap().busy_reads = 2;
    let router = start_router(shared.clone()).await;
    let args = ["move-slots", "0-9", "--to", "1"];
    let output = trecho(&router, &args, Some(TOKEN)).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("waiting for shard 0, moving slots 0-9 to shard 1, 12 rows, copying"),
        "{stderr}"
    );
    let state = shared.lock().unwrap();
    assert_eq!(state.moves, [(0, 9, 0, 1)]);
    assert!(state.status_reads >= 4, "{}", state.status_reads);
}

#[tokio::test]
async fn json_report_is_one_value() {
    let shared = state(2);
    let router = start_router(shared.clone()).await;
    let args = ["move-slots", "5", "--to", "1", "--json"];
    let output = trecho(&router, &args, Some(TOKEN)).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["plan"][0]["first"], 5);
    assert_eq!(report["plan"][0]["to"], 1);
    assert_eq!(report["summary"]["moves"], 1);
    assert_eq!(report["summary"]["max_pause_ms"], 7);
}

#[tokio::test]
async fn stale_status_stops_the_run() {
    let shared = state(2);
    shared.lock().unwrap().faults = VecDeque::from([Fault::Pretend; 4]);
    let router = start_router(shared.clone()).await;
    let args = ["move-slots", "0-9", "--to", "1"];
    let output = trecho(&router, &args, Some(TOKEN)).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cluster.status still shows"), "{stderr}");
    let state = shared.lock().unwrap();
    assert!(state.moves.is_empty());
    assert_eq!(state.faults.len(), 3, "the move was sent once");
}
