//! One client connection: framing, pipelining, batches and back-pressure.
//!
//! A single task serves the connection. It reads every request already
//! available, starts each one in the order read (queuing its first shard
//! messages), collects whatever requests have finished into one reused
//! output buffer, and writes that buffer without waiting. Reads and writes
//! never block each other, so a client that sends without reading still
//! gets its responses written as fast as it takes them.
//!
//! Limits: at most `max_in_flight` requests in progress, and at most
//! [`OUTPUT_HIGH_WATER`] bytes of unwritten responses. Past either, the task
//! stops reading requests (and, for output, stops collecting results) until
//! the client catches up, so memory per connection stays bounded.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::join_all;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tracing::instrument::Instrumented;
use tracing::Instrument;
use trecho_common::error::Error;
use trecho_common::link::TryReader;
use trecho_common::protocol::envelope::{parse_message, Message, RequestEnvelope};
use trecho_common::protocol::{Call, Frame, LineReader, RequestId};

use crate::cluster::Cluster;
use crate::dispatch::{dispatch, Dispatched, Pending};
use crate::response::{write_finished, write_line, Finished};

/// Unwritten response bytes past which the connection stops taking new
/// work until the client reads.
pub(crate) const OUTPUT_HIGH_WATER: usize = 1 << 20;

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest request line, in bytes.
    pub(crate) max_line: usize,
    /// Requests in progress at once; also the largest batch.
    pub(crate) max_in_flight: usize,
    /// A connection that sends nothing and has nothing in progress for
    /// this long is closed; `None` keeps idle connections open.
    pub(crate) idle_timeout: Option<Duration>,
}

/// Requests started and not finished.
enum Work {
    Single {
        id: Option<RequestId>,
        pending: Instrumented<Pending>,
    },
    Batch(Pin<Box<dyn Future<Output = Finished> + Send>>),
}

impl Future for Work {
    type Output = Finished;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Finished> {
        match self.get_mut() {
            Work::Single { id, pending } => {
                Pin::new(pending).poll(cx).map(|outcome| Finished::Single {
                    id: id.take(),
                    outcome,
                })
            }
            Work::Batch(batch) => batch.as_mut().poll(cx),
        }
    }
}

/// How a round of reading ended.
enum ReadEnd {
    /// The socket has no more bytes for now.
    Drained,
    /// A limit was reached; bytes may be waiting.
    Limited,
    /// End of stream or a read error.
    Closed,
}

/// Serves one client until it disconnects, or until shutdown and its
/// started requests are answered.
pub(crate) async fn serve(
    stream: TcpStream,
    cluster: Arc<Cluster>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let mut connection = Connection {
        cluster,
        limits,
        out: Vec::with_capacity(4096),
        written: 0,
        work: FuturesUnordered::new(),
        in_flight: 0,
    };
    connection.run(&stream, shutdown).await;
    connection.finish_detached();
}

struct Connection {
    cluster: Arc<Cluster>,
    limits: Limits,
    /// Responses not yet written; bytes before `written` are already sent.
    out: Vec<u8>,
    written: usize,
    work: FuturesUnordered<Work>,
    /// Requests in progress, counting each request of a batch.
    in_flight: usize,
}

/// Closes a connection that stays idle for a whole timeout: no byte read
/// and nothing in progress. It checks twice per timeout rather than
/// resetting a timer on every request, so an idle connection closes
/// between one and one and a half timeouts after its last request.
struct IdleCheck {
    ticks: Option<Interval>,
    /// Checks in a row that found the connection idle.
    idle_checks: u32,
    /// Bytes the connection had sent at the last check.
    bytes_seen: u64,
}

impl IdleCheck {
    fn new(timeout: Option<Duration>) -> Self {
        let ticks = timeout.map(|timeout| {
            let period = timeout / 2;
            let mut ticks = interval_at(Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        });
        IdleCheck {
            ticks,
            idle_checks: 0,
            bytes_seen: 0,
        }
    }

    /// Waits for the next check; never completes when there is no timeout.
    async fn tick(&mut self) {
        match &mut self.ticks {
            Some(ticks) => {
                ticks.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Records one check and returns whether the timeout has passed.
    /// `quiet` is true when nothing is in progress or waiting to be written.
    /// `bytes_read` counts what the client sent so far, part of a line
    /// included.
    fn timed_out(&mut self, quiet: bool, bytes_read: u64) -> bool {
        let sent = std::mem::replace(&mut self.bytes_seen, bytes_read) != bytes_read;
        self.idle_checks = if quiet && !sent {
            self.idle_checks + 1
        } else {
            0
        };
        self.idle_checks >= 2
    }
}

impl Connection {
    async fn run(&mut self, stream: &TcpStream, mut shutdown: watch::Receiver<bool>) {
        let mut reader = LineReader::new(TryReader::new(stream), self.limits.max_line);
        let mut input_open = !*shutdown.borrow_and_update();
        let mut drained = false;
        let mut idle = IdleCheck::new(self.limits.idle_timeout);
        loop {
            if input_open && !drained && self.has_room() {
                match self.read_requests(&mut reader).await {
                    ReadEnd::Drained => drained = true,
                    ReadEnd::Limited => {}
                    ReadEnd::Closed => input_open = false,
                }
            }
            self.collect_finished();
            if let Err(error) = self.flush(stream) {
                tracing::debug!(%error, "write failed, closing");
                return;
            }
            if !input_open && self.work.is_empty() && self.out.is_empty() {
                return;
            }
            if input_open && !drained && self.has_room() {
                // Reading stopped at a limit that the flush just lifted, and
                // the socket or the reader's buffer may still hold requests
                // that no readiness event will announce again.
                continue;
            }
            let read = input_open && drained && self.has_room();
            let collect = !self.work.is_empty() && self.has_output_room();
            let write = !self.out.is_empty();
            tokio::select! {
                finished = self.work.next(), if collect => {
                    if let Some(finished) = finished {
                        self.in_flight -= write_finished(&mut self.out, &finished);
                    }
                }
                ready = stream.readable(), if read => match ready {
                    Ok(()) => drained = false,
                    Err(_) => input_open = false,
                },
                ready = stream.writable(), if write => {
                    if ready.is_err() {
                        return;
                    }
                }
                _ = shutdown.changed(), if input_open => input_open = false,
                () = idle.tick(), if input_open => {
                    let quiet = self.in_flight == 0 && self.out.is_empty();
                    if idle.timed_out(quiet, reader.bytes_read()) {
                        tracing::debug!("connection idle past the idle timeout, closing");
                        return;
                    }
                }
            }
        }
    }

    fn has_output_room(&self) -> bool {
        self.out.len() - self.written < OUTPUT_HIGH_WATER
    }

    fn has_room(&self) -> bool {
        self.in_flight < self.limits.max_in_flight && self.has_output_room()
    }

    /// Starts every complete request the socket has, until it is drained or
    /// a limit is reached.
    async fn read_requests(&mut self, reader: &mut LineReader<TryReader<'_>>) -> ReadEnd {
        while self.has_room() {
            match reader.next_frame().await {
                Ok(Some(Frame::Line(line))) => self.handle_line(line),
                Ok(Some(Frame::TooLong)) => {
                    tracing::debug!(max_line = self.limits.max_line, "request line too long");
                    let error = line_too_long(self.limits.max_line);
                    write_line(&mut self.out, &RequestId::null(), &Err(error));
                }
                Ok(None) => return ReadEnd::Closed,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return ReadEnd::Drained,
                Err(error) => {
                    tracing::debug!(%error, "read failed, closing");
                    return ReadEnd::Closed;
                }
            }
        }
        ReadEnd::Limited
    }

    fn handle_line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match parse_message(line) {
            Err(error) => {
                tracing::debug!(%error, "unreadable request line");
                write_line(&mut self.out, &RequestId::null(), &Err(error));
            }
            Ok(Message::Single(entry)) => {
                let Started { id, span, started } = start(&self.cluster, entry);
                match started {
                    Dispatched::Ready(outcome) => {
                        if let Some(id) = &id {
                            write_line(&mut self.out, id, &outcome);
                        }
                    }
                    Dispatched::Pending(pending) => {
                        self.in_flight += 1;
                        let pending = pending.instrument(span);
                        self.work.push(Work::Single { id, pending });
                    }
                }
            }
            Ok(Message::Batch(entries)) => self.handle_batch(entries),
        }
    }

    fn handle_batch(&mut self, entries: Vec<Result<RequestEnvelope<'_>, (RequestId, Error)>>) {
        let max = self.limits.max_in_flight;
        if entries.len() > max {
            let error = Error::InvalidRequest {
                message: format!(
                    "a batch may hold at most {max} requests, this one has {}; split it",
                    entries.len()
                ),
            };
            write_line(&mut self.out, &RequestId::null(), &Err(error));
            return;
        }
        let started: Vec<Started> = entries
            .into_iter()
            .map(|entry| start(&self.cluster, entry))
            .collect();
        let in_flight = started
            .iter()
            .filter(|s| matches!(s.started, Dispatched::Pending(_)))
            .count();
        let batch = async move {
            let entries = join_all(started.into_iter().map(|entry| async move {
                let outcome = match entry.started {
                    Dispatched::Ready(outcome) => outcome,
                    Dispatched::Pending(pending) => pending.instrument(entry.span).await,
                };
                (entry.id, outcome)
            }))
            .await;
            Finished::Batch { entries, in_flight }
        };
        self.in_flight += in_flight;
        self.work.push(Work::Batch(Box::pin(batch)));
    }

    /// Moves every finished request's response into the output buffer.
    fn collect_finished(&mut self) {
        while self.has_output_room() {
            match self.work.next().now_or_never() {
                Some(Some(finished)) => self.in_flight -= write_finished(&mut self.out, &finished),
                _ => return,
            }
        }
    }

    /// Writes as much output as the socket takes without waiting.
    fn flush(&mut self, stream: &TcpStream) -> io::Result<()> {
        while self.written < self.out.len() {
            match stream.try_write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => self.written += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
            // Give back memory a burst of large responses took.
            if self.out.capacity() > OUTPUT_HIGH_WATER {
                self.out.shrink_to(64 * 1024);
            }
        } else if self.written >= OUTPUT_HIGH_WATER / 2 {
            self.out.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }

    /// Lets requests the client will never see the answer to run to the
    /// end, so that a booking in its two-phase commit still gets decided.
    fn finish_detached(&mut self) {
        if self.work.is_empty() {
            return;
        }
        let work = std::mem::take(&mut self.work);
        tokio::spawn(work.for_each(|_| async {}));
    }
}

/// A request after [`start`].
struct Started {
    /// The id to answer; `None` for a notification.
    id: Option<RequestId>,
    /// The request's span, with `request.id` and `method`.
    span: tracing::Span,
    started: Dispatched,
}

/// Parses one request and starts it.
fn start(
    cluster: &Arc<Cluster>,
    entry: Result<RequestEnvelope<'_>, (RequestId, Error)>,
) -> Started {
    let envelope = match entry {
        Ok(envelope) => envelope,
        Err((id, error)) => {
            tracing::debug!(request.id = id.as_json(), %error, "invalid request");
            return Started {
                id: Some(id),
                span: tracing::Span::none(),
                started: Dispatched::Ready(Err(error)),
            };
        }
    };
    let request_id = envelope.id.as_ref().map(RequestId::as_json);
    let span = tracing::debug_span!("request", request.id = request_id, method = %envelope.method);
    let started = span.in_scope(|| match Call::parse(&envelope.method, envelope.params) {
        Ok(call) => dispatch(cluster, call),
        Err(error) => {
            tracing::debug!(%error, "rejected request");
            Dispatched::Ready(Err(error))
        }
    });
    Started {
        id: envelope.id,
        span,
        started,
    }
}

fn line_too_long(max_line: usize) -> Error {
    Error::InvalidRequest {
        message: format!(
            "the line is longer than {max_line} bytes; send each request on one line of at \
             most {max_line} bytes"
        ),
    }
}
