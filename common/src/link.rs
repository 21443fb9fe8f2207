//! A persistent, pipelined connection to one shard, shared by every task
//! that talks to it.
//!
//! One task per link owns the socket and the table of requests in flight, so
//! the hot path takes no lock. [`ShardLink::send`] encodes a request and puts
//! it on the link's queue before it returns, so requests leave in the order
//! `send` was called. The task writes every queued request in one batch, and
//! it reads and writes without blocking on either, so a shard that answers a
//! burst while the link is still writing cannot deadlock the connection.
//!
//! Failure handling:
//! - A new connection carries requests only after the shard answers a `ping`
//!   within the request timeout, so a shard process that accepts connections
//!   but does not run (stopped or stuck) is not reported healthy.
//! - A request that gets no answer by its deadline fails with
//!   [`LinkError::Lost`], and the task drops the connection and reconnects
//!   with backoff. While disconnected, calls fail at once with
//!   [`LinkError::Unavailable`], so a dead shard costs a caller at most one
//!   deadline before calls fail fast.
//! - An idle link pings the shard once per request timeout, so a silent shard
//!   is noticed before a caller has to wait for it.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant, MissedTickBehavior};

use crate::internal::{ShardError, ShardOp, ShardReply};
use crate::protocol::framing::{Frame, LineReader};

/// Longest response line accepted from a shard; a longer one drops the
/// connection. An audit of a busy shard is the largest answer.
const MAX_RESPONSE_LINE: usize = 256 << 20;
/// Encoded requests buffered before the task stops taking more from the
/// queue until the socket accepts them.
const WRITE_BATCH: usize = 256 * 1024;
/// Id of the ping that opens every connection; requests start at 1.
const GREETING_ID: u64 = 0;

/// Link states, kept in an atomic so that callers can fail fast.
const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Why a call to a shard failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The request was never sent: the shard is unreachable, the queue is
    /// full, or the request waited in the queue past its deadline. Nothing
    /// changed.
    #[error("shard {shard} is unreachable")]
    Unavailable {
        /// The shard's id.
        shard: u32,
        /// Suggested wait before a retry.
        retry_after_ms: u64,
    },
    /// The request was sent but no answer came: the connection dropped, the
    /// deadline passed, or the answer could not be decoded. A write may or
    /// may not have happened.
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
    /// Time allowed for each request, from [`ShardLink::send`] to its answer.
    pub request_timeout: Duration,
    /// First wait after a failed connection attempt; doubles up to
    /// `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between connection attempts.
    pub max_backoff: Duration,
    /// Requests queued for the link task before callers get
    /// [`LinkError::Unavailable`].
    pub queue: usize,
    /// Version of the shard map the sender routes with, written into every
    /// request; shared by the sender's links and raised when its map
    /// changes.
    pub map_version: Arc<AtomicU64>,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(1),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            queue: 65_536,
            map_version: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// An answer as received: the `ok` or `err` member still encoded, so that
/// the caller's task, not the link task, pays for decoding it.
struct RawReply {
    ok: bool,
    body: Box<RawValue>,
}

impl RawReply {
    fn decode(self, shard: u32) -> Result<ShardReply, LinkError> {
        let undecodable = |error: serde_json::Error| {
            tracing::warn!(shard.id = shard, %error, "undecodable answer from shard");
            LinkError::Lost { shard }
        };
        if self.ok {
            return serde_json::from_str(self.body.get()).map_err(undecodable);
        }
        let refusal: ShardError = serde_json::from_str(self.body.get()).map_err(undecodable)?;
        Err(LinkError::Remote(refusal))
    }
}

type ReplySender = oneshot::Sender<Result<RawReply, LinkError>>;

struct Outgoing {
    /// The serialized [`ShardOp`].
    op: Vec<u8>,
    reply: ReplySender,
    /// When the caller stops waiting; set when the request is queued.
    deadline: Instant,
}

/// A cheap, cloneable handle to one shard's connection task.
#[derive(Clone)]
pub struct ShardLink {
    shard: u32,
    address: Arc<str>,
    queue: mpsc::Sender<Outgoing>,
    state: Arc<AtomicU8>,
    retry_after_ms: u64,
    request_timeout: Duration,
}

impl ShardLink {
    /// Starts the connection task for shard `shard` at `address`. The task
    /// stops when every handle is dropped. Must be called inside a Tokio
    /// runtime.
    pub fn spawn(shard: u32, address: String, options: LinkOptions) -> Self {
        let (queue, receiver) = mpsc::channel(options.queue.max(1));
        let state = Arc::new(AtomicU8::new(CONNECTING));
        let link = ShardLink {
            shard,
            address: address.as_str().into(),
            queue,
            state: state.clone(),
            retry_after_ms: options.max_backoff.as_millis() as u64,
            request_timeout: options.request_timeout,
        };
        let task = LinkTask {
            shard,
            address,
            options,
            receiver,
            state,
            next_id: GREETING_ID + 1,
            pending: FxHashMap::default(),
            deadlines: VecDeque::new(),
            last_heard: Instant::now(),
        };
        tokio::spawn(task.run());
        link
    }

    /// Returns the shard's id.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Returns the shard's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Returns whether the link is connected and the shard answered its
    /// greeting; it turns false when the shard stays silent for a request
    /// timeout while requests wait.
    pub fn is_healthy(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// Returns the wait suggested to clients after a failure of this link.
    pub fn retry_after_ms(&self) -> u64 {
        self.retry_after_ms
    }

    /// Sends `op` and waits for the answer.
    ///
    /// # Errors
    ///
    /// Returns [`LinkError::Unavailable`] when the request could not be
    /// sent, [`LinkError::Lost`] when it was sent but not answered in time,
    /// and [`LinkError::Remote`] for the shard's refusal.
    pub async fn call(&self, op: &ShardOp) -> Result<ShardReply, LinkError> {
        self.send(op).await
    }

    /// Queues `op` before returning, then returns a future of the answer.
    ///
    /// Requests queued by successive calls are written to the shard in call
    /// order, whether or not the futures are polled; dropping the future does
    /// not withdraw the request. Use this instead of [`ShardLink::call`] when
    /// the order of requests matters.
    ///
    /// # Errors
    ///
    /// The future resolves to the errors of [`ShardLink::call`].
    pub fn send(
        &self,
        op: &ShardOp,
    ) -> impl Future<Output = Result<ShardReply, LinkError>> + Send + 'static {
        let shard = self.shard;
        let queued = self.enqueue(op);
        async move {
            let answer = queued?.await.map_err(|_| LinkError::Lost { shard })??;
            answer.decode(shard)
        }
    }

    fn enqueue(
        &self,
        op: &ShardOp,
    ) -> Result<oneshot::Receiver<Result<RawReply, LinkError>>, LinkError> {
        if self.state.load(Ordering::Relaxed) == DOWN {
            return Err(self.unavailable());
        }
        let op = serde_json::to_vec(op).map_err(|_| self.unavailable())?;
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + self.request_timeout;
        self.queue
            .try_send(Outgoing {
                op,
                reply,
                deadline,
            })
            .map_err(|_| self.unavailable())?;
        Ok(answer)
    }

    fn unavailable(&self) -> LinkError {
        LinkError::Unavailable {
            shard: self.shard,
            retry_after_ms: self.retry_after_ms,
        }
    }
}

/// An [`AsyncRead`] over a borrowed [`TcpStream`] that never waits: when no
/// bytes are ready it returns an [`io::ErrorKind::WouldBlock`] error.
///
/// [`LineReader::next_frame`] over it completes without waiting. That makes
/// it safe next to other events: wait for [`TcpStream::readable`], which may
/// be abandoned at any time, then call `next_frame` until it returns
/// `WouldBlock`. Abandoning `next_frame` over a plain socket while it waits
/// for bytes would leave zero bytes in the reader's buffer.
pub struct TryReader<'a>(&'a TcpStream);

impl<'a> TryReader<'a> {
    /// Wraps `stream`.
    pub fn new(stream: &'a TcpStream) -> Self {
        TryReader(stream)
    }
}

impl AsyncRead for TryReader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = self.0.try_read(buf.initialize_unfilled());
        Poll::Ready(read.map(|count| buf.advance(count)))
    }
}

/// One read from a [`LineReader`] over a [`TryReader`].
enum Read<'a> {
    Line(&'a [u8]),
    /// No complete line is buffered and the socket has no more bytes.
    Drained,
    Closed(&'static str),
}

async fn read_line<'a>(reader: &'a mut LineReader<TryReader<'_>>) -> Read<'a> {
    match reader.next_frame().await {
        Ok(Some(Frame::Line(line))) => Read::Line(line),
        Ok(Some(Frame::TooLong)) => Read::Closed("oversized response"),
        Ok(None) => Read::Closed("closed by the shard"),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Read::Drained,
        Err(_) => Read::Closed("read failed"),
    }
}

/// Writes as much of `out[*written..]` as the socket takes without waiting.
fn write_available(stream: &TcpStream, out: &mut Vec<u8>, written: &mut usize) -> io::Result<()> {
    while *written < out.len() {
        match stream.try_write(&out[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => *written += count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) => return Err(error),
        }
    }
    if *written == out.len() {
        out.clear();
        *written = 0;
    } else if *written >= WRITE_BATCH {
        out.drain(..*written);
        *written = 0;
    }
    Ok(())
}

#[derive(Deserialize)]
struct ResponseLine<'a> {
    id: u64,
    #[serde(borrow)]
    ok: Option<&'a RawValue>,
    #[serde(borrow)]
    err: Option<&'a RawValue>,
}

/// How a connection ended.
enum SessionEnd {
    /// Every [`ShardLink`] handle is gone: the task stops.
    HandlesDropped,
    /// The connection failed; the task reconnects.
    Failed(&'static str),
}

struct LinkTask {
    shard: u32,
    address: String,
    options: LinkOptions,
    receiver: mpsc::Receiver<Outgoing>,
    state: Arc<AtomicU8>,
    next_id: u64,
    pending: FxHashMap<u64, ReplySender>,
    /// Request ids in the order sent, with their deadlines. Deadlines are
    /// set when requests are queued, so they rise along the queue and only
    /// the front needs checking; answered ids are skipped lazily.
    deadlines: VecDeque<(u64, Instant)>,
    last_heard: Instant,
}

impl LinkTask {
    async fn run(mut self) {
        let mut backoff = self.options.min_backoff;
        loop {
            if self.receiver.is_closed() {
                return;
            }
            let stream = match self.connect().await {
                Ok(stream) => stream,
                Err(error) => {
                    self.connection_failed(&error.to_string(), &mut backoff)
                        .await;
                    continue;
                }
            };
            let mut reader = LineReader::new(TryReader::new(&stream), MAX_RESPONSE_LINE);
            if let Err(reason) = self.greet(&stream, &mut reader).await {
                self.connection_failed(reason, &mut backoff).await;
                continue;
            }
            backoff = self.options.min_backoff;
            self.state.store(UP, Ordering::Relaxed);
            tracing::info!(shard.id = self.shard, address = %self.address, "shard connected");
            let end = self.serve(&stream, &mut reader).await;
            self.state.store(DOWN, Ordering::Relaxed);
            self.fail_pending();
            match end {
                SessionEnd::HandlesDropped => return,
                SessionEnd::Failed(reason) => tracing::warn!(
                    shard.id = self.shard, address = %self.address, error = reason,
                    "shard connection lost, reconnecting"
                ),
            }
        }
    }

    async fn connect(&self) -> io::Result<TcpStream> {
        let attempt = TcpStream::connect(&self.address);
        let stream = timeout(self.options.connect_timeout, attempt)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Marks the link down, logs the first failure of a run of them, and
    /// fails queued requests during the backoff.
    async fn connection_failed(&mut self, reason: &str, backoff: &mut Duration) {
        if self.state.swap(DOWN, Ordering::Relaxed) == DOWN {
            tracing::debug!(
                shard.id = self.shard,
                error = reason,
                "shard still unreachable"
            );
        } else {
            tracing::warn!(
                shard.id = self.shard, address = %self.address, error = reason,
                "shard unreachable, retrying with backoff"
            );
        }
        self.reject_queued_for(*backoff).await;
        *backoff = (*backoff * 2).min(self.options.max_backoff);
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

    /// Sends a ping and waits for its answer, so that only a shard that
    /// runs is reported healthy.
    async fn greet(
        &mut self,
        stream: &TcpStream,
        reader: &mut LineReader<TryReader<'_>>,
    ) -> Result<(), &'static str> {
        let exchange = async {
            let mut out =
                format!("{{\"id\":{GREETING_ID},\"op\":{{\"type\":\"ping\"}}}}\n").into_bytes();
            let mut written = 0;
            while !out.is_empty() {
                stream.writable().await.map_err(|_| "write failed")?;
                write_available(stream, &mut out, &mut written).map_err(|_| "write failed")?;
            }
            loop {
                stream.readable().await.map_err(|_| "read failed")?;
                loop {
                    match read_line(reader).await {
                        Read::Line(line) if is_greeting_answer(line) => return Ok(()),
                        Read::Line(_) => {}
                        Read::Drained => break,
                        Read::Closed(reason) => return Err(reason),
                    }
                }
            }
        };
        timeout(self.options.request_timeout, exchange)
            .await
            .map_err(|_| "no answer to ping")?
    }

    /// Runs one connection until it fails or every handle is gone.
    async fn serve(
        &mut self,
        stream: &TcpStream,
        reader: &mut LineReader<TryReader<'_>>,
    ) -> SessionEnd {
        let mut out = Vec::with_capacity(64 * 1024);
        let mut written = 0;
        let mut drained = false;
        let mut tick = tokio::time::interval(self.options.request_timeout / 4);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.last_heard = Instant::now();
        loop {
            if !drained {
                if let Err(reason) = self.read_available(reader).await {
                    return SessionEnd::Failed(reason);
                }
                drained = true;
            }
            // A busy shard that still answers keeps its connection and
            // only the late requests fail. A shard silent for a whole
            // request timeout while requests wait is taken as gone.
            let expired = self.expire_overdue();
            if expired && self.last_heard.elapsed() >= self.options.request_timeout {
                return SessionEnd::Failed("request timed out");
            }
            if !self.take_queued(&mut out, written) {
                return SessionEnd::HandlesDropped;
            }
            if written == 0 && !out.is_empty() && out.len() < WRITE_BATCH {
                // Let the tasks that are ready queue their requests too, so
                // that one write carries them all: on loopback each write
                // costs the shard a wakeup.
                tokio::task::yield_now().await;
                if !self.take_queued(&mut out, written) {
                    return SessionEnd::HandlesDropped;
                }
            }
            if write_available(stream, &mut out, &mut written).is_err() {
                return SessionEnd::Failed("write failed");
            }
            let room = out.len() - written < WRITE_BATCH;
            tokio::select! {
                ready = stream.readable() => match ready {
                    Ok(()) => drained = false,
                    Err(_) => return SessionEnd::Failed("read failed"),
                },
                next = self.receiver.recv(), if room => match next {
                    Some(outgoing) => self.encode(outgoing, &mut out),
                    None => return SessionEnd::HandlesDropped,
                },
                ready = stream.writable(), if written < out.len() => {
                    if ready.is_err() {
                        return SessionEnd::Failed("write failed");
                    }
                }
                _ = tick.tick() => self.ping_if_idle(&mut out),
            }
        }
    }

    /// Handles every response already readable.
    async fn read_available(
        &mut self,
        reader: &mut LineReader<TryReader<'_>>,
    ) -> Result<(), &'static str> {
        loop {
            match read_line(reader).await {
                Read::Line(line) => {
                    self.last_heard = Instant::now();
                    self.dispatch(line);
                }
                Read::Drained => return Ok(()),
                Read::Closed(reason) => return Err(reason),
            }
        }
    }

    /// Encodes queued requests until the write buffer is full; returns false
    /// when every handle is gone.
    fn take_queued(&mut self, out: &mut Vec<u8>, written: usize) -> bool {
        while out.len() - written < WRITE_BATCH {
            match self.receiver.try_recv() {
                Ok(outgoing) => self.encode(outgoing, out),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    fn encode(&mut self, outgoing: Outgoing, out: &mut Vec<u8>) {
        if outgoing.deadline <= Instant::now() {
            // Waited in the queue until its caller gave up: never sent.
            let _ = outgoing.reply.send(Err(LinkError::Unavailable {
                shard: self.shard,
                retry_after_ms: self.options.min_backoff.as_millis() as u64,
            }));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        // Writing to a Vec cannot fail.
        let version = self.options.map_version.load(Ordering::Relaxed);
        let _ = write!(out, "{{\"id\":{id},\"map_version\":{version},\"op\":");
        out.extend_from_slice(&outgoing.op);
        out.extend_from_slice(b"}\n");
        self.pending.insert(id, outgoing.reply);
        self.deadlines.push_back((id, outgoing.deadline));
    }

    /// Sends a ping when nothing was heard for a request timeout and nothing
    /// is in flight; a ping that is not answered in time drops the link.
    fn ping_if_idle(&mut self, out: &mut Vec<u8>) {
        let idle = self.last_heard.elapsed() >= self.options.request_timeout;
        if !self.pending.is_empty() || !idle {
            return;
        }
        let (reply, _) = oneshot::channel();
        let ping = Outgoing {
            op: br#"{"type":"ping"}"#.to_vec(),
            reply,
            deadline: Instant::now() + self.options.request_timeout,
        };
        self.encode(ping, out);
    }

    fn dispatch(&mut self, line: &[u8]) {
        let response = std::str::from_utf8(line)
            .ok()
            .and_then(|text| serde_json::from_str::<ResponseLine<'_>>(text).ok());
        let Some(response) = response else {
            tracing::warn!(shard.id = self.shard, "unreadable response from shard");
            return;
        };
        let Some(reply) = self.pending.remove(&response.id) else {
            return;
        };
        let raw = match (response.ok, response.err) {
            (Some(ok), _) => Ok(RawReply {
                ok: true,
                body: ok.to_owned(),
            }),
            (None, Some(err)) => Ok(RawReply {
                ok: false,
                body: err.to_owned(),
            }),
            (None, None) => Err(LinkError::Lost { shard: self.shard }),
        };
        let _ = reply.send(raw);
    }

    /// Fails every request in flight past its deadline with
    /// [`LinkError::Lost`]; returns whether there was one. A late answer to
    /// such a request is dropped when it arrives.
    fn expire_overdue(&mut self) -> bool {
        let now = Instant::now();
        let mut expired = false;
        while let Some(&(id, deadline)) = self.deadlines.front() {
            if self.pending.contains_key(&id) && deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(reply) = self.pending.remove(&id) {
                let _ = reply.send(Err(LinkError::Lost { shard: self.shard }));
                expired = true;
            }
        }
        expired
    }

    fn fail_pending(&mut self) {
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(LinkError::Lost { shard: self.shard }));
        }
        self.deadlines.clear();
    }
}

fn is_greeting_answer(line: &[u8]) -> bool {
    let response = std::str::from_utf8(line)
        .ok()
        .and_then(|text| serde_json::from_str::<ResponseLine<'_>>(text).ok());
    matches!(response, Some(r) if r.id == GREETING_ID && r.ok.is_some())
}

#[cfg(test)]
mod tests;
