//! Starting a router in front of fake shards, and a line-oriented client.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use trecho_common::hashing::{slot, SLOT_COUNT};
use trecho_router::RouterConfig;

use crate::fake_shard::FakeShard;

/// Longest wait for any single response in these tests.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A router running inside the test's runtime.
pub struct Router {
    pub address: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), trecho_router::Error>>,
}

impl Router {
    /// Stops the router and checks that `run` returned without error.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = timeout(Duration::from_secs(10), &mut self.task).await;
        result
            .expect("run returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

/// Returns the inclusive slot range of shard `index` of `count`, split
/// evenly.
pub fn slot_range(index: usize, count: usize) -> (u16, u16) {
    let total = usize::from(SLOT_COUNT);
    let first = total * index / count;
    let last = total * (index + 1) / count - 1;
    (first as u16, last as u16)
}

/// Starts a router on 127.0.0.1:0 whose map splits the slots evenly over
/// `shards`, after `configure` adjusted its configuration.
pub async fn start_router(
    shards: &[&FakeShard],
    configure: impl FnOnce(&mut RouterConfig),
) -> Router {
    let spec: Vec<String> = shards
        .iter()
        .enumerate()
        .map(|(index, shard)| {
            let (first, last) = slot_range(index, shards.len());
            shard.state.lock().unwrap().slots = vec![[first, last]];
            format!("{}={}@{first}-{last}", shard.id, shard.address)
        })
        .collect();
    let mut config = RouterConfig {
        shards: Some(spec.join(";")),
        ..RouterConfig::default()
    };
    configure(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(trecho_router::run(listener, config, shutdown));
    Router {
        address,
        stop: Some(stop),
        task,
    }
}

/// Returns `count` segment ids dated 2030-01-01 whose slots belong to shard
/// `index` of `shards`.
pub fn segments_on(index: usize, shards: usize, count: usize) -> Vec<String> {
    let (first, last) = slot_range(index, shards);
    (0..)
        .map(|n| format!("TS{n}-2030-01-01"))
        .filter(|id| (first..=last).contains(&slot(id)))
        .take(count)
        .collect()
}

/// Builds one request line.
pub fn request(id: impl Into<Value>, method: &str, params: Value) -> String {
    let mut line =
        json!({"jsonrpc": "2.0", "id": id.into(), "method": method, "params": params}).to_string();
    line.push('\n');
    line
}

/// `bookings.create` params for one passenger.
pub fn booking_params(segments: &[String], seats: u32) -> Value {
    json!({
        "passenger": {"name": "Ana Souza", "document": "DOC-1"},
        "segments": segments,
        "seats": seats,
    })
}

/// A client speaking lines over one connection.
pub struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(address: &str) -> Client {
        let stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        Client {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    /// Reads one line, or `None` when the router closed the connection.
    pub async fn try_line(&mut self) -> Option<String> {
        let next = timeout(RESPONSE_TIMEOUT, self.lines.next_line()).await;
        next.expect("a response within the timeout").unwrap()
    }

    /// Reads one line as JSON.
    pub async fn json(&mut self) -> Value {
        let line = self.try_line().await.expect("a response line");
        serde_json::from_str(&line).unwrap()
    }

    /// Sends one request and reads one response.
    pub async fn call(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(request(id, method, params).as_bytes()).await;
        let response = self.json().await;
        assert_eq!(response["id"], id, "{response}");
        response
    }
}
