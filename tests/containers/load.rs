//! The load: concurrent clients that book, hold, confirm and cancel, and
//! record every call and every booking attempt for the checks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio::time::Instant;
use trecho_client::{
    BookParams, Booking, BookingStatus, Client, ClientError, Passenger, SearchParams,
};
use trecho_common::shardmap::{ShardInfo, ShardMap};
use trecho_common::time::Date;

use crate::client::connect;

/// Pause between two operations of one client, so that the load stays
/// below what two cores serve and segments do not sell out.
const THINK_TIME: Duration = Duration::from_millis(25);
/// Segments picked on each shard.
const SEGMENTS_PER_SHARD: usize = 120;

/// The segments the load books, grouped by the shard that owns them.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    pub(crate) map: ShardMap,
    by_shard: Vec<Vec<String>>,
}

impl Catalog {
    /// Reads the shard map and picks segments on every shard that depart in
    /// a few days, so that sales stay open while the tests run.
    pub(crate) async fn load(client: &Client) -> anyhow::Result<Catalog> {
        let status = client
            .status()
            .await
            .context("cannot read cluster.status")?;
        let shards = status.shards.into_iter().map(|shard| ShardInfo {
            id: shard.id,
            address: shard.address,
            slots: shard.slots,
        });
        let map = ShardMap::new(status.map_version, shards.collect())?;
        let mut by_shard = vec![Vec::new(); map.shards.len()];
        let airports = client.airports().await?.airports;
        let dates = [3, 4, 5].map(|days| Date::today_utc().add_days(days));
        'search: for airport in &airports {
            for date in dates {
                let params = SearchParams {
                    origin: Some(airport.code.clone()),
                    destination: None,
                    date: Some(date),
                    limit: Some(200),
                };
                for segment in client.search(params).await?.segments {
                    let index = shard_index(&map, map.owner_of(&segment.id).id);
                    if segment.seats_left >= 100 && by_shard[index].len() < SEGMENTS_PER_SHARD {
                        by_shard[index].push(segment.id);
                    }
                }
                if by_shard.iter().all(|s| s.len() >= SEGMENTS_PER_SHARD) {
                    break 'search;
                }
            }
        }
        for (index, segments) in by_shard.iter().enumerate() {
            anyhow::ensure!(
                segments.len() >= 4,
                "shard {} has only {} segments with 100 seats left in the next days; \
                 start the cluster on fresh volumes",
                map.shards[index].id,
                segments.len()
            );
        }
        Ok(Catalog { map, by_shard })
    }

    /// Returns the ids of every shard.
    pub(crate) fn shard_ids(&self) -> Vec<u32> {
        self.map.shards.iter().map(|shard| shard.id).collect()
    }

    /// Returns the shard that owns `segment`.
    pub(crate) fn owner(&self, segment: &str) -> u32 {
        self.map.owner_of(segment).id
    }

    fn pick(&self, shard_index: usize, rng: &mut Rng) -> String {
        let segments = &self.by_shard[shard_index];
        segments[rng.below(segments.len())].clone()
    }
}

fn shard_index(map: &ShardMap, id: u32) -> usize {
    map.shards
        .iter()
        .position(|shard| shard.id == id)
        .expect("owner_of returns a shard of the map")
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Outcome {
    Ok,
    /// The router returned an error with this `data.kind` (or code).
    Rejected(String),
    /// The connection broke or could not be opened.
    ConnectionLost,
    /// No response within the client's timeout.
    Timeout,
}

impl Outcome {
    fn of(result: &Result<Booking, ClientError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(ClientError::Rpc(rpc)) => Outcome::Rejected(
                rpc.kind()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("code {}", rpc.code)),
            ),
            Err(ClientError::Timeout { .. }) => Outcome::Timeout,
            Err(_) => Outcome::ConnectionLost,
        }
    }

    /// Returns whether the call may have changed something that the caller
    /// cannot know without asking again.
    fn is_uncertain(&self) -> bool {
        match self {
            Outcome::Ok => false,
            Outcome::Rejected(kind) => kind == "outcome_unknown",
            Outcome::ConnectionLost | Outcome::Timeout => true,
        }
    }

    /// Returns the label used in the reports.
    pub(crate) fn label(&self) -> &str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Rejected(kind) => kind,
            Outcome::ConnectionLost => "connection_lost",
            Outcome::Timeout => "timeout",
        }
    }
}

/// One call to the router, as the load saw it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) started: Instant,
    pub(crate) elapsed: Duration,
    /// Shards the call needs: those of the booking's segments, and for a
    /// booking with a request id the shard of the passenger's document.
    pub(crate) shards: Vec<u32>,
    pub(crate) outcome: Outcome,
}

impl Call {
    pub(crate) fn ended(&self) -> Instant {
        self.started + self.elapsed
    }

    pub(crate) fn touches(&self, shard: u32) -> bool {
        self.shards.contains(&shard)
    }
}

/// One booking the load tried to make, and what the client knows of it.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) params: BookParams,
    pub(crate) hold: bool,
    /// The booking, once a response returned it.
    pub(crate) locator: Option<String>,
    /// Statuses the booking may have now; empty when a response showed that
    /// nothing was booked.
    pub(crate) allowed: Vec<BookingStatus>,
    /// Whether the first call's outcome is unknown, so the check retries
    /// it with the same request id.
    pub(crate) uncertain: bool,
}

impl Attempt {
    pub(crate) fn document(&self) -> &str {
        &self.params.passenger.document
    }
}

/// What one run of the load recorded.
#[derive(Debug, Default)]
pub(crate) struct Records {
    pub(crate) calls: Vec<Call>,
    pub(crate) attempts: Vec<Attempt>,
}

/// The mix of operations.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mix {
    /// Mostly single-shard bookings, a fifth multi-segment trips.
    Mixed,
    /// Mostly multi-segment trips across shards.
    Trips,
}

/// A running load.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    trips: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
    records: Arc<Mutex<Records>>,
}

impl Load {
    /// Starts `clients` clients against `router`. Documents start with
    /// `prefix`, so every run books for passengers of its own.
    pub(crate) fn start(
        router: &str,
        catalog: &Catalog,
        clients: usize,
        mix: Mix,
        prefix: &str,
        seed: u64,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let trips = Arc::new(AtomicUsize::new(0));
        let records = Arc::new(Mutex::new(Records::default()));
        let mut tasks = JoinSet::new();
        for index in 0..clients {
            let worker = Worker {
                router: router.to_owned(),
                catalog: catalog.clone(),
                mix,
                prefix: format!("{prefix}{index}"),
                rng: Rng::new(seed.wrapping_add(index as u64 * 7919)),
                stop: stop.clone(),
                trips: trips.clone(),
                records: records.clone(),
                lost: false,
            };
            tasks.spawn(worker.run());
        }
        Load {
            stop,
            trips,
            tasks,
            records,
        }
    }

    /// Returns how many calls have succeeded so far on a shard (for
    /// `Some`) or on any shard.
    pub(crate) fn successes_since(&self, since: Instant, shard: Option<u32>) -> usize {
        let records = self
            .records
            .lock()
            .expect("no worker panics holding the lock");
        records
            .calls
            .iter()
            .filter(|call| call.started >= since && call.outcome == Outcome::Ok)
            .filter(|call| match shard {
                Some(id) => call.touches(id),
                None => true,
            })
            .count()
    }

    /// Returns how many multi-segment bookings wait for their response now.
    pub(crate) fn trips_in_flight(&self) -> usize {
        self.trips.load(Ordering::Relaxed)
    }

    /// Stops every client after its current operation and returns the
    /// records.
    pub(crate) async fn stop(mut self) -> Records {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        let mut records = self.records.lock().expect("workers have ended");
        std::mem::take(&mut *records)
    }
}

struct Worker {
    router: String,
    catalog: Catalog,
    mix: Mix,
    prefix: String,
    rng: Rng,
    stop: Arc<AtomicBool>,
    trips: Arc<AtomicUsize>,
    records: Arc<Mutex<Records>>,
    /// Set when a call found the connection broken, so the next operation
    /// connects again.
    lost: bool,
}

impl Worker {
    async fn run(mut self) {
        let mut client = None;
        let mut serial = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let Some(current) = self.connected(&mut client).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            serial += 1;
            let attempt = self.operate(&current, serial).await;
            self.records
                .lock()
                .expect("no worker panics holding the lock")
                .attempts
                .push(attempt);
            if self.lost {
                client = None;
                self.lost = false;
            }
            tokio::time::sleep(THINK_TIME).await;
        }
    }

    /// Returns the client, connecting again after the connection broke.
    async fn connected(&self, client: &mut Option<Client>) -> Option<Client> {
        if client.is_none() {
            *client = connect(&self.router).await.ok();
        }
        client.clone()
    }

    /// Makes one booking, then maybe confirms or cancels it.
    async fn operate(&mut self, client: &Client, serial: u64) -> Attempt {
        let hold = self.rng.below(3) == 0;
        let params = self.booking_params(serial, hold);
        let shards: Vec<u32> = params
            .segments
            .iter()
            .map(|s| self.catalog.owner(s))
            .collect();

        let is_trip = params.segments.len() > 1;
        if is_trip {
            self.trips.fetch_add(1, Ordering::Relaxed);
        }
        // A booking with a request id also needs the shard of the
        // passenger's document, which claims the request id.
        let mut needed = shards.clone();
        let document_shard = self.catalog.owner(&params.passenger.document);
        if params.request_id.is_some() && !needed.contains(&document_shard) {
            needed.push(document_shard);
        }
        let result = if hold {
            self.timed(&needed, client.hold(params.clone())).await
        } else {
            self.timed(&needed, client.create(params.clone())).await
        };
        if is_trip {
            self.trips.fetch_sub(1, Ordering::Relaxed);
        }

        let mut attempt = Attempt {
            params,
            hold,
            locator: None,
            allowed: Vec::new(),
            uncertain: false,
        };
        match result {
            Ok(booking) => {
                attempt.locator = Some(booking.id);
                attempt.allowed = vec![booking.status];
                self.follow_up(client, &shards, &mut attempt).await;
            }
            Err(outcome) => attempt.uncertain = outcome.is_uncertain(),
        }
        attempt
    }

    /// Builds a booking request for a passenger of its own, so that the
    /// checks can list that passenger's bookings.
    fn booking_params(&mut self, serial: u64, hold: bool) -> BookParams {
        BookParams {
            passenger: Passenger {
                name: format!("Load Passenger {serial}"),
                document: format!("{}-{serial}", self.prefix),
            },
            segments: self.choose_segments(),
            seats: Some(1 + self.rng.below(2) as u32),
            request_id: Some(format!("r{serial}")),
            hold_seconds: hold.then_some(600),
        }
    }

    /// Confirms a hold, and cancels about a quarter of the bookings.
    async fn follow_up(&mut self, client: &Client, shards: &[u32], attempt: &mut Attempt) {
        let locator = attempt.locator.clone().expect("called after a booking");
        let document = attempt.document().to_owned();
        if attempt.hold && self.rng.below(4) != 0 {
            let result = self
                .timed(shards, client.confirm(&locator, &document))
                .await;
            attempt.allowed = after_confirm(result.map(|b| b.status));
        }
        if self.rng.below(4) == 0 {
            let before = attempt.allowed.clone();
            let result = self.timed(shards, client.cancel(&locator, &document)).await;
            attempt.allowed = match result {
                Ok(booking) => vec![booking.status],
                Err(outcome) if outcome.is_uncertain() => {
                    [before, vec![BookingStatus::Cancelled]].concat()
                }
                Err(_) => before,
            };
        }
    }

    /// Runs one call and records it.
    async fn timed(
        &mut self,
        shards: &[u32],
        call: impl std::future::Future<Output = Result<Booking, ClientError>>,
    ) -> Result<Booking, Outcome> {
        let started = Instant::now();
        let result = call.await;
        let outcome = Outcome::of(&result);
        self.lost |= outcome == Outcome::ConnectionLost;
        let mut records = self
            .records
            .lock()
            .expect("no worker panics holding the lock");
        records.calls.push(Call {
            started,
            elapsed: started.elapsed(),
            shards: shards.to_vec(),
            outcome: outcome.clone(),
        });
        result.map_err(|_| outcome)
    }

    /// Picks one segment, or two or three on distinct shards for a trip.
    fn choose_segments(&mut self) -> Vec<String> {
        let shard_count = self.catalog.by_shard.len();
        let trip_share = match self.mix {
            Mix::Mixed => 5,
            Mix::Trips => 1,
        };
        let legs = if shard_count > 1 && self.rng.below(trip_share) == 0 {
            2 + self.rng.below(shard_count.min(3) - 1)
        } else {
            1
        };
        let first = self.rng.below(shard_count);
        (0..legs)
            .map(|leg| {
                self.catalog
                    .pick((first + leg) % shard_count, &mut self.rng)
            })
            .collect()
    }
}

/// Returns the statuses a hold may have after a confirm whose result is
/// `result`.
fn after_confirm(result: Result<BookingStatus, Outcome>) -> Vec<BookingStatus> {
    match result {
        Ok(status) => vec![status],
        Err(outcome) if outcome.is_uncertain() => {
            vec![BookingStatus::Held, BookingStatus::Confirmed]
        }
        Err(_) => vec![BookingStatus::Held],
    }
}

/// A small xorshift generator, so that runs with the same seed choose the
/// same operations.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}
