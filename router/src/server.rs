//! The accept loop: one task per client connection, a limit on connections,
//! and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, timeout, Instant};
use tracing::Instrument;
use trecho_common::error::Error;
use trecho_common::protocol::envelope::write_error;
use trecho_common::protocol::RequestId;

use crate::cluster::Cluster;
use crate::config::RouterConfig;
use crate::connection::{self, Limits};

/// How long a stopping router waits for open connections to finish the
/// requests they started.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Rejected connections that may linger at once while their `overloaded`
/// line is delivered; past this, rejected connections are closed at once.
const MAX_LINGERING_REJECTS: usize = 256;
/// How long a rejected connection may linger.
const REJECT_LINGER: Duration = Duration::from_secs(1);
/// Pause after a failed accept (for example, out of file descriptors), so
/// the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Least time between two warnings about the connection limit.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The server's settings, from [`RouterConfig`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    limits: Limits,
    max_connections: usize,
}

impl From<&RouterConfig> for Settings {
    fn from(config: &RouterConfig) -> Self {
        Settings {
            limits: Limits {
                max_line: config.max_line,
                max_in_flight: config.max_in_flight,
                idle_timeout: match config.idle_timeout_ms {
                    0 => None,
                    ms => Some(std::time::Duration::from_millis(ms)),
                },
            },
            max_connections: config.max_connections,
        }
    }
}

/// Accepts clients until `shutdown` completes, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut acceptor = Acceptor::new(cluster, settings);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => acceptor.admit(stream, peer),
                Err(error) => {
                    tracing::warn!(%error, "accept failed, pausing");
                    sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    acceptor.drain().await;
}

struct Acceptor {
    cluster: Arc<Cluster>,
    settings: Settings,
    /// One permit per open connection.
    connections: Arc<Semaphore>,
    lingering: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    next_id: u64,
    last_limit_warning: Option<Instant>,
}

impl Acceptor {
    fn new(cluster: Arc<Cluster>, settings: Settings) -> Self {
        Acceptor {
            cluster,
            settings,
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            lingering: Arc::new(Semaphore::new(MAX_LINGERING_REJECTS)),
            stop: watch::channel(false).0,
            next_id: 0,
            last_limit_warning: None,
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        self.next_id += 1;
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            self.reject(stream, peer);
            return;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot disable Nagle's algorithm");
        }
        let span = tracing::debug_span!("connection", conn.id = self.next_id, peer.addr = %peer);
        let cluster = self.cluster.clone();
        let limits = self.settings.limits;
        let stop = self.stop.subscribe();
        let task = async move {
            tracing::debug!("connection opened");
            connection::serve(stream, cluster, limits, stop).await;
            tracing::debug!("connection closed");
            drop(permit);
        };
        tokio::spawn(task.instrument(span));
    }

    /// Sends one `overloaded` error with id null and closes the connection.
    fn reject(&mut self, stream: TcpStream, peer: SocketAddr) {
        self.warn_limit();
        tracing::debug!(conn.id = self.next_id, peer.addr = %peer, "connection rejected: limit reached");
        let error = Error::Overloaded {
            message: format!(
                "the router serves at most {} connections at once",
                self.settings.max_connections
            ),
        };
        let mut line = Vec::with_capacity(256);
        write_error(&mut line, &RequestId::null(), &error);
        line.push(b'\n');
        match self.lingering.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    let _ = timeout(REJECT_LINGER, deliver_and_close(stream, &line)).await;
                    drop(permit);
                });
            }
            // Too many rejects in progress: one non-blocking attempt only.
            Err(_) => {
                let _ = stream.try_write(&line);
            }
        }
    }

    fn warn_limit(&mut self) {
        let due = match self.last_limit_warning {
            None => true,
            Some(last) => last.elapsed() >= LIMIT_WARNING_INTERVAL,
        };
        if due {
            self.last_limit_warning = Some(Instant::now());
            tracing::warn!(
                max_connections = self.settings.max_connections,
                "connection limit reached, rejecting new connections"
            );
        }
    }

    /// Tells every connection to stop reading and waits, for a while, for
    /// them to answer what they started.
    async fn drain(self) {
        let _ = self.stop.send(true);
        let all = u32::try_from(self.settings.max_connections).unwrap_or(u32::MAX);
        if timeout(DRAIN_TIMEOUT, self.connections.acquire_many(all))
            .await
            .is_err()
        {
            let open = self.settings.max_connections - self.connections.available_permits();
            tracing::warn!(open, "connections still open at shutdown, leaving them");
        }
    }
}

/// Writes `line`, closes the write side, and reads until the client closes,
/// so that the client sees the line instead of a reset.
async fn deliver_and_close(mut stream: TcpStream, line: &[u8]) {
    if stream.write_all(line).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut discard = [0u8; 1024];
    while matches!(stream.read(&mut discard).await, Ok(count) if count > 0) {}
}
