//! The promises checked after each scenario, and its report.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use trecho_client::{Client, ClientError};

use crate::docker::Docker;
use crate::load::{Attempt, Call, Records};

/// Bookings checked at once.
const CHECK_CONCURRENCY: usize = 32;
/// How long the audit lets transactions settle before it reports them in
/// doubt: the shards' prepare timeout (5 s) plus time to resolve.
const IN_DOUBT_AFTER: Duration = Duration::from_secs(15);

/// What one scenario did and every promise it saw broken.
pub(crate) struct Report {
    pub(crate) name: String,
    pub(crate) sent: usize,
    pub(crate) by_outcome: BTreeMap<String, usize>,
    pub(crate) detect: Option<Duration>,
    pub(crate) recover: Option<Duration>,
    pub(crate) notes: Vec<String>,
    pub(crate) broken: Vec<String>,
}

impl Report {
    pub(crate) fn new(name: &str, records: &Records) -> Report {
        let mut by_outcome = BTreeMap::new();
        for call in &records.calls {
            *by_outcome
                .entry(call.outcome.label().to_owned())
                .or_default() += 1;
        }
        Report {
            name: name.to_owned(),
            sent: records.calls.len(),
            by_outcome,
            detect: None,
            recover: None,
            notes: Vec::new(),
            broken: Vec::new(),
        }
    }

    pub(crate) fn is_kept(&self) -> bool {
        self.broken.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_kept() { "PASS" } else { "FAIL" };
        writeln!(f, "== {}: {verdict}", self.name)?;
        let succeeded = self.by_outcome.get("ok").copied().unwrap_or(0);
        let failed: Vec<String> = self
            .by_outcome
            .iter()
            .filter(|(label, _)| *label != "ok")
            .map(|(label, count)| format!("{label} {count}"))
            .collect();
        writeln!(
            f,
            "   requests sent {}, succeeded {succeeded}, failed {}",
            self.sent,
            if failed.is_empty() {
                "0".to_owned()
            } else {
                failed.join(", ")
            }
        )?;
        let seconds = |value: Option<Duration>| {
            value.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
        };
        writeln!(
            f,
            "   time to detect {}, time to recover {}",
            seconds(self.detect),
            seconds(self.recover)
        )?;
        for note in &self.notes {
            writeln!(f, "   {note}")?;
        }
        for broken in &self.broken {
            writeln!(f, "   BROKEN: {broken}")?;
        }
        Ok(())
    }
}

/// Returns the first call that touches `shard`, starts at or after `since`
/// and satisfies `filter`.
pub(crate) fn first_call(
    calls: &[Call],
    shard: u32,
    since: tokio::time::Instant,
    filter: impl Fn(&Call) -> bool,
) -> Option<&Call> {
    calls
        .iter()
        .filter(|call| call.started >= since && call.touches(shard) && filter(call))
        .min_by_key(|call| call.ended())
}

/// Retries every booking whose outcome the client did not learn, checks
/// that every booking the client saw is there with a status it allows, and
/// that no passenger has more bookings than the client made. Adds what it
/// finds to `report`.
pub(crate) async fn check_bookings(client: &Client, records: &mut Records, report: &mut Report) {
    let mut retried = 0;
    for attempt in records.attempts.iter_mut().filter(|a| a.uncertain) {
        retried += 1;
        if let Err(problem) = retry(client, attempt).await {
            report.broken.push(problem);
        }
    }
    let limit = Arc::new(Semaphore::new(CHECK_CONCURRENCY));
    let mut checks = JoinSet::new();
    for attempt in records.attempts.clone() {
        let client = client.clone();
        let limit = limit.clone();
        checks.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("the semaphore stays open");
            check_attempt(&client, &attempt).await
        });
    }
    while let Some(joined) = checks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => report.broken.push(problem),
            Err(panic) => report
                .broken
                .push(format!("a booking check panicked: {panic}")),
        }
    }
    let booked = records
        .attempts
        .iter()
        .filter(|a| a.locator.is_some())
        .count();
    report.notes.push(format!(
        "bookings checked {}, of them made {booked}, outcome unknown and retried {retried}",
        records.attempts.len()
    ));
}

/// Sends an attempt whose outcome is unknown again with the same request
/// id, which returns the booking if the first call made it.
async fn retry(client: &Client, attempt: &mut Attempt) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..10 {
        let result = if attempt.hold {
            client.hold(attempt.params.clone()).await
        } else {
            client.create(attempt.params.clone()).await
        };
        match result {
            Ok(booking) => {
                // The load confirms or cancels only bookings whose first
                // response it received, so the retry's status is current.
                attempt.allowed = vec![booking.status];
                attempt.locator = Some(booking.id);
                attempt.uncertain = false;
                return Ok(());
            }
            Err(error) if is_transient(&error) => last = error.to_string(),
            Err(_) => {
                // A definite refusal such as sold_out: the first call made
                // nothing either, or the retry would return its booking.
                attempt.uncertain = false;
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!(
        "retrying request {} of passenger {} with the same request_id kept failing: {last}",
        attempt.params.request_id.as_deref().unwrap_or("-"),
        attempt.document()
    ))
}

fn is_transient(error: &ClientError) -> bool {
    match error {
        ClientError::Rpc(rpc) => matches!(
            rpc.kind(),
            Some("shard_unavailable" | "outcome_unknown" | "overloaded")
        ),
        _ => true,
    }
}

/// Checks one attempt against the cluster.
async fn check_attempt(client: &Client, attempt: &Attempt) -> Result<(), String> {
    let document = attempt.document();
    if let Some(locator) = &attempt.locator {
        let booking = client.booking(locator, document).await.map_err(|error| {
            format!("booking {locator} that a client received is not readable: {error}")
        })?;
        if !attempt.allowed.contains(&booking.status) {
            return Err(format!(
                "booking {locator} is {:?}, but the responses the client received allow only {:?}",
                booking.status, attempt.allowed
            ));
        }
    }
    let listed = client
        .bookings(document)
        .await
        .map_err(|error| format!("cannot list the bookings of passenger {document}: {error}"))?;
    if listed.coverage.partial {
        return Err(format!(
            "listing the bookings of passenger {document} missed shards {:?} after the cluster healed",
            listed.coverage.unavailable_shards
        ));
    }
    let ids: Vec<&str> = listed.bookings.iter().map(|b| b.id.as_str()).collect();
    let expected: Vec<&str> = attempt.locator.iter().map(String::as_str).collect();
    if ids != expected {
        return Err(format!(
            "passenger {document} has bookings {ids:?}, but the client made {expected:?} \
             (a refused request must book nothing, and a retried one must book once)"
        ));
    }
    Ok(())
}

/// Runs the invariant checker over the whole cluster and adds a failure to
/// `report` when it finds a violation or cannot run.
pub(crate) async fn audit(docker: &Docker, report: &mut Report) {
    match docker.audit(IN_DOUBT_AFTER).await {
        Ok(exit) if exit.code == Some(0) => {
            let summary = exit.output.lines().last().unwrap_or_default().to_owned();
            report.notes.push(summary);
        }
        Ok(exit) => report.broken.push(format!(
            "the audit exited with {:?}:\n{}",
            exit.code, exit.output
        )),
        Err(error) => report
            .broken
            .push(format!("the audit could not run: {error:#}")),
    }
}
