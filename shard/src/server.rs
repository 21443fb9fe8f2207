//! The internal protocol server: newline-delimited JSON, pipelined.
//!
//! Each connection has a reader task, which parses requests and queues them
//! for the owner task, and a writer task, which writes replies in batches
//! as the journal thread releases them. Replies carry the request id and
//! may come back in any order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use trecho_common::error::Error;
use trecho_common::internal::{InternalRequest, ShardError, ShardOp};
use trecho_common::protocol::framing::{Frame, LineReader};

use crate::batch::Batch;

/// Longest request line, in bytes. Most requests are a few hundred bytes;
/// the import of a move carries every row of its slots in one line. Only
/// routers and shards reach this listener.
const MAX_LINE: usize = 256 << 20;
/// Requests one connection may have waiting for replies before its reader
/// stops reading, so a client that does not read cannot grow our buffers.
const MAX_IN_FLIGHT: usize = 16_384;
/// Bytes of replies gathered into one socket write.
const WRITE_CHUNK: usize = 256 * 1024;

/// Reply bytes for one connection.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    /// Whole response lines.
    pub bytes: Vec<u8>,
    /// Number of lines in `bytes`.
    pub lines: usize,
}

/// Where a request's reply goes.
#[derive(Debug, Clone)]
pub(crate) struct ReplyTo {
    /// Connection id, unique in this process.
    pub conn: u64,
    /// The connection's writer task.
    pub sender: mpsc::UnboundedSender<Outbound>,
}

/// A parsed request on its way to the owner task.
pub(crate) struct Inbound {
    /// Where the reply goes.
    pub reply: ReplyTo,
    /// The sender's request id.
    pub id: u64,
    /// What to do.
    pub op: ShardOp,
}

/// Settings of the accept loop.
pub(crate) struct ServerOptions {
    pub shard_id: u32,
    pub max_connections: usize,
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Accepts connections until `stop` turns true, then closes them all.
pub(crate) async fn serve(
    listener: TcpListener,
    requests: mpsc::Sender<Inbound>,
    options: ServerOptions,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let mut connections = JoinSet::new();
    let mut refused: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(shard.id = options.shard_id, %error, "accept failed");
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    refused += 1;
                    if refused.is_power_of_two() {
                        tracing::warn!(shard.id = options.shard_id, refused, max = options.max_connections, "too many connections; closing new ones");
                    }
                    continue;
                };
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                let span = tracing::debug_span!("conn", shard.id = options.shard_id, conn.id = conn, peer.addr = %peer);
                let requests = requests.clone();
                let shard_id = options.shard_id;
                connections.spawn(
                    async move {
                        serve_connection(stream, conn, requests, shard_id).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(
    stream: TcpStream,
    conn: u64,
    requests: mpsc::Sender<Inbound>,
    shard_id: u32,
) {
    let _ = stream.set_nodelay(true);
    tracing::debug!("connection opened");
    let (read_half, write_half) = stream.into_split();
    let (sender, receiver) = mpsc::unbounded_channel();
    let credits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let writer = tokio::spawn(write_replies(write_half, receiver, credits.clone()));
    let reply = ReplyTo { conn, sender };
    let reader = Reader {
        reply,
        requests,
        credits,
        shard_id,
    };
    reader.run(read_half).await;
    // The writer ends once every reply in flight has been written.
    let _ = writer.await;
    tracing::debug!("connection closed");
}

/// The reading side of one connection.
struct Reader {
    reply: ReplyTo,
    requests: mpsc::Sender<Inbound>,
    /// One per request whose reply is not written yet.
    credits: Arc<Semaphore>,
    shard_id: u32,
}

impl Reader {
    async fn run(self, read_half: OwnedReadHalf) {
        let mut lines = LineReader::new(BufReader::new(read_half), MAX_LINE);
        loop {
            let frame = match lines.next_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(error) => {
                    tracing::debug!(%error, "read failed");
                    return;
                }
            };
            // Each request takes one credit, which the writer returns once
            // the reply is written.
            let Ok(credit) = self.credits.acquire().await else {
                return;
            };
            credit.forget();
            match frame {
                Frame::Line(line) => self.dispatch(line),
                Frame::TooLong => {
                    let message = format!("request line longer than {MAX_LINE} bytes");
                    refuse(&self.reply, 0, bad_request(message));
                }
            }
        }
    }

    /// Parses one request line and queues it, or answers at once when it
    /// is invalid or the owner's queue is full.
    fn dispatch(&self, line: &[u8]) {
        let request: InternalRequest = match serde_json::from_slice(line) {
            Ok(request) => request,
            Err(error) => {
                let id = request_id_of(line);
                tracing::debug!(request.id = id, %error, "invalid request");
                refuse(&self.reply, id, bad_request(error.to_string()));
                return;
            }
        };
        let id = request.id;
        let inbound = Inbound {
            reply: self.reply.clone(),
            id,
            op: request.op,
        };
        let error = match self.requests.try_send(inbound) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(request.id = id, "request queue full");
                Error::Overloaded {
                    message: format!("shard {} has too many requests queued", self.shard_id),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Error::ShardUnavailable {
                shard: self.shard_id,
                retry_after_ms: 1000,
            },
        };
        refuse(&self.reply, id, error.into());
    }
}

/// Returns the `id` of a request line that is otherwise invalid, or 0.
fn request_id_of(line: &[u8]) -> u64 {
    #[derive(Deserialize)]
    struct IdOnly {
        id: u64,
    }
    serde_json::from_slice::<IdOnly>(line).map_or(0, |request| request.id)
}

fn bad_request(message: String) -> ShardError {
    ShardError::BadRequest { message }
}

/// Answers a request directly, without the owner task: nothing changed,
/// so there is nothing to make durable first.
fn refuse(reply: &ReplyTo, id: u64, error: ShardError) {
    let mut batch = Batch::default();
    batch.push_reply(reply, id, Err(error));
    let out = Outbound {
        bytes: batch.replies,
        lines: 1,
    };
    let _ = reply.sender.send(out);
}

async fn write_replies(
    mut write_half: OwnedWriteHalf,
    mut receiver: mpsc::UnboundedReceiver<Outbound>,
    credits: Arc<Semaphore>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = receiver.recv().await {
        let mut lines = first.lines;
        buf.clear();
        buf.extend_from_slice(&first.bytes);
        while buf.len() < WRITE_CHUNK {
            let Ok(next) = receiver.try_recv() else { break };
            buf.extend_from_slice(&next.bytes);
            lines += next.lines;
        }
        if let Err(error) = write_half.write_all(&buf).await {
            tracing::debug!(%error, "write failed");
            credits.close();
            return;
        }
        credits.add_permits(lines);
    }
    let _ = write_half.shutdown().await;
}
