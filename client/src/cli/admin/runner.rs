//! Runs a plan: one `admin.move_slots` call per batch, with the plan
//! compared to `cluster.status` before every batch.
//!
//! Nothing here keeps state that a later run needs. The shards drive each
//! move and record it, so a run that stops for any reason leaves moved
//! slots moved, and the next run plans from the owners it finds.

use std::time::Duration;

use anyhow::anyhow;
use tokio::time::Instant;
use trecho_client::{AddShardResult, AdminToken, Client, ClientError, ClientOptions};
use trecho_common::internal::MoveView;
use trecho_common::protocol::methods::{ClusterStatus, MoveSlotsResult};
use trecho_common::Error;

use super::plan::{owner_map, pending_moves, Move, ShardLoad, Transfer};
use super::progress::{clock, slot_range, Progress, Summary};
use crate::cli::view::{move_summary, unix_now_ms};

/// Timeout for each response. A move returns only once the target owns
/// the slots, which takes longer than any other request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Number of steps in a row failed with a retryable error at which the run
/// stops.
const MAX_ATTEMPTS: u32 = 8;
/// Wait before the first retry. It doubles on each retry up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Maximum wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Interval between reads of `cluster.status` while a move started
/// elsewhere runs.
const WAIT_POLL: Duration = Duration::from_millis(500);
/// Maximum time that one move in progress may keep the run waiting before
/// the run stops.
const MOVE_WAIT_LIMIT: Duration = Duration::from_secs(300);
/// Maximum time that `cluster.status` may keep showing slots of a move that
/// the router reported done. The run waits meanwhile instead of sending the
/// same move again, and stops once this time has passed.
const STALE_STATUS_LIMIT: Duration = Duration::from_secs(5);
/// Interval between redraws of the progress line on a terminal.
const REDRAW: Duration = Duration::from_millis(250);

/// A connection to the router that is opened again after it breaks.
pub(crate) struct Session {
    router: String,
    client: Option<Client>,
}

impl Session {
    /// Connects to the router at `router`.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Connect`] when the router cannot be reached.
    pub(crate) async fn connect(router: &str) -> Result<Session, ClientError> {
        let mut session = Session {
            router: router.to_owned(),
            client: None,
        };
        session.client().await?;
        Ok(session)
    }

    async fn client(&mut self) -> Result<Client, ClientError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let options = ClientOptions {
            request_timeout: Some(REQUEST_TIMEOUT),
            ..ClientOptions::default()
        };
        let client = Client::connect_with(&self.router, options).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Drops the connection, so that the next call opens a new one.
    fn disconnect(&mut self) {
        self.client = None;
    }

    /// Reads `cluster.status`.
    pub(crate) async fn status(&mut self) -> Result<ClusterStatus, ClientError> {
        self.client().await?.status().await
    }

    /// Calls `admin.add_shard`.
    pub(crate) async fn add_shard(
        &mut self,
        token: &AdminToken,
        address: &str,
    ) -> Result<AddShardResult, ClientError> {
        self.client().await?.add_shard(token, address).await
    }
}

/// Action taken on a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// Nothing changed, or the outcome shows in `cluster.status`. Read the
    /// status and try again after at least `after`, on a new connection
    /// when `reconnect` is set.
    Retry {
        after: Option<Duration>,
        reconnect: bool,
    },
    /// The admin token is missing or wrong.
    Unauthorized,
    /// Trying again would fail the same way.
    Stop,
}

fn classify(error: &ClientError) -> Disposition {
    let reconnect = Disposition::Retry {
        after: None,
        reconnect: true,
    };
    match error {
        ClientError::Connect { .. }
        | ClientError::Io { .. }
        | ClientError::ConnectionLost { .. }
        | ClientError::Timeout { .. } => reconnect,
        ClientError::Protocol { .. } => Disposition::Stop,
        ClientError::Rpc(rpc) => match &rpc.error {
            Some(Error::Unauthorized { .. }) => Disposition::Unauthorized,
            Some(Error::ShardUnavailable { retry_after_ms, .. }) => Disposition::Retry {
                after: Some(Duration::from_millis(*retry_after_ms)),
                reconnect: false,
            },
            Some(error) if error.is_retryable() => Disposition::Retry {
                after: None,
                reconnect: false,
            },
            _ => Disposition::Stop,
        },
    }
}

/// Returns the wait before retry number `attempt` (from 1). The wait
/// doubles from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`] and is never under
/// `after`.
fn backoff(attempt: u32, after: Option<Duration>) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    doubled.min(MAX_BACKOFF).max(after.unwrap_or_default())
}

/// Adds advice to an error that ends the command. For `unauthorized` the
/// advice names where the token comes from. For other errors it is `doing`,
/// which callers phrase as the failed step and how to continue.
pub(crate) fn explain(error: ClientError, doing: &str) -> anyhow::Error {
    match classify(&error) {
        Disposition::Unauthorized => anyhow::Error::new(error).context(
            "the router rejected the admin token; pass the router's admin token with --token \
             or set TRECHO_ADMIN_TOKEN",
        ),
        _ => anyhow::Error::new(error).context(doing.to_owned()),
    }
}

/// Rewords a lost connection or a timeout without the advice on bookings
/// that [`ClientError`] gives. That advice does not apply to moves,
/// because the next `cluster.status` shows whether a move happened.
fn connection_neutral(error: ClientError) -> anyhow::Error {
    match error {
        ClientError::ConnectionLost { addr, reason } => {
            anyhow!(
                "the connection to the router at {addr} was lost ({reason}) before the \
                 response arrived"
            )
        }
        ClientError::Timeout {
            addr,
            method,
            timeout,
        } => anyhow!("no response from the router at {addr} to {method} within {timeout:?}"),
        other => other.into(),
    }
}

/// The failure of a step.
enum Failure {
    /// A retry may succeed after `after`.
    Retry {
        error: anyhow::Error,
        after: Option<Duration>,
    },
    /// The run ends with this error.
    Stop(anyhow::Error),
}

/// Result of one step of a run.
enum Step {
    /// Nothing is left to move. Contains the status read at the end.
    Done(Box<ClusterStatus>),
    /// One batch moved.
    Moved,
    /// A move started elsewhere is still running.
    Waited,
}

/// Key of a move in progress (source, first slot, last slot, target), which
/// shows whether the run still waits for the same move.
type MoveKey = (u32, u16, u16, u32);

/// Runs plans over one [`Session`], drawing progress as it goes.
pub(crate) struct Runner<'a> {
    session: &'a mut Session,
    token: &'a AdminToken,
    batch: u16,
    progress: Progress,
    /// The move whose call is in flight.
    current: Option<Move>,
    /// The move started elsewhere that the run waits for, and since when.
    waiting: Option<(MoveKey, Instant)>,
    /// The last move the router reported done, and when, until
    /// `cluster.status` shows it.
    reported: Option<(Move, Instant)>,
}

impl<'a> Runner<'a> {
    /// Prepares a run of moves of at most `batch` slots.
    pub(crate) fn new(session: &'a mut Session, token: &'a AdminToken, batch: u16) -> Self {
        Runner {
            session,
            token,
            batch,
            progress: Progress::start(),
            current: None,
            waiting: None,
            reported: None,
        }
    }

    /// Moves slots until `cluster.status` shows every slot of `plan` at its
    /// target, and returns that status.
    ///
    /// # Errors
    ///
    /// Returns the first error that is not retryable, with what to do, or
    /// the last retryable one after [`MAX_ATTEMPTS`] failed steps in a row.
    pub(crate) async fn run(&mut self, plan: &[Transfer]) -> anyhow::Result<ClusterStatus> {
        let mut failures = 0;
        loop {
            match self.step(plan).await {
                Ok(Step::Done(status)) => return Ok(*status),
                Ok(Step::Moved) => failures = 0,
                Ok(Step::Waited) => {}
                Err(Failure::Stop(error)) => return Err(error),
                Err(Failure::Retry { error, after }) => {
                    failures += 1;
                    if failures >= MAX_ATTEMPTS {
                        return Err(gave_up(error, failures));
                    }
                    self.retry_later(failures, error, after).await;
                }
            }
        }
    }

    async fn retry_later(&mut self, attempt: u32, error: anyhow::Error, after: Option<Duration>) {
        let delay = backoff(attempt, after);
        tracing::info!(
            attempt,
            delay_ms = delay.as_millis() as u64,
            error = format!("{error:#}"),
            "admin step failed; retrying"
        );
        self.progress.event(format!(
            "retry {attempt} of {} in {}: {error:#}",
            MAX_ATTEMPTS - 1,
            clock(delay)
        ));
        self.sleep(delay).await;
    }

    /// Reads the status, then waits for a move started elsewhere, or makes
    /// the next move of `plan`.
    async fn step(&mut self, plan: &[Transfer]) -> Result<Step, Failure> {
        let status = match self.session.status().await {
            Ok(status) => status,
            Err(error) => return Err(self.failure(error, "reading cluster.status", "")),
        };
        if let Some((source, moving)) = move_in_progress(&status) {
            self.wait_for(source, moving)?;
            self.sleep(WAIT_POLL).await;
            return Ok(Step::Waited);
        }
        self.waiting = None;
        let map = owner_map(&ShardLoad::from_status(&status)).map_err(|error| Failure::Retry {
            error: error.into(),
            after: None,
        })?;
        let pending = pending_moves(&map, plan, self.batch);
        if self.status_lags(&pending)? {
            self.sleep(WAIT_POLL).await;
            return Ok(Step::Waited);
        }
        self.progress
            .set_remaining(pending.iter().map(Move::slot_count).sum());
        let Some(&next) = pending.first() else {
            return Ok(Step::Done(Box::new(status)));
        };
        let result = self.move_slots(next).await;
        self.current = None;
        match result {
            Ok(result) => {
                self.progress.record(&next, &result);
                self.reported = Some((next, Instant::now()));
                Ok(Step::Moved)
            }
            Err(error) => {
                let doing = format!(
                    "moving {} from shard {} to shard {}",
                    slot_range(next.first, next.last),
                    next.from,
                    next.to
                );
                let advice = "; slots moved before stay moved, so fix the cause and run the \
                              same command again to continue";
                Err(self.failure(error, &doing, advice))
            }
        }
    }

    /// Returns whether `pending` still contains slots of the move that the
    /// router last reported done. Stops the run when that has lasted longer
    /// than [`STALE_STATUS_LIMIT`].
    fn status_lags(&mut self, pending: &[Move]) -> Result<bool, Failure> {
        let Some((done, since)) = self.reported else {
            return Ok(false);
        };
        let lagging = pending
            .iter()
            .any(|step| step.first <= done.last && done.first <= step.last);
        if !lagging {
            self.reported = None;
            return Ok(false);
        }
        if since.elapsed() > STALE_STATUS_LIMIT {
            return Err(Failure::Stop(anyhow!(
                "the router reported {} moved to shard {}, but cluster.status still shows \
                 them elsewhere after {}; check `trecho status`, then run the same command \
                 again",
                slot_range(done.first, done.last),
                done.to,
                clock(STALE_STATUS_LIMIT)
            )));
        }
        self.progress.quiet_event(format!(
            "waiting for cluster.status to show {} on shard {}",
            slot_range(done.first, done.last),
            done.to
        ));
        Ok(true)
    }

    /// Notes a move in progress elsewhere, and stops the run when it has
    /// lasted longer than [`MOVE_WAIT_LIMIT`].
    fn wait_for(&mut self, source: u32, moving: &MoveView) -> Result<(), Failure> {
        let key = (source, moving.first, moving.last, moving.target);
        let text = format!(
            "waiting for shard {source}, {}",
            move_summary(moving, unix_now_ms())
        );
        let since = match self.waiting {
            Some((waited, since)) if waited == key => {
                self.progress.quiet_event(text);
                since
            }
            _ => {
                self.progress.event(text);
                let now = Instant::now();
                self.waiting = Some((key, now));
                now
            }
        };
        if since.elapsed() <= MOVE_WAIT_LIMIT {
            return Ok(());
        }
        Err(Failure::Stop(anyhow!(
            "shard {source} has been moving {} to shard {} for over {}; check with \
             `trecho status` that shards {source} and {} are up, then run the same command \
             again",
            slot_range(moving.first, moving.last),
            moving.target,
            clock(MOVE_WAIT_LIMIT),
            moving.target
        )))
    }

    /// Calls `admin.move_slots` for `step`, redrawing the progress line
    /// while it runs.
    async fn move_slots(&mut self, step: Move) -> Result<MoveSlotsResult, ClientError> {
        self.current = Some(step);
        self.progress.quiet_event(format!(
            "moving {} from shard {} to shard {}",
            slot_range(step.first, step.last),
            step.from,
            step.to
        ));
        let client = self.session.client().await?;
        let call = client.move_slots(self.token, step.first, step.last, step.to);
        tokio::pin!(call);
        let mut ticker = tokio::time::interval(REDRAW);
        loop {
            tokio::select! {
                result = &mut call => return result,
                _ = ticker.tick() => self.progress.redraw(),
            }
        }
    }

    /// Classifies a failed call as retryable or final. `doing` names the
    /// step, and `advice` follows it in the message of an error that ends
    /// the run.
    fn failure(&mut self, error: ClientError, doing: &str, advice: &str) -> Failure {
        match classify(&error) {
            Disposition::Retry { after, reconnect } => {
                if reconnect {
                    self.session.disconnect();
                }
                Failure::Retry {
                    error: connection_neutral(error).context(doing.to_owned()),
                    after,
                }
            }
            Disposition::Unauthorized | Disposition::Stop => {
                Failure::Stop(explain(error, &format!("{doing} failed{advice}")))
            }
        }
    }

    async fn sleep(&self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            self.progress.redraw();
            tokio::time::sleep_until(deadline.min(Instant::now() + REDRAW)).await;
        }
    }

    /// Shows `text` as the run's current activity.
    pub(crate) fn note(&mut self, text: String) {
        self.progress.event(text);
    }

    /// Returns the error of a run stopped by Ctrl-C.
    pub(crate) fn interrupted(&self) -> anyhow::Error {
        match self.current {
            Some(step) => anyhow!(
                "interrupted while shard {} was moving {} to shard {}; that move may still \
                 finish and slots moved before stay moved, so run the same command again to \
                 continue",
                step.from,
                slot_range(step.first, step.last),
                step.to
            ),
            None => anyhow!(
                "interrupted; slots moved so far stay moved, so run the same command again to \
                 continue"
            ),
        }
    }

    /// Ends the progress line and returns the totals of the run.
    pub(crate) fn finish(&self) -> Summary {
        self.progress.close();
        self.progress.summary()
    }
}

/// Returns the first shard that reports a move in progress, and the move.
fn move_in_progress(status: &ClusterStatus) -> Option<(u32, &MoveView)> {
    status
        .shards
        .iter()
        .find_map(|shard| shard.moving.as_ref().map(|moving| (shard.id, moving)))
}

fn gave_up(error: anyhow::Error, attempts: u32) -> anyhow::Error {
    error.context(format!(
        "gave up after {attempts} failed attempts in a row, and slots moved so far stay \
         moved; check the shards with `trecho status`, then run the same command again to \
         continue"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trecho_client::RpcError;

    fn rpc(error: Error) -> ClientError {
        let object = error.to_json();
        ClientError::Rpc(Box::new(RpcError::new(
            error.code(),
            error.to_string(),
            object.get("data").cloned(),
        )))
    }

    #[test]
    fn retryable_kinds_are_retried() {
        let errors = [
            Error::OutcomeUnknown { shard: 1 },
            Error::Overloaded {
                message: "too many requests in flight".into(),
            },
            Error::MapChanged { slot: 7, shard: 1 },
        ];
        for error in errors {
            let expected = Disposition::Retry {
                after: None,
                reconnect: false,
            };
            assert_eq!(classify(&rpc(error.clone())), expected, "{error:?}");
        }
        let unavailable = Error::ShardUnavailable {
            shard: 2,
            retry_after_ms: 700,
        };
        let expected = Disposition::Retry {
            after: Some(Duration::from_millis(700)),
            reconnect: false,
        };
        assert_eq!(classify(&rpc(unavailable)), expected);
    }

    #[test]
    fn lost_connection_retries_on_new_one() {
        let lost = ClientError::ConnectionLost {
            addr: "127.0.0.1:7878".into(),
            reason: "closed by the router".into(),
        };
        let expected = Disposition::Retry {
            after: None,
            reconnect: true,
        };
        assert_eq!(classify(&lost), expected);
    }

    #[test]
    fn lost_connection_message_omits_booking_advice() {
        let lost = ClientError::ConnectionLost {
            addr: "127.0.0.1:7878".into(),
            reason: "closed by the router".into(),
        };
        let text = connection_neutral(lost).to_string();
        assert_eq!(
            text,
            "the connection to the router at 127.0.0.1:7878 was lost (closed by the router) \
             before the response arrived"
        );
    }

    #[test]
    fn other_errors_stop_the_run() {
        let unauthorized = Error::Unauthorized {
            message: "wrong admin token".into(),
        };
        assert_eq!(classify(&rpc(unauthorized)), Disposition::Unauthorized);
        let invalid = Error::invalid_params("slots 0-10 have more than one owner");
        assert_eq!(classify(&rpc(invalid)), Disposition::Stop);
    }

    #[test]
    fn unauthorized_error_names_token_sources() {
        let error = rpc(Error::Unauthorized {
            message: "wrong admin token".into(),
        });
        let text = format!("{:#}", explain(error, "moving slots failed"));
        assert!(text.contains("--token"), "{text}");
        assert!(text.contains("TRECHO_ADMIN_TOKEN"), "{text}");
        assert!(text.contains("wrong admin token"), "{text}");
    }

    #[test]
    fn backoff_doubles_to_cap_and_honours_hint() {
        assert_eq!(backoff(1, None), Duration::from_millis(250));
        assert_eq!(backoff(2, None), Duration::from_millis(500));
        assert_eq!(backoff(5, None), Duration::from_secs(4));
        assert_eq!(backoff(6, None), MAX_BACKOFF);
        assert_eq!(backoff(40, None), MAX_BACKOFF);
        let hint = Some(Duration::from_millis(900));
        assert_eq!(backoff(1, hint), Duration::from_millis(900));
    }
}
