//! Randomized crash test: concurrent clients create, hold, confirm and
//! cancel multi-segment trips on a few hot segments while the router and
//! the shards are SIGKILLed and restarted at random moments. Afterwards,
//! past every deadline, the audit must find no broken invariant, every
//! booking a client saw confirmed must be there, and every request id must
//! have made at most one booking.
//!
//! Every run is seeded and prints its seed. `TRECHO_CHAOS_SEEDS` (a comma
//! separated list) replaces the default seeds, and `TRECHO_CHAOS_SECONDS`
//! sets how long each seed's crash phase lasts (default 12).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use trecho_client::audit::{self, ExpectedBooking};
use trecho_client::{
    BookParams, Booking, BookingStatus, Client, ClientError, ClientOptions, Passenger, SearchParams,
};
use trecho_common::failpoint;
use trecho_common::time::Date;
use trecho_tests::Cluster;

const DEFAULT_SEEDS: [u64; 2] = [0x5EED_0001, 0x5EED_2026];
const DEFAULT_CHAOS_SECONDS: u64 = 12;
const SHARDS: usize = 3;
const WORKERS: usize = 4;
/// Hot segments per shard.
const HOT_PER_SHARD: usize = 2;
/// Maximum hold the workers request, in seconds.
const MAX_HOLD_SECONDS: u32 = 3;
/// Prepare deadline of the cluster, in milliseconds.
const PREPARE_TIMEOUT_MS: &str = "1000";
/// How long the final audit waits for transactions to settle.
const IN_DOUBT_AFTER: Duration = Duration::from_secs(15);
/// Time allowed for one call, so a worker never waits on a dead router for
/// long.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per request id when the outcome of its attempts stays unknown
/// after the crashes stop.
const RESOLVE_TRIES: usize = 20;

/// SplitMix64: a small, fast generator that is fully determined by its
/// seed, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.next() % len as u64).expect("an index fits in usize")
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("TRECHO_CHAOS_SEEDS") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("TRECHO_CHAOS_SEEDS must be a comma separated list of integers")
            })
            .collect(),
        Err(_) => DEFAULT_SEEDS.to_vec(),
    }
}

fn chaos_duration() -> Duration {
    let seconds = match std::env::var("TRECHO_CHAOS_SECONDS") {
        Ok(text) => text
            .parse()
            .expect("TRECHO_CHAOS_SECONDS must be a whole number of seconds"),
        Err(_) => DEFAULT_CHAOS_SECONDS,
    };
    Duration::from_secs(seconds)
}

/// Returns [`HOT_PER_SHARD`] segments of each shard, all out of GRU two
/// or three days from now.
async fn hot_segments(client: &Client) -> Vec<String> {
    let status = client.status().await.expect("cluster.status failed");
    let mut found = Vec::new();
    for days in [2, 3] {
        let params = SearchParams {
            origin: Some("GRU".into()),
            destination: None,
            date: Some(Date::today_utc().add_days(days)),
            limit: Some(1000),
        };
        let result = client.search(params).await.expect("segments.search failed");
        found.extend(result.segments);
    }
    let mut by_shard = vec![Vec::new(); status.shards.len()];
    for segment in found {
        let owner = common::shard_of(&status, &segment.id);
        let index = usize::try_from(owner).expect("shard ids are small");
        if by_shard[index].len() < HOT_PER_SHARD {
            by_shard[index].push(segment.id);
        }
    }
    for (shard, segments) in by_shard.iter().enumerate() {
        assert_eq!(
            segments.len(),
            HOT_PER_SHARD,
            "too few segments out of GRU on shard {shard}"
        );
    }
    by_shard.concat()
}

/// What one worker saw.
#[derive(Default)]
struct Ledger {
    document: String,
    /// Create and hold attempts by request id.
    attempts: BTreeMap<String, Attempt>,
    /// Locators whose confirmation a client saw (create or confirm).
    confirmed: BTreeSet<String>,
    /// Locators whose cancel a client saw.
    cancelled: BTreeSet<String>,
    /// Locators whose confirm or cancel had an unknown outcome.
    unsure: BTreeSet<String>,
    /// Operations sent, and how many had an unknown outcome.
    operations: usize,
    uncertain: usize,
}

struct Attempt {
    hold: bool,
    params: BookParams,
    outcome: Outcome,
}

enum Outcome {
    Booked(Booking),
    /// A definite error, by its `data.kind`: nothing was booked.
    Refused(String),
    /// The connection broke or the router returned outcome_unknown.
    Unknown,
}

fn is_uncertain(error: &ClientError) -> bool {
    match error {
        ClientError::Connect { .. }
        | ClientError::Io { .. }
        | ClientError::ConnectionLost { .. }
        | ClientError::Timeout { .. } => true,
        _ => error.kind() == Some("outcome_unknown"),
    }
}

fn kind_of(error: &ClientError) -> String {
    error.kind().unwrap_or("no kind").to_owned()
}

/// Counts the attempts by how they ended: booked, or refused and why.
fn outcome_counts(ledgers: &[Ledger]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for attempt in ledgers.iter().flat_map(|l| l.attempts.values()) {
        let key = match &attempt.outcome {
            Outcome::Booked(_) => "booked".to_owned(),
            Outcome::Refused(kind) => kind.clone(),
            Outcome::Unknown => "unknown".to_owned(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Whether the call may have been lost with the connection, so the worker
/// should connect again.
fn breaks_connection(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Io { .. } | ClientError::ConnectionLost { .. } | ClientError::Timeout { .. }
    )
}

async fn connect(router: &str) -> Result<Client, ClientError> {
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Some(CALL_TIMEOUT),
    };
    Client::connect_with(router, options).await
}

struct Worker {
    router: String,
    rng: Rng,
    hot: Vec<String>,
    client: Option<Client>,
    ledger: Ledger,
    next_request: usize,
}

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>) -> Ledger {
        while !stop.load(Ordering::Relaxed) {
            let Some(client) = self.client().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match self.rng.range(0, 99) {
                0..=34 => self.book(&client, false).await,
                35..=64 => self.book(&client, true).await,
                65..=79 => self.confirm(&client).await,
                _ => self.cancel(&client).await,
            }
            let pause = self.rng.range(5, 40);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        self.ledger
    }

    async fn client(&mut self) -> Option<Client> {
        if self.client.is_none() {
            self.client = connect(&self.router).await.ok();
        }
        self.client.clone()
    }

    fn note_error(&mut self, error: &ClientError) {
        if breaks_connection(error) {
            self.client = None;
        }
        if is_uncertain(error) {
            self.ledger.uncertain += 1;
        }
    }

    fn trip(&mut self) -> Vec<String> {
        let legs = usize::try_from(self.rng.range(2, 3)).expect("small");
        let mut trip: Vec<String> = Vec::new();
        while trip.len() < legs {
            let segment = &self.hot[self.rng.index(self.hot.len())];
            if !trip.contains(segment) {
                trip.push(segment.clone());
            }
        }
        trip
    }

    async fn book(&mut self, client: &Client, hold: bool) {
        let request_id = format!("r{}", self.next_request);
        self.next_request += 1;
        let seats = u32::try_from(self.rng.range(1, 3)).expect("small");
        let hold_seconds = hold
            .then(|| u32::try_from(self.rng.range(1, u64::from(MAX_HOLD_SECONDS))).expect("small"));
        let params = BookParams {
            passenger: Passenger {
                name: "Caio Chaos".into(),
                document: self.ledger.document.clone(),
            },
            segments: self.trip(),
            seats: Some(seats),
            request_id: Some(request_id.clone()),
            hold_seconds,
        };
        self.ledger.operations += 1;
        let result = if hold {
            client.hold(params.clone()).await
        } else {
            client.create(params.clone()).await
        };
        let outcome = match result {
            Ok(booking) => {
                if booking.status == BookingStatus::Confirmed {
                    self.ledger.confirmed.insert(booking.id.clone());
                }
                Outcome::Booked(booking)
            }
            Err(error) => {
                self.note_error(&error);
                if is_uncertain(&error) {
                    Outcome::Unknown
                } else {
                    Outcome::Refused(kind_of(&error))
                }
            }
        };
        let attempt = Attempt {
            hold,
            params,
            outcome,
        };
        self.ledger.attempts.insert(request_id, attempt);
    }

    /// Returns a locator this worker booked, or `None` before its first.
    fn some_booking(&mut self, held: bool) -> Option<String> {
        let booked: Vec<&Booking> = self
            .ledger
            .attempts
            .values()
            .filter_map(|a| match &a.outcome {
                Outcome::Booked(b) if !held || b.status == BookingStatus::Held => Some(b),
                _ => None,
            })
            .collect();
        if booked.is_empty() {
            return None;
        }
        let index = self.rng.index(booked.len());
        Some(booked[index].id.clone())
    }

    async fn confirm(&mut self, client: &Client) {
        let Some(id) = self.some_booking(true) else {
            return;
        };
        self.ledger.operations += 1;
        match client.confirm(&id, &self.ledger.document).await {
            Ok(booking) => {
                assert_eq!(
                    booking.status,
                    BookingStatus::Confirmed,
                    "confirm returned {booking:?}"
                );
                self.ledger.confirmed.insert(id);
            }
            Err(error) => {
                self.note_error(&error);
                if is_uncertain(&error) {
                    self.ledger.unsure.insert(id);
                }
            }
        }
    }

    async fn cancel(&mut self, client: &Client) {
        let Some(id) = self.some_booking(false) else {
            return;
        };
        self.ledger.operations += 1;
        match client.cancel(&id, &self.ledger.document).await {
            Ok(booking) => {
                assert_eq!(
                    booking.status,
                    BookingStatus::Cancelled,
                    "cancel returned {booking:?}"
                );
                self.ledger.cancelled.insert(id);
            }
            Err(error) => {
                self.note_error(&error);
                if is_uncertain(&error) {
                    self.ledger.unsure.insert(id);
                }
            }
        }
    }
}

/// Fault-injection points of the router.
const ROUTER_POINTS: [&str; 3] = [
    "router.after_prepare_some",
    "router.after_prepare_all",
    "router.after_decide",
];
/// Fault-injection points of a shard.
const SHARD_POINTS: [&str; 3] = [
    "shard.after_prepare",
    "shard.after_decide",
    "shard.mid_finish",
];
/// Maximum wait for a process to reach its fault-injection point before it
/// is killed anyway.
const FAILPOINT_WAIT: Duration = Duration::from_secs(3);
/// Maximum wait for a restarted process to be ready, as the cluster allows.
const RESTART_WAIT: Duration = Duration::from_secs(30);

/// Counts of the kills the crash loop made.
#[derive(Debug, Default)]
struct Crashes {
    /// Kills at a random moment.
    random: usize,
    /// Kills at a fault-injection point that was reached.
    at_point: usize,
    /// Kills of a process whose point was not reached in time.
    missed_point: usize,
}

impl Crashes {
    fn total(&self) -> usize {
        self.random + self.at_point + self.missed_point
    }
}

/// Kills and restarts a random process until `duration` passes. Half the
/// kills come at a random moment. The other half restart the victim with a
/// random fault-injection point, and kill it again once it reaches it.
async fn crash_at_random(cluster: &mut Cluster, rng: &mut Rng, duration: Duration) -> Crashes {
    let end = Instant::now() + duration;
    let mut crashes = Crashes::default();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.range(200, 1200))).await;
        let victim = rng.index(SHARDS + 1);
        kill(cluster, victim);
        tokio::time::sleep(Duration::from_millis(rng.range(50, 700))).await;
        if rng.range(0, 1) == 0 {
            restart(cluster, victim).await;
            crashes.random += 1;
            continue;
        }

        let point = if victim == SHARDS {
            ROUTER_POINTS[rng.index(ROUTER_POINTS.len())]
        } else {
            SHARD_POINTS[rng.index(SHARD_POINTS.len())]
        };
        let needle = format!("failpoint {point} reached");
        let log = log_path(cluster, victim);
        let before = count_in_file(&log, &needle);
        set_failpoint(cluster, victim, Some(point));
        // A process stopped at its point may never look ready, so the wait
        // for the restart ends as soon as the point is reached.
        let reached = tokio::select! {
            _ = restart(cluster, victim) => {
                wait_for_point(&log, &needle, before, FAILPOINT_WAIT).await
            }
            reached = wait_for_point(&log, &needle, before, RESTART_WAIT) => reached,
        };
        if reached {
            crashes.at_point += 1;
        } else {
            crashes.missed_point += 1;
        }
        kill(cluster, victim);
        set_failpoint(cluster, victim, None);
        restart(cluster, victim).await;
    }
    crashes
}

/// Returns the log file of `victim`: a shard index, or [`SHARDS`] for the
/// router. The cluster writes each process's log beside the shards' data
/// folders, as `<name>.log`.
fn log_path(cluster: &Cluster, victim: usize) -> PathBuf {
    let name = if victim == SHARDS {
        "router".to_owned()
    } else {
        format!("shard-{victim}")
    };
    let data = cluster.data_dir(0);
    let folder = data.parent().expect("a shard's data folder has a parent");
    folder.join(format!("{name}.log"))
}

fn count_in_file(path: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.matches(needle).count()
}

/// Waits until `needle` occurs in the log more than `before` times;
/// returns whether it did within `timeout`.
async fn wait_for_point(log: &Path, needle: &str, before: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if count_in_file(log, needle) > before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn kill(cluster: &mut Cluster, victim: usize) {
    if victim == SHARDS {
        cluster.kill_router();
    } else {
        cluster.kill_shard(victim);
    }
}

async fn restart(cluster: &mut Cluster, victim: usize) {
    if victim == SHARDS {
        cluster.restart_router().await;
    } else {
        cluster.restart_shard(victim).await;
    }
}

/// Sets or removes the fault-injection point of `victim` for its next
/// start.
fn set_failpoint(cluster: &mut Cluster, victim: usize, point: Option<&str>) {
    match (victim == SHARDS, point) {
        (true, Some(point)) => cluster.set_router_env(failpoint::ENV, point),
        (true, None) => cluster.remove_router_env(failpoint::ENV),
        (false, Some(point)) => cluster.set_shard_env(victim, failpoint::ENV, point),
        (false, None) => cluster.remove_shard_env(victim, failpoint::ENV),
    }
}

/// Retries every attempt whose outcome is unknown with its request id
/// until the router returns a booking or a definite error.
async fn resolve_unknown(router: &str, ledger: &mut Ledger, seed: u64) {
    let client = connect(router)
        .await
        .expect("the router is up after the crashes");
    for (request_id, attempt) in ledger.attempts.iter_mut() {
        if !matches!(attempt.outcome, Outcome::Unknown) {
            continue;
        }
        for _ in 0..RESOLVE_TRIES {
            let result = if attempt.hold {
                client.hold(attempt.params.clone()).await
            } else {
                client.create(attempt.params.clone()).await
            };
            match result {
                Ok(booking) => {
                    if booking.status == BookingStatus::Confirmed {
                        ledger.confirmed.insert(booking.id.clone());
                    }
                    attempt.outcome = Outcome::Booked(booking);
                    break;
                }
                Err(error) if is_uncertain(&error) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    attempt.outcome = Outcome::Refused(kind_of(&error));
                    break;
                }
            }
        }
        assert!(
            !matches!(attempt.outcome, Outcome::Unknown),
            "seed {seed}: request {request_id} stayed in doubt after {RESOLVE_TRIES} retries"
        );
    }
}

/// Checks that the passenger's bookings are exactly those the worker's
/// request ids made, each once, and that no hold is left past its expiry.
async fn check_exactly_once(client: &Client, ledger: &Ledger, seed: u64) {
    let listed = client
        .bookings(&ledger.document)
        .await
        .expect("bookings.list failed");
    assert!(
        !listed.coverage.partial,
        "seed {seed}: bookings.list missed shards"
    );
    let listed_ids: Vec<&str> = listed.bookings.iter().map(|b| b.id.as_str()).collect();
    let unique: BTreeSet<&str> = listed_ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        listed_ids.len(),
        "seed {seed}: a locator is listed twice"
    );

    let booked: BTreeSet<&str> = ledger
        .attempts
        .values()
        .filter_map(|a| match &a.outcome {
            Outcome::Booked(b) => Some(b.id.as_str()),
            _ => None,
        })
        .collect();
    let booked_count = ledger
        .attempts
        .values()
        .filter(|a| matches!(a.outcome, Outcome::Booked(_)))
        .count();
    assert_eq!(
        booked.len(),
        booked_count,
        "seed {seed}: two request ids returned one locator"
    );
    assert_eq!(
        unique, booked,
        "seed {seed}: {} has bookings that no request id returned, or lacks some that one did",
        ledger.document
    );
    for booking in &listed.bookings {
        assert_ne!(
            booking.status,
            BookingStatus::Held,
            "seed {seed}: booking {} is still held past every hold's expiry",
            booking.id
        );
    }
}

/// Returns the bookings whose final status the ledger proves: confirmed
/// when a client saw it confirmed and never cancelled it, cancelled when a
/// client saw the cancel. Bookings with a confirm or cancel of unknown
/// outcome are left out.
fn expected_bookings(ledger: &Ledger) -> Vec<ExpectedBooking> {
    let mut expected = Vec::new();
    for locator in &ledger.confirmed {
        if ledger.unsure.contains(locator) || ledger.cancelled.contains(locator) {
            continue;
        }
        expected.push(ExpectedBooking {
            locator: locator.clone(),
            status: BookingStatus::Confirmed,
        });
    }
    for locator in &ledger.cancelled {
        expected.push(ExpectedBooking {
            locator: locator.clone(),
            status: BookingStatus::Cancelled,
        });
    }
    expected
}

/// Checks that every booking whose confirm or cancel had an unknown
/// outcome ended in a status that outcome allows.
async fn check_unsure(client: &Client, ledger: &Ledger, seed: u64) {
    for locator in &ledger.unsure {
        let booking = client
            .booking(locator, &ledger.document)
            .await
            .expect("bookings.get failed");
        assert_ne!(
            booking.status,
            BookingStatus::Held,
            "seed {seed}: booking {locator} is still held past its expiry"
        );
        if ledger.confirmed.contains(locator) {
            assert!(
                matches!(
                    booking.status,
                    BookingStatus::Confirmed | BookingStatus::Cancelled
                ),
                "seed {seed}: booking {locator} was seen confirmed but is {}",
                booking.status
            );
        }
    }
}

async fn run_seed(seed: u64) {
    println!("chaos seed {seed}");
    let mut rng = Rng(seed);
    let mut cluster = Cluster::builder(SHARDS)
        .shard_args(&["--prepare-timeout-ms", PREPARE_TIMEOUT_MS, "--days", "4"])
        .router_args(&["--prepare-timeout-ms", PREPARE_TIMEOUT_MS])
        .start()
        .await;
    let hot = hot_segments(&cluster.client().await).await;

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|index| {
            let worker = Worker {
                router: cluster.router_addr().to_owned(),
                rng: Rng(rng.next()),
                hot: hot.clone(),
                client: None,
                ledger: Ledger {
                    document: format!("CH-{seed:X}-{index}"),
                    ..Ledger::default()
                },
                next_request: 0,
            };
            tokio::spawn(worker.run(stop.clone()))
        })
        .collect();

    let crashes = crash_at_random(&mut cluster, &mut rng, chaos_duration()).await;
    stop.store(true, Ordering::Relaxed);
    let mut ledgers = Vec::new();
    for worker in workers {
        let ledger = tokio::time::timeout(CALL_TIMEOUT * 2, worker)
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: a worker did not stop"))
            .unwrap_or_else(|e| panic!("seed {seed}: a worker panicked: {e}"));
        ledgers.push(ledger);
    }
    let operations: usize = ledgers.iter().map(|l| l.operations).sum();
    let uncertain: usize = ledgers.iter().map(|l| l.uncertain).sum();
    println!("seed {seed}: {crashes:?}, {operations} operations, {uncertain} with unknown outcome");
    assert!(crashes.total() > 0, "seed {seed}: no process was killed");
    assert!(operations > 0, "seed {seed}: the workers sent nothing");

    for ledger in &mut ledgers {
        resolve_unknown(cluster.router_addr(), ledger, seed).await;
    }
    // Every hold runs out and every abandoned prepare passes its deadline.
    tokio::time::sleep(Duration::from_secs(u64::from(MAX_HOLD_SECONDS) + 1)).await;

    let confirmed: usize = ledgers.iter().map(|l| l.confirmed.len()).sum();
    let cancelled: usize = ledgers.iter().map(|l| l.cancelled.len()).sum();
    println!(
        "seed {seed}: attempts {:?}, {confirmed} seen confirmed, {cancelled} seen cancelled",
        outcome_counts(&ledgers)
    );
    let client = cluster.client().await;
    for ledger in &ledgers {
        check_exactly_once(&client, ledger, seed).await;
        check_unsure(&client, ledger, seed).await;
    }
    let options = audit::Options {
        in_doubt_after: IN_DOUBT_AFTER,
        expected: ledgers.iter().flat_map(expected_bookings).collect(),
    };
    let report = audit::check(cluster.router_addr(), &options)
        .await
        .expect("the audit could not read the cluster");
    assert!(report.is_clean(), "seed {seed}: {report}");
    println!("seed {seed}: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_crashes_keep_bookings_consistent() {
    for seed in seeds() {
        run_seed(seed).await;
    }
}
