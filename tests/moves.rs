//! Tests that move slots between running shards while clients book, hold,
//! confirm and cancel on them, and that kill the source, the target or the
//! router with SIGKILL at each step of a move. Afterwards every booking
//! whose status a client received is there exactly once with that status,
//! no seat is sold twice, and every slot has exactly one owner.

mod common;

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{book_params, days_ahead, kind_of, segments_by_shard, CALL_TIMEOUT};
use tokio::time::{timeout, Instant};
use trecho_client::audit::{self, ExpectedBooking};
use trecho_client::{AdminToken, Booking, BookingStatus, Client, ClientError, Segment};
use trecho_common::error::Error;
use trecho_common::hashing::slot;
use trecho_tests::Cluster;

/// The router's admin token in these tests.
const TOKEN: &str = "test-admin-token";

/// Maximum time for a move to finish once every process is back.
const MOVE_LIMIT: Duration = Duration::from_secs(30);

fn token() -> AdminToken {
    AdminToken(TOKEN.to_owned())
}

/// Starts `shards` shards and a router that accepts [`TOKEN`].
async fn start(shards: usize, shard_env: &[(usize, &str, &str)]) -> Cluster {
    let mut builder = Cluster::builder(shards).router_args(&["--admin-token", TOKEN]);
    for &(index, key, value) in shard_env {
        builder = builder.shard_env(index, key, value);
    }
    builder.start().await
}

/// Returns the first quarter of shard `shard`'s first slot range, and the
/// segments departing from the hubs in five days whose slot is in it.
async fn quarter_of(client: &Client, shard: u32) -> (RangeInclusive<u16>, Vec<Segment>) {
    let status = client.status().await.expect("cluster.status");
    let info = status
        .shards
        .iter()
        .find(|s| s.id == shard)
        .expect("the shard is in the map");
    let [first, last] = info.slots[0];
    let range = first..=first + (last - first) / 4;
    let by_shard = segments_by_shard(client, &days_ahead(5)).await;
    let inside: Vec<Segment> = by_shard[&shard]
        .iter()
        .filter(|segment| range.contains(&slot(&segment.id)))
        .cloned()
        .collect();
    assert!(
        inside.len() >= 6,
        "too few segments in {range:?}: {}",
        inside.len()
    );
    (range, inside)
}

/// Returns the shard that owns every slot of `range` in `cluster.status`,
/// or `None` while no single shard does or a move is in progress.
async fn owner_of(client: &Client, range: &RangeInclusive<u16>) -> Option<u32> {
    let status = client.status().await.ok()?;
    if status.shards.iter().any(|s| s.moving.is_some()) {
        return None;
    }
    let owns = |slots: &[[u16; 2]], s: u16| slots.iter().any(|[a, b]| (*a..=*b).contains(&s));
    status
        .shards
        .iter()
        .find(|shard| owns(&shard.slots, *range.start()) && owns(&shard.slots, *range.end()))
        .map(|shard| shard.id)
}

/// Waits until shard `target` owns `range` with no move in progress.
async fn wait_owned_by(router: &str, range: &RangeInclusive<u16>, target: u32) {
    let deadline = Instant::now() + MOVE_LIMIT;
    while Instant::now() < deadline {
        if let Ok(client) = Client::connect(router).await {
            if owner_of(&client, range).await == Some(target) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("shard {target} did not come to own slots {range:?} within {MOVE_LIMIT:?}");
}

/// Runs the audit with `expected` and fails with its report on any
/// violation, such as a slot with two owners or none.
async fn assert_audit_clean(cluster: &Cluster, expected: Vec<ExpectedBooking>) {
    let options = audit::Options {
        expected,
        ..audit::Options::default()
    };
    let report = audit::check(cluster.router_addr(), &options)
        .await
        .expect("the audit could not read the cluster");
    assert!(report.is_clean(), "{report}\n{}", cluster.logs());
}

/// Record of what one client saw: every booking whose latest status it
/// received, and the kinds of the errors it got.
#[derive(Default)]
struct Ledger {
    known: Vec<(Booking, BookingStatus)>,
    uncertain: usize,
    refused: Vec<String>,
}

impl Ledger {
    fn expected(&self) -> Vec<ExpectedBooking> {
        self.known
            .iter()
            .map(|(booking, status)| ExpectedBooking {
                locator: booking.id.clone(),
                status: *status,
            })
            .collect()
    }

    /// Records an error and returns whether the outcome of the request is
    /// uncertain. A lost reply or a timeout makes it uncertain, and the
    /// other errors changed nothing.
    fn note(&mut self, error: &ClientError) -> bool {
        let kind = error.kind().unwrap_or("connection").to_owned();
        let uncertain = matches!(kind.as_str(), "outcome_unknown" | "connection")
            || matches!(error, ClientError::Timeout { .. });
        if uncertain {
            self.uncertain += 1;
        }
        self.refused.push(kind);
        uncertain
    }
}

/// Books, holds, confirms and cancels single segments and trips on
/// `inside` (plus `outside` for trips) until `stop`.
async fn client_load(
    router: String,
    worker: usize,
    inside: Vec<String>,
    outside: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Ledger {
    let mut ledger = Ledger::default();
    let Ok(client) = Client::connect(&router).await else {
        return ledger;
    };
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let document = format!("MV{worker}-{round}");
        let segment = &inside[(worker + round) % inside.len()];
        let trip_with = &outside[(worker * 7 + round) % outside.len()];
        // A trip has its home either in the moving slots or on a shard
        // whose map of the moving slots goes stale with every move.
        let segments: Vec<&str> = match round % 4 {
            0 => vec![segment.as_str(), trip_with.as_str()],
            2 => vec![trip_with.as_str(), segment.as_str()],
            _ => vec![segment.as_str()],
        };
        let mut params = book_params(&document, &segments, 1);
        let hold = round.is_multiple_of(3);
        if hold {
            params.hold_seconds = Some(3600);
        }
        let result = if hold {
            client.hold(params).await
        } else {
            client.create(params).await
        };
        let booking = match result {
            Ok(booking) => booking,
            Err(error) => {
                ledger.note(&error);
                continue;
            }
        };
        let mut status = booking.status;
        if round.is_multiple_of(5) {
            match client.cancel(&booking.id, &document).await {
                Ok(after) => status = after.status,
                Err(error) => {
                    if ledger.note(&error) {
                        continue;
                    }
                }
            }
        } else if hold && round.is_multiple_of(2) {
            match client.confirm(&booking.id, &document).await {
                Ok(after) => status = after.status,
                Err(error) => {
                    if ledger.note(&error) {
                        continue;
                    }
                }
            }
        }
        ledger.known.push((booking, status));
    }
    ledger
}

/// Moves `range` to `to` through the router, retrying the errors that are
/// safe to retry, and returns the write pause of the move.
async fn move_range(cluster: &Cluster, range: &RangeInclusive<u16>, to: u32) -> u64 {
    let client = cluster.client().await;
    for _ in 0..20 {
        let moved = client
            .move_slots(&token(), *range.start(), *range.end(), to)
            .await;
        match moved {
            Ok(result) => {
                assert_eq!(result.to, to);
                return result.pause_ms;
            }
            Err(error) if error.trecho_error().is_some_and(Error::is_retryable) => {
                eprintln!("moving {range:?} to shard {to}: {error}, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!(
                "moving {range:?} to shard {to} failed: {error}\n{}",
                cluster.logs()
            ),
        }
    }
    panic!(
        "moving {range:?} to shard {to} kept failing\n{}",
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_under_load_lose_no_booking() {
    let mut cluster = start(3, &[]).await;
    // Half the clients book through a second router, whose map lags
    // behind each move that the first router runs.
    let second_router = cluster.start_router_from_seeds().await;
    let client = cluster.client().await;
    let (range, inside) = quarter_of(&client, 0).await;
    let by_shard = segments_by_shard(&client, &days_ahead(5)).await;
    let outside: Vec<String> = by_shard[&2].iter().map(|s| s.id.clone()).collect();
    let inside: Vec<String> = inside.iter().map(|s| s.id.clone()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let router = if worker % 2 == 0 {
                cluster.router_addr().to_owned()
            } else {
                second_router.clone()
            };
            tokio::spawn(client_load(
                router,
                worker,
                inside.clone(),
                outside.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut pauses = Vec::new();
    for to in [1, 2, 0] {
        pauses.push(move_range(&cluster, &range, to).await);
        assert_eq!(owner_of(&client, &range).await, Some(to));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut expected = Vec::new();
    let mut refused = Vec::new();
    for worker in workers {
        let ledger = worker.await.expect("a load task panicked");
        expected.extend(ledger.expected());
        refused.extend(ledger.refused);
    }
    let mut by_kind = std::collections::BTreeMap::new();
    for kind in &refused {
        *by_kind.entry(kind.as_str()).or_insert(0) += 1;
    }
    eprintln!(
        "moves paused writes for {pauses:?} ms; {} bookings known; rejections by kind: {by_kind:?}",
        expected.len()
    );
    assert!(expected.len() >= 50, "too little load: {}", expected.len());
    assert!(
        refused
            .iter()
            .all(|kind| kind != "internal" && kind != "connection"),
        "{refused:?}"
    );
    assert_audit_clean(&cluster, expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_shard_serves_stale_router() {
    let mut cluster = start(3, &[]).await;
    let second_router = cluster.start_router_from_seeds().await;
    let client = cluster.client().await;
    let (range, inside) = quarter_of(&client, 0).await;
    let before = client
        .create(book_params("ADD-0", &[&inside[0].id], 2))
        .await
        .expect("booking before the move");

    let added = cluster.add_shard().await;
    let result = client
        .add_shard(&token(), cluster.shard_addr(added as usize))
        .await
        .expect("admin.add_shard");
    assert_eq!(result.id, added);
    assert!(result.slots.is_empty());
    move_range(&cluster, &range, added).await;

    // The second router still routes the slots to shard 0, which rejects
    // the booking with `not_owner`. The router then learns of the new shard
    // and books there.
    let other = Client::connect(&second_router).await.expect("connect");
    let booked = other
        .create(book_params("ADD-1", &[&inside[1].id], 1))
        .await
        .expect("booking through the router with the older map");
    assert_eq!(
        other.booking(&before.id, "ADD-0").await.expect("get"),
        before
    );
    let seats = client.segment(&inside[0].id).await.expect("segments.get");
    assert_eq!(seats.seats_left, inside[0].seats_left - 2);
    let status = other.status().await.expect("cluster.status");
    let shard = status
        .shards
        .iter()
        .find(|s| s.id == added)
        .expect("listed");
    assert_eq!(shard.slots, [[*range.start(), *range.end()]]);
    assert!(shard.segments.unwrap_or(0) >= inside.len() as u64);
    let expected = [
        (before, BookingStatus::Confirmed),
        (booked, BookingStatus::Confirmed),
    ]
    .into_iter()
    .map(|(booking, status)| ExpectedBooking {
        locator: booking.id,
        status,
    })
    .collect();
    assert_audit_clean(&cluster, expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_methods_reject_wrong_token() {
    let cluster = start(2, &[]).await;
    let client = cluster.client().await;
    let wrong = AdminToken("not-the-token".to_owned());
    let refused = client.move_slots(&wrong, 0, 10, 1).await;
    assert_eq!(kind_of(&refused), "unauthorized");
    let refused = client.add_shard(&wrong, "127.0.0.1:9").await;
    assert_eq!(kind_of(&refused), "unauthorized");
    assert!(!cluster.log("router").contains("not-the-token"));
}

/// Makes a confirmed booking, a hold and a trip in the range before a
/// crash test's move, and returns them with their expected statuses.
async fn book_in_range(
    client: &Client,
    inside: &[Segment],
    outside: &Segment,
) -> Vec<ExpectedBooking> {
    let mut expected = Vec::new();
    let confirmed = client
        .create(book_params("CR-0", &[&inside[0].id], 2))
        .await
        .expect("booking");
    expected.push((confirmed, BookingStatus::Confirmed));
    let mut held = book_params("CR-1", &[&inside[1].id], 1);
    held.hold_seconds = Some(3600);
    expected.push((client.hold(held).await.expect("hold"), BookingStatus::Held));
    let trip = client
        .create(book_params("CR-2", &[&inside[2].id, &outside.id], 1))
        .await
        .expect("trip");
    expected.push((trip, BookingStatus::Confirmed));
    expected
        .into_iter()
        .map(|(booking, status)| ExpectedBooking {
            locator: booking.id,
            status,
        })
        .collect()
}

/// Starts a move from shard 0 to shard 1 and kills shard `victim`, and the
/// router too when `kill_router` is set, once the victim reaches the
/// failpoint `point`. Then starts them again without the failpoint and
/// checks that the move finishes with every booking in place.
async fn move_survives_kill_at(point: &str, victim: usize, kill_router: bool) {
    let mut cluster = start(3, &[(victim, "TRECHO_FAILPOINTS", point)]).await;
    let client = cluster.client().await;
    let (range, inside) = quarter_of(&client, 0).await;
    let by_shard = segments_by_shard(&client, &days_ahead(5)).await;
    let expected = book_in_range(&client, &inside, &by_shard[&2][0]).await;

    let router = cluster.router_addr().to_owned();
    let (first, last) = (*range.start(), *range.end());
    let mover = tokio::spawn(async move {
        let client = Client::connect(&router).await.expect("connect");
        client.move_slots(&token(), first, last, 1).await
    });
    let needle = format!("failpoint {point} reached");
    let name = format!("shard-{victim}");
    assert!(
        cluster.wait_for_log(&name, &needle, CALL_TIMEOUT).await,
        "{name} never reached {point}\n{}",
        cluster.logs()
    );
    if kill_router {
        cluster.kill_router();
    }
    cluster.kill_shard(victim);
    let _ = timeout(CALL_TIMEOUT, mover).await;
    cluster.remove_shard_env(victim, "TRECHO_FAILPOINTS");
    if kill_router {
        // Both down at once: the shard comes back first, and nothing
        // waits for the router to finish the move.
        cluster.restart_shard_only(victim);
        cluster.restart_router().await;
    } else {
        cluster.restart_shard(victim).await;
    }

    wait_owned_by(cluster.router_addr(), &range, 1).await;
    // Running the command again finds the move done.
    let client = cluster.client().await;
    let again = client
        .move_slots(&token(), first, last, 1)
        .await
        .expect("the repeated move");
    assert_eq!(again.rows, 0, "{again:?}");
    for booking in &expected {
        let document = match booking.status {
            BookingStatus::Held => "CR-1",
            _ if booking.locator == expected[0].locator => "CR-0",
            _ => "CR-2",
        };
        let found = client.booking(&booking.locator, document).await;
        assert_eq!(found.map(|b| b.status).ok(), Some(booking.status));
    }
    let seats = client.segment(&inside[0].id).await.expect("segments.get");
    assert_eq!(seats.seats_left, inside[0].seats_left - 2);
    assert_audit_clean(&cluster, expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_survives_source_kill_after_pause() {
    move_survives_kill_at("shard.after_move_paused", 0, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_survives_target_kill_after_import() {
    move_survives_kill_at("shard.after_import", 1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_survives_source_kill_before_hand_off() {
    move_survives_kill_at("shard.before_hand_off", 0, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_survives_router_and_source_kill() {
    move_survives_kill_at("shard.after_move_paused", 0, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_survives_target_kill_before_import() {
    move_survives_kill_at("shard.before_import", 1, false).await;
}
