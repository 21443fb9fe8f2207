//! The load: C connections with D tasks each, every task sending one
//! request at a time until the run ends.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trecho_client::{Client, RoutesParams, SearchParams};

use super::args::{BenchArgs, Workload};
use super::postgres::PgConnection;
use super::redis::RedisConnection;
use super::stats::{thousands, Tally};
use super::trecho;
use super::workload::{Catalog, Request, Rng};

/// How often the progress line is redrawn on a terminal.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How often a progress line is printed when standard error is not a
/// terminal, so that logs of long runs stay short.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// One connection to the server under test, shared by its tasks.
#[derive(Clone)]
pub(crate) enum Connection {
    Trecho(Client),
    Redis {
        connection: RedisConnection,
        sha: Arc<str>,
    },
    Postgres(Arc<PgConnection>),
}

/// When the run stops, and the counts that the progress line shows.
struct Control {
    deadline: Option<Instant>,
    limit: Option<u64>,
    issued: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    done: AtomicBool,
}

impl Control {
    /// Returns whether a task may send one more request, and counts it.
    fn may_send(&self) -> bool {
        if let Some(deadline) = self.deadline {
            if Instant::now() >= deadline {
                return false;
            }
        }
        match self.limit {
            Some(limit) => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            None => true,
        }
    }
}

/// The counts and locators of a finished load.
pub(crate) struct Outcome {
    pub(crate) tally: Tally,
    pub(crate) elapsed: Duration,
    /// Locators of the trecho bookings confirmed.
    pub(crate) locators: Vec<String>,
}

/// Runs the load over `connections` (each shared by `args.depth` tasks)
/// and returns the merged counts.
pub(crate) async fn run(
    args: &BenchArgs,
    catalog: Arc<Catalog>,
    connections: Vec<Connection>,
) -> Outcome {
    let started = Instant::now();
    let control = Arc::new(Control {
        deadline: args.run_time().map(|time| started + time),
        limit: args.requests,
        issued: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });

    let progress = tokio::spawn(show_progress(control.clone(), started));
    let mut tasks = Vec::new();
    for (c, connection) in connections.into_iter().enumerate() {
        for d in 0..args.depth as usize {
            let task = Task {
                connection: connection.clone(),
                catalog: catalog.clone(),
                control: control.clone(),
                workload: args.workload,
                seats: args.seats,
                document: format!("BENCH-{c}-{d}"),
                rng: Rng::new(args.seed ^ ((c as u64) << 20 | d as u64).wrapping_mul(0x9E37_79B9)),
                locators: Vec::new(),
                tally: Tally::default(),
            };
            tasks.push(tokio::spawn(task.run()));
        }
    }

    let mut tally = Tally::default();
    let mut locators = Vec::new();
    for task in tasks {
        match task.await {
            Ok(task) => {
                tally.merge(&task.tally);
                locators.extend(task.locators);
            }
            Err(error) => {
                tracing::error!(%error, "a load task panicked");
                tally.fail("bench_task_panicked");
            }
        }
    }

    let elapsed = started.elapsed();
    control.done.store(true, Ordering::Relaxed);
    let _ = progress.await;
    Outcome {
        tally,
        elapsed,
        locators,
    }
}

/// Prints throughput, counts and errors while the load runs: redrawn in
/// place on a terminal, as plain lines otherwise.
async fn show_progress(control: Arc<Control>, started: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let interval = if terminal {
        PROGRESS_INTERVAL
    } else {
        PROGRESS_LOG_INTERVAL
    };
    let mut last_count = 0;
    let mut last_time = started;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        ticker.tick().await;
        if control.done.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let count = control.answered.load(Ordering::Relaxed);
        let rate = (count - last_count) as f64 / (now - last_time).as_secs_f64();
        let line = format!(
            "{:>6.1} s  {:>9} requests/s  {} answered  {} errors",
            (now - started).as_secs_f64(),
            thousands(rate),
            count,
            control.failed.load(Ordering::Relaxed)
        );
        let mut stderr = std::io::stderr().lock();
        let _ = if terminal {
            write!(stderr, "\r{line}   ")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
        last_count = count;
        last_time = now;
    }
    if terminal {
        eprintln!();
    }
}

/// One request loop.
struct Task {
    connection: Connection,
    catalog: Arc<Catalog>,
    control: Arc<Control>,
    workload: Workload,
    seats: u32,
    document: String,
    rng: Rng,
    locators: Vec<String>,
    tally: Tally,
}

impl Task {
    async fn run(mut self) -> Task {
        while self.control.may_send() {
            let made = self.locators.len();
            let Some(request) = self.catalog.next(self.workload, &mut self.rng, made) else {
                break;
            };
            let sent = Instant::now();
            let result = self.send(request).await;
            self.tally.record(sent.elapsed());
            self.control.answered.fetch_add(1, Ordering::Relaxed);
            if let Err(kind) = result {
                self.control.failed.fetch_add(1, Ordering::Relaxed);
                self.tally.fail(&kind);
                if kind == "connection_lost" {
                    break;
                }
            } else {
                self.tally.succeeded += 1;
            }
        }
        self
    }

    async fn send(&mut self, request: Request) -> Result<(), String> {
        match request {
            Request::Book { segments } => self.book(segments).await,
            Request::Search { origin, date } => {
                let params = SearchParams {
                    origin: Some(origin),
                    destination: None,
                    date: Some(date),
                    limit: Some(20),
                };
                trecho::search(self.client()?, params).await
            }
            Request::Routes {
                origin,
                destination,
                date,
            } => {
                let params = RoutesParams {
                    origin,
                    destination,
                    date,
                    seats: None,
                    max_stops: Some(1),
                    limit: Some(5),
                };
                trecho::routes(self.client()?, params).await
            }
            Request::Get { booking } => {
                let locator = &self.locators[booking];
                trecho::get(self.client()?, locator, &self.document).await
            }
        }
    }

    fn client(&self) -> Result<&Client, String> {
        match &self.connection {
            Connection::Trecho(client) => Ok(client),
            _ => Err("unsupported_by_target".to_owned()),
        }
    }

    async fn book(&mut self, segments: Vec<usize>) -> Result<(), String> {
        let legs = segments.len() as u64;
        let catalog = &self.catalog;
        match &self.connection {
            Connection::Trecho(client) => {
                let ids = segments
                    .iter()
                    .map(|&i| catalog.segments[i].id.clone())
                    .collect();
                let booked = trecho::book(client, ids, self.seats, &self.document).await;
                let locator = booked.inspect_err(|kind| self.note_in_doubt(kind, legs))?;
                self.locators.push(locator);
            }
            Connection::Redis { connection, sha } => {
                let segment = &catalog.segments[segments[0]].id;
                let booked = connection
                    .book(sha, segment, self.seats, &self.document)
                    .await;
                booked.inspect_err(|kind| self.note_in_doubt(kind, legs))?;
            }
            Connection::Postgres(connection) => {
                let segment = &catalog.segments[segments[0]].id;
                let booked = connection.book(segment, self.seats, &self.document).await;
                booked.inspect_err(|kind| self.note_in_doubt(kind, legs))?;
            }
        }
        self.tally.bookings += 1;
        self.tally.seats += legs * u64::from(self.seats);
        Ok(())
    }

    /// Counts a failed booking whose outcome the reply does not tell.
    fn note_in_doubt(&mut self, kind: &str, legs: u64) {
        if matches!(kind, "outcome_unknown" | "timeout" | "connection_lost") {
            self.tally.in_doubt += 1;
            self.tally.seats_in_doubt += legs * u64::from(self.seats);
        }
    }
}
