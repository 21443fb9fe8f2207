//! A pipelined JSON-RPC connection to the router, shared by many tasks.
//!
//! Every call gets a numeric id and a slot in the table of calls in flight.
//! A writer task sends queued request lines in batches, and a reader task
//! matches each response line to its call by id, so responses may arrive in
//! any order and many calls share one connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use trecho_common::protocol::framing::{Frame, LineReader};
use trecho_common::protocol::methods::{
    AddShardParams, AddShardResult, AdminToken, AirportsResult, BookParams, BookingRef,
    BookingsResult, ClusterStatus, DocumentRef, MoveSlotsParams, MoveSlotsResult, Pong,
    RoutesParams, RoutesResult, SearchParams, SearchResult, SegmentRef,
};
use trecho_common::types::{Booking, Segment};

use crate::error::{ClientError, ErrorObject, RpcError};

/// Request lines waiting for the writer task. Callers wait for room, so a
/// flood of calls slows down instead of growing memory.
const QUEUE_LINES: usize = 4096;
/// The writer stops adding lines to one write at about this many bytes.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Maximum length of a response line; a longer one closes the connection.
/// A `segments.search` result of 1000 segments is far below it.
const MAX_RESPONSE_LINE: usize = 64 << 20;

/// Timeouts of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time allowed to open the TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for each response; `None` waits as long as the
    /// connection stays open.
    pub request_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: None,
        }
    }
}

/// A connection to the trecho router.
///
/// Cloning is cheap, and clones share the one connection: calls from many
/// tasks are pipelined on it and each response is matched to its call by
/// id. A client does not reconnect. Once the connection is lost, every call
/// fails with [`ClientError::ConnectionLost`], and the caller connects
/// again.
///
/// # Examples
///
/// ```no_run
/// use trecho_client::{Client, SearchParams};
///
/// # async fn run() -> Result<(), trecho_client::ClientError> {
/// let client = Client::connect("127.0.0.1:7878").await?;
/// let found = client
///     .search(SearchParams {
///         origin: Some("GRU".into()),
///         destination: Some("SSA".into()),
///         date: None,
///         limit: Some(5),
///     })
///     .await?;
/// for segment in &found.segments {
///     println!("{} {} seats left", segment.id, segment.seats_left);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    next_id: AtomicU64,
    queue: mpsc::Sender<Vec<u8>>,
    calls: Arc<Calls>,
    request_timeout: Option<Duration>,
    reader: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer task ends when `queue` drops; the reader task would
        // wait for the router to close the connection.
        self.reader.abort();
    }
}

type Reply = Result<Box<RawValue>, ClientError>;

/// The calls waiting for a response, and why the connection closed once it
/// has.
struct Calls {
    addr: String,
    state: Mutex<CallTable>,
}

#[derive(Default)]
struct CallTable {
    waiting: FxHashMap<u64, oneshot::Sender<Reply>>,
    closed: Option<String>,
}

impl Calls {
    fn lock(&self) -> MutexGuard<'_, CallTable> {
        // A panic while holding the lock leaves the table consistent: every
        // change is a single insert or remove.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, id: u64) -> Result<oneshot::Receiver<Reply>, ClientError> {
        let mut table = self.lock();
        if let Some(reason) = &table.closed {
            return Err(self.lost(reason));
        }
        let (sender, receiver) = oneshot::channel();
        table.waiting.insert(id, sender);
        Ok(receiver)
    }

    fn forget(&self, id: u64) {
        self.lock().waiting.remove(&id);
    }

    fn complete(&self, id: u64, reply: Reply) {
        let sender = self.lock().waiting.remove(&id);
        match sender {
            Some(sender) => {
                let _ = sender.send(reply);
            }
            None => tracing::debug!(request.id = id, "response to no waiting call"),
        }
    }

    /// Fails every waiting call and every later one with `reason`.
    fn close(&self, reason: &str) {
        let waiting = {
            let mut table = self.lock();
            table.closed.get_or_insert_with(|| reason.to_owned());
            std::mem::take(&mut table.waiting)
        };
        for (_, sender) in waiting {
            let _ = sender.send(Err(self.lost(reason)));
        }
    }

    fn lost(&self, reason: &str) -> ClientError {
        ClientError::ConnectionLost {
            addr: self.addr.clone(),
            reason: reason.to_owned(),
        }
    }
}

/// Removes a call from the table if the caller stops waiting for it.
struct Registration<'a> {
    calls: &'a Calls,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.calls.forget(self.id);
    }
}

#[derive(Serialize)]
struct RequestLine<'a, P: ?Sized> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a P>,
}

#[derive(Deserialize)]
struct ResponseLine<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

impl Client {
    /// Connects to the router at `addr` with the default options.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Connect`] when the connection cannot be
    /// opened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), trecho_client::ClientError> {
    /// let client = trecho_client::Client::connect("127.0.0.1:7878").await?;
    /// assert!(client.ping().await?.pong);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        Self::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects to the router at `addr`.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Connect`] when the connection cannot be
    /// opened within `options.connect_timeout`.
    pub async fn connect_with(addr: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let stream = open(addr, options.connect_timeout).await?;
        let (read_half, write_half) = stream.into_split();
        let calls = Arc::new(Calls {
            addr: addr.to_owned(),
            state: Mutex::new(CallTable::default()),
        });
        let (queue, lines) = mpsc::channel(QUEUE_LINES);
        tokio::spawn(write_lines(write_half, lines, calls.clone()));
        let reader = tokio::spawn(read_responses(read_half, calls.clone()));
        Ok(Client {
            inner: Arc::new(Inner {
                addr: addr.to_owned(),
                next_id: AtomicU64::new(1),
                queue,
                calls,
                request_timeout: options.request_timeout,
                reader: reader.abort_handle(),
            }),
        })
    }

    /// Returns the router's address as given to `connect`.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Calls `method` with `params` and returns the result as JSON.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Rpc`] for the router's error, and the
    /// connection errors described on [`ClientError`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: trecho_client::Client) -> Result<(), trecho_client::ClientError> {
    /// let params = serde_json::json!({"origin": "GRU", "limit": 3});
    /// let result = client.call("segments.search", params).await?;
    /// println!("{}", result["segments"]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let params = (!params.is_null()).then_some(&params);
        let raw = self.call_raw(method, params).await?;
        serde_json::from_str(raw.get()).map_err(|e| self.protocol(method, e))
    }

    /// Sends `ping`.
    ///
    /// # Errors
    ///
    /// Returns the errors described on [`ClientError`].
    pub async fn ping(&self) -> Result<Pong, ClientError> {
        self.request::<(), _>("ping", None).await
    }

    /// Lists every airport of the schedule (`airports.list`).
    ///
    /// # Errors
    ///
    /// Returns the errors described on [`ClientError`].
    pub async fn airports(&self) -> Result<AirportsResult, ClientError> {
        self.request::<(), _>("airports.list", None).await
    }

    /// Searches segments by origin, destination and date
    /// (`segments.search`).
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Rpc`] with `invalid params` when neither
    /// origin nor destination is given, and the errors described on
    /// [`ClientError`].
    pub async fn search(&self, params: SearchParams) -> Result<SearchResult, ClientError> {
        self.request("segments.search", Some(&params)).await
    }

    /// Returns one segment (`segments.get`).
    ///
    /// # Errors
    ///
    /// Returns an `unknown_segment` error for an id that no flight has, and
    /// the errors described on [`ClientError`].
    pub async fn segment(&self, id: &str) -> Result<Segment, ClientError> {
        let params = SegmentRef { id: id.to_owned() };
        self.request("segments.get", Some(&params)).await
    }

    /// Finds itineraries from origin to destination on a date
    /// (`routes.find`).
    ///
    /// # Errors
    ///
    /// Returns the errors described on [`ClientError`].
    pub async fn routes(&self, params: RoutesParams) -> Result<RoutesResult, ClientError> {
        self.request("routes.find", Some(&params)).await
    }

    /// Books seats on one or more segments, confirmed at once
    /// (`bookings.create`).
    ///
    /// # Errors
    ///
    /// Returns errors such as `sold_out`, `sales_closed` and
    /// `outcome_unknown` as [`ClientError::Rpc`], and the connection errors
    /// described on [`ClientError`]. After `outcome_unknown` or a lost
    /// connection, the same params with the same `request_id` return the
    /// booking if it was made.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use trecho_client::{BookParams, Client, Passenger};
    ///
    /// # async fn run(client: Client) -> Result<(), trecho_client::ClientError> {
    /// let booking = client
    ///     .create(BookParams {
    ///         passenger: Passenger {
    ///             name: "Ana Souza".into(),
    ///             document: "X1234567".into(),
    ///         },
    ///         segments: vec!["AD4521-2026-12-20".into()],
    ///         seats: Some(2),
    ///         request_id: Some("trip-42".into()),
    ///         hold_seconds: None,
    ///     })
    ///     .await?;
    /// println!("booked {}", booking.id);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create(&self, params: BookParams) -> Result<Booking, ClientError> {
        self.request("bookings.create", Some(&params)).await
    }

    /// Holds seats until `hold_seconds` pass or the booking is confirmed
    /// (`bookings.hold`).
    ///
    /// # Errors
    ///
    /// Returns the same errors as [`Client::create`].
    pub async fn hold(&self, params: BookParams) -> Result<Booking, ClientError> {
        self.request("bookings.hold", Some(&params)).await
    }

    /// Confirms a held booking (`bookings.confirm`).
    ///
    /// # Errors
    ///
    /// Returns `unknown_booking`, `hold_expired` or `invalid_state` as
    /// [`ClientError::Rpc`], and the connection errors described on
    /// [`ClientError`].
    pub async fn confirm(&self, id: &str, document: &str) -> Result<Booking, ClientError> {
        self.request("bookings.confirm", Some(&booking_ref(id, document)))
            .await
    }

    /// Cancels a held or confirmed booking and releases its seats
    /// (`bookings.cancel`).
    ///
    /// # Errors
    ///
    /// Returns `unknown_booking` or `invalid_state` as [`ClientError::Rpc`],
    /// and the connection errors described on [`ClientError`].
    pub async fn cancel(&self, id: &str, document: &str) -> Result<Booking, ClientError> {
        self.request("bookings.cancel", Some(&booking_ref(id, document)))
            .await
    }

    /// Returns one booking (`bookings.get`).
    ///
    /// # Errors
    ///
    /// Returns `unknown_booking` when no booking has that locator and
    /// document, and the errors described on [`ClientError`].
    pub async fn booking(&self, id: &str, document: &str) -> Result<Booking, ClientError> {
        self.request("bookings.get", Some(&booking_ref(id, document)))
            .await
    }

    /// Lists a passenger's bookings, newest first (`bookings.list`).
    ///
    /// # Errors
    ///
    /// Returns the errors described on [`ClientError`].
    pub async fn bookings(&self, document: &str) -> Result<BookingsResult, ClientError> {
        let params = DocumentRef {
            document: document.to_owned(),
        };
        self.request("bookings.list", Some(&params)).await
    }

    /// Returns the shard map and each shard's health (`cluster.status`).
    ///
    /// # Errors
    ///
    /// Returns the errors described on [`ClientError`].
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        self.request::<(), _>("cluster.status", None).await
    }

    /// Moves slots `first..=last`, all owned by one shard, to shard `to`
    /// (`admin.move_slots`), and returns once shard `to` owns them.
    ///
    /// Writes to those slots wait while the move pauses them, and the result
    /// gives that pause. After a lost connection or a timeout, the move may
    /// still finish: [`Client::status`] shows the slots' owner and any move
    /// in progress.
    ///
    /// # Errors
    ///
    /// Returns `unauthorized` (1012) when `token` is not the router's admin
    /// token and `invalid params` for slots out of range or with more than
    /// one owner, as [`ClientError::Rpc`]. The retryable kinds
    /// `shard_unavailable`, `outcome_unknown`, `overloaded` and
    /// `map_changed` leave it to the caller to check the owner and send the
    /// move again. The connection errors are described on [`ClientError`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use trecho_client::{AdminToken, Client};
    ///
    /// # async fn run(client: Client) -> Result<(), trecho_client::ClientError> {
    /// let token = AdminToken(std::env::var("TRECHO_ADMIN_TOKEN").unwrap_or_default());
    /// let moved = client.move_slots(&token, 100, 355, 3).await?;
    /// println!(
    ///     "shard {} gave {} rows to shard {}; writes paused {} ms",
    ///     moved.from, moved.rows, moved.to, moved.pause_ms
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub async fn move_slots(
        &self,
        token: &AdminToken,
        first: u16,
        last: u16,
        to: u32,
    ) -> Result<MoveSlotsResult, ClientError> {
        let params = MoveSlotsParams {
            token: token.clone(),
            first,
            last,
            to,
        };
        self.request("admin.move_slots", Some(&params)).await
    }

    /// Adds the shard listening at `address` (`HOST:PORT`) to the cluster
    /// (`admin.add_shard`). The new shard owns no slots until slots move to
    /// it.
    ///
    /// # Errors
    ///
    /// Returns `unauthorized` (1012) when `token` is not the router's admin
    /// token, other router errors as [`ClientError::Rpc`], and the
    /// connection errors described on [`ClientError`].
    pub async fn add_shard(
        &self,
        token: &AdminToken,
        address: &str,
    ) -> Result<AddShardResult, ClientError> {
        let params = AddShardParams {
            token: token.clone(),
            address: address.to_owned(),
        };
        self.request("admin.add_shard", Some(&params)).await
    }

    async fn request<P, R>(&self, method: &str, params: Option<&P>) -> Result<R, ClientError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let raw = self.call_raw(method, params).await?;
        serde_json::from_str(raw.get()).map_err(|e| self.protocol(method, e))
    }

    async fn call_raw<P>(
        &self,
        method: &str,
        params: Option<&P>,
    ) -> Result<Box<RawValue>, ClientError>
    where
        P: Serialize + ?Sized,
    {
        let inner = &*self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let line = encode_request(id, method, params).map_err(|e| self.protocol(method, e))?;
        let answer = inner.calls.register(id)?;
        let _registration = Registration {
            calls: &inner.calls,
            id,
        };
        if inner.queue.send(line).await.is_err() {
            return Err(inner.calls.lost("the writer stopped"));
        }
        let reply = match inner.request_timeout {
            None => answer.await,
            Some(limit) => {
                tokio::time::timeout(limit, answer)
                    .await
                    .map_err(|_| ClientError::Timeout {
                        addr: inner.addr.clone(),
                        method: method.to_owned(),
                        timeout: limit,
                    })?
            }
        };
        reply.map_err(|_| inner.calls.lost("the reader stopped"))?
    }

    fn protocol(&self, method: &str, error: serde_json::Error) -> ClientError {
        ClientError::Protocol {
            addr: self.inner.addr.clone(),
            message: format!("the result of {method} could not be read: {error}"),
        }
    }
}

/// Opens a TCP connection to `addr` within `limit`.
pub(crate) async fn open(addr: &str, limit: Duration) -> Result<TcpStream, ClientError> {
    let connect_error = |source| ClientError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let stream = tokio::time::timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            let message = format!("no connection within {limit:?}");
            connect_error(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
        })?
        .map_err(connect_error)?;
    // Small request lines would otherwise wait for the previous response's
    // acknowledgement (Nagle's algorithm).
    stream.set_nodelay(true).map_err(connect_error)?;
    Ok(stream)
}

fn booking_ref(id: &str, document: &str) -> BookingRef {
    BookingRef {
        id: id.to_owned(),
        document: document.to_owned(),
    }
}

fn encode_request<P: Serialize + ?Sized>(
    id: u64,
    method: &str,
    params: Option<&P>,
) -> Result<Vec<u8>, serde_json::Error> {
    let line = RequestLine {
        jsonrpc: "2.0",
        id,
        method,
        params,
    };
    let mut bytes = serde_json::to_vec(&line)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes queued request lines, batching those that are waiting, until
/// every [`Client`] handle is gone or a write fails.
async fn write_lines(
    mut stream: OwnedWriteHalf,
    mut lines: mpsc::Receiver<Vec<u8>>,
    calls: Arc<Calls>,
) {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Some(first) = lines.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < MAX_BATCH_BYTES {
            let Ok(next) = lines.try_recv() else { break };
            batch.extend_from_slice(&next);
        }
        if let Err(error) = stream.write_all(&batch).await {
            tracing::debug!(%error, "write to router failed");
            calls.close(&format!("write failed: {error}"));
            return;
        }
    }
    // Every handle is gone: tell the router no more requests come.
    let _ = stream.shutdown().await;
}

/// Reads response lines and hands each to its waiting call, until the
/// connection closes.
async fn read_responses(stream: OwnedReadHalf, calls: Arc<Calls>) {
    // Closing on drop also fails the waiting calls when this task panics
    // or is aborted, so no caller waits for a response that cannot come.
    let mut guard = CloseOnDrop {
        calls: &calls,
        reason: "the response reader stopped".to_owned(),
    };
    let mut lines = LineReader::new(BufReader::new(stream), MAX_RESPONSE_LINE);
    guard.reason = loop {
        match lines.next_frame().await {
            Ok(Some(Frame::Line(line))) => dispatch(line, &calls),
            Ok(Some(Frame::TooLong)) => {
                break format!("a response line was longer than {MAX_RESPONSE_LINE} bytes")
            }
            Ok(None) => break "closed by the router".to_owned(),
            Err(error) => break format!("read failed: {error}"),
        }
    };
    tracing::debug!(reason = guard.reason, "router connection closed");
}

struct CloseOnDrop<'a> {
    calls: &'a Calls,
    reason: String,
}

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.calls.close(&self.reason);
    }
}

fn dispatch(line: &[u8], calls: &Calls) {
    let response = match serde_json::from_slice::<ResponseLine<'_>>(line) {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, "unreadable response line from router");
            return;
        }
    };
    let Some(id) = response.id.and_then(|id| id.get().parse::<u64>().ok()) else {
        // The router sends id null for a line it could not parse. This
        // client writes only valid lines, so such a response matches no call.
        tracing::warn!(error = ?response.error.map(RpcError::from), "response without a call id from router");
        return;
    };
    let reply = match (response.result, response.error) {
        (_, Some(error)) => Err(ClientError::Rpc(Box::new(error.into()))),
        (Some(result), None) => Ok(result.to_owned()),
        (None, None) => Err(ClientError::Protocol {
            addr: calls.addr.clone(),
            message: format!("response {id} has neither result nor error"),
        }),
    };
    calls.complete(id, reply);
}
