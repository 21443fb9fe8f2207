//! A persistent, pipelined connection to one shard, shared by every task
//! that talks to it.
//!
//! One task per link owns the socket and the table of requests in flight, so
//! the hot path takes no lock: callers hand a request and a reply channel to
//! the task through a queue, and the task writes every queued request in one
//! batch. A request that gets no answer by its deadline fails, and the task
//! then drops the connection and reconnects with backoff, so a partitioned
//! shard costs callers at most one deadline before they fail fast.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};

use crate::internal::{ShardError, ShardOp, ShardReply};
use crate::protocol::framing::{Frame, LineReader};

/// Why a call to a shard failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The request was never sent: the shard is unreachable or the queue is
    /// full. Nothing changed.
    #[error("shard {shard} is unreachable")]
    Unavailable {
        /// The shard's id.
        shard: u32,
        /// Suggested wait before a retry.
        retry_after_ms: u64,
    },
    /// The request was sent but no answer came: the connection dropped or
    /// the deadline passed. A write may or may not have happened.
    #[error("shard {shard} did not answer")]
    Lost {
        /// The shard's id.
        shard: u32,
    },
    /// The shard answered with a refusal.
    #[error(transparent)]
    Remote(#[from] ShardError),
}

/// Timeouts and limits of a link.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Time allowed for a connection attempt.
    pub connect_timeout: Duration,
    /// Time allowed for each request's answer.
    pub request_timeout: Duration,
    /// First wait after a failed connection attempt; doubles up to
    /// `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between connection attempts.
    pub max_backoff: Duration,
    /// Requests queued for the link task before callers get
    /// [`LinkError::Unavailable`].
    pub queue: usize,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(1),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            queue: 65_536,
        }
    }
}

type ReplySender = oneshot::Sender<Result<Box<RawValue>, LinkError>>;

struct Outgoing {
    /// The serialized [`ShardOp`].
    op: Vec<u8>,
    reply: ReplySender,
}

/// A cheap, cloneable handle to one shard's connection task.
#[derive(Clone)]
pub struct ShardLink {
    shard: u32,
    address: Arc<str>,
    queue: mpsc::Sender<Outgoing>,
    healthy: Arc<AtomicBool>,
    retry_after_ms: u64,
}

impl ShardLink {
    /// Starts the connection task for shard `shard` at `address`. The task
    /// stops when every handle is dropped.
    pub fn spawn(shard: u32, address: String, options: LinkOptions) -> Self {
        let (queue, receiver) = mpsc::channel(options.queue);
        let healthy = Arc::new(AtomicBool::new(false));
        let retry_after_ms = options.max_backoff.as_millis() as u64;
        let task = LinkTask {
            shard,
            address: address.clone(),
            options,
            receiver,
            healthy: healthy.clone(),
            next_id: 1,
            pending: FxHashMap::default(),
        };
        tokio::spawn(task.run());
        ShardLink {
            shard,
            address: address.into(),
            queue,
            healthy,
            retry_after_ms,
        }
    }

    /// Returns the shard's id.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Returns the shard's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Returns whether the link is connected and its last request did not
    /// time out.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sends `op` and waits for the answer.
    ///
    /// # Errors
    ///
    /// Returns [`LinkError::Unavailable`] when the request could not be
    /// sent, [`LinkError::Lost`] when it was sent but not answered in time,
    /// and [`LinkError::Remote`] for the shard's refusal.
    pub async fn call(&self, op: &ShardOp) -> Result<ShardReply, LinkError> {
        let body = serde_json::to_vec(op).map_err(|_| self.unavailable())?;
        let raw = self.call_raw(body).await?;
        parse_reply(&raw).ok_or(LinkError::Lost { shard: self.shard })?
    }

    async fn call_raw(&self, op: Vec<u8>) -> Result<Box<RawValue>, LinkError> {
        if !self.is_healthy() {
            return Err(self.unavailable());
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Outgoing { op, reply })
            .map_err(|_| self.unavailable())?;
        answer
            .await
            .map_err(|_| LinkError::Lost { shard: self.shard })?
    }

    fn unavailable(&self) -> LinkError {
        LinkError::Unavailable {
            shard: self.shard,
            retry_after_ms: self.retry_after_ms,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReplyBody {
    Ok(ShardReply),
    Err(ShardError),
}

fn parse_reply(raw: &RawValue) -> Option<Result<ShardReply, LinkError>> {
    match serde_json::from_str::<ReplyBody>(raw.get()).ok()? {
        ReplyBody::Ok(reply) => Some(Ok(reply)),
        ReplyBody::Err(error) => Some(Err(LinkError::Remote(error))),
    }
}

#[derive(Deserialize)]
struct ResponseLine<'a> {
    id: u64,
    #[serde(borrow)]
    ok: Option<&'a RawValue>,
    #[serde(borrow)]
    err: Option<&'a RawValue>,
}

struct LinkTask {
    shard: u32,
    address: String,
    options: LinkOptions,
    receiver: mpsc::Receiver<Outgoing>,
    healthy: Arc<AtomicBool>,
    next_id: u64,
    pending: FxHashMap<u64, (ReplySender, Instant)>,
}

impl LinkTask {
    async fn run(mut self) {
        let mut backoff = self.options.min_backoff;
        let mut was_connected = true;
        loop {
            if self.receiver.is_closed() && self.receiver.is_empty() {
                return;
            }
            match self.connect().await {
                Ok(stream) => {
                    backoff = self.options.min_backoff;
                    was_connected = true;
                    tracing::info!(shard.id = self.shard, address = %self.address, "shard connected");
                    self.healthy.store(true, Ordering::Relaxed);
                    let reason = self.serve(stream).await;
                    self.healthy.store(false, Ordering::Relaxed);
                    self.fail_pending();
                    match reason {
                        Ok(()) => return,
                        Err(reason) => tracing::warn!(
                            shard.id = self.shard, address = %self.address, reason,
                            "shard connection lost"
                        ),
                    }
                }
                Err(error) => {
                    if was_connected {
                        tracing::warn!(
                            shard.id = self.shard, address = %self.address, %error,
                            "shard unreachable, retrying with backoff"
                        );
                    }
                    was_connected = false;
                    self.reject_queued_for(backoff).await;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let attempt = TcpStream::connect(&self.address);
        let stream = timeout(self.options.connect_timeout, attempt)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Answers every request queued while disconnected with `Unavailable`,
    /// for `wait`.
    async fn reject_queued_for(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        while let Ok(Some(outgoing)) = tokio::time::timeout_at(until, self.receiver.recv()).await {
            let _ = outgoing.reply.send(Err(LinkError::Unavailable {
                shard: self.shard,
                retry_after_ms: wait.as_millis() as u64,
            }));
        }
    }

    /// Runs one connection until it fails (`Err` with the reason) or every
    /// handle is gone (`Ok`).
    async fn serve(&mut self, stream: TcpStream) -> Result<(), &'static str> {
        let (read_half, mut write_half) = stream.into_split();
        let mut lines = LineReader::new(BufReader::new(read_half), usize::MAX / 2);
        let mut out = Vec::with_capacity(64 * 1024);
        let mut tick = tokio::time::interval(self.options.request_timeout / 4);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                biased;
                frame = lines.next_frame() => {
                    match frame {
                        Ok(Some(Frame::Line(line))) => {
                            last_heard = Instant::now();
                            self.dispatch(line);
                        }
                        Ok(Some(Frame::TooLong)) => return Err("oversized response"),
                        Ok(None) => return Err("closed by the shard"),
                        Err(_) => return Err("read failed"),
                    }
                }
                first = self.receiver.recv() => {
                    let Some(first) = first else { return Ok(()) };
                    out.clear();
                    self.encode(first, &mut out);
                    while out.len() < 256 * 1024 {
                        let Ok(next) = self.receiver.try_recv() else { break };
                        self.encode(next, &mut out);
                    }
                    if write_half.write_all(&out).await.is_err() {
                        return Err("write failed");
                    }
                }
                _ = tick.tick() => {
                    if self.expire_overdue() {
                        return Err("request timed out");
                    }
                    // An idle link sends a ping so a silent shard is noticed
                    // before a client's request has to wait for it.
                    if self.pending.is_empty() && last_heard.elapsed() > self.options.request_timeout {
                        let (reply, _) = oneshot::channel();
                        out.clear();
                        self.encode(Outgoing { op: br#"{"type":"ping"}"#.to_vec(), reply }, &mut out);
                        if write_half.write_all(&out).await.is_err() {
                            return Err("write failed");
                        }
                    }
                }
            }
        }
    }

    fn encode(&mut self, outgoing: Outgoing, out: &mut Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        out.extend_from_slice(b"{\"id\":");
        out.extend_from_slice(id.to_string().as_bytes());
        out.extend_from_slice(b",\"op\":");
        out.extend_from_slice(&outgoing.op);
        out.extend_from_slice(b"}\n");
        let deadline = Instant::now() + self.options.request_timeout;
        self.pending.insert(id, (outgoing.reply, deadline));
    }

    fn dispatch(&mut self, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        let Ok(response) = serde_json::from_str::<ResponseLine<'_>>(text) else {
            tracing::warn!(shard.id = self.shard, "unreadable response from shard");
            return;
        };
        let Some((reply, _)) = self.pending.remove(&response.id) else {
            return;
        };
        let body = match (response.ok, response.err) {
            (Some(ok), _) => format!("{{\"ok\":{}}}", ok.get()),
            (None, Some(err)) => format!("{{\"err\":{}}}", err.get()),
            (None, None) => return,
        };
        let raw = RawValue::from_string(body).map_err(|_| LinkError::Lost { shard: self.shard });
        let _ = reply.send(raw);
    }

    /// Fails requests past their deadline; returns whether any was.
    fn expire_overdue(&mut self) -> bool {
        let now = Instant::now();
        let overdue: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in &overdue {
            if let Some((reply, _)) = self.pending.remove(id) {
                let _ = reply.send(Err(LinkError::Lost { shard: self.shard }));
            }
        }
        !overdue.is_empty()
    }

    fn fail_pending(&mut self) {
        for (_, (reply, _)) in self.pending.drain() {
            let _ = reply.send(Err(LinkError::Lost { shard: self.shard }));
        }
    }
}
