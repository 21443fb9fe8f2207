//! A shard killed with SIGKILL: requests for its segments fail fast with
//! shard_unavailable while the other shards keep booking, and after a
//! restart every booking confirmed before the kill is still there with its
//! seats counted once.

mod common;

use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use trecho_client::audit::{self, ExpectedBooking};
use trecho_client::{Booking, BookingStatus, Client, ClientError, SearchParams};
use trecho_common::time::Date;
use trecho_tests::start_cluster;

use common::{book_params, days_ahead, kind_of, segments_by_shard, CALL_TIMEOUT};

/// The shard the tests kill.
const VICTIM: u32 = 1;

/// Maximum time a request for a dead shard's data may take to fail: the
/// contract allows about a second, plus margin for a loaded test machine.
const FAIL_FAST: Duration = Duration::from_millis(1500);

/// Runs the cluster audit and fails with its report on any violation.
async fn assert_audit_clean(router: &str, expected: Vec<ExpectedBooking>) {
    let options = audit::Options {
        expected,
        ..audit::Options::default()
    };
    let report = audit::check(router, &options)
        .await
        .expect("the audit could not read the cluster");
    assert!(report.is_clean(), "{report}");
}

/// Returns `segments.get` of every id, in order.
async fn seat_counts(client: &Client, ids: &[String]) -> Vec<u32> {
    let mut counts = Vec::new();
    for id in ids {
        let segment = client.segment(id).await.expect("segments.get failed");
        counts.push(segment.seats_left);
    }
    counts
}

/// Calls `request` and checks that it fails with shard_unavailable naming
/// the victim within [`FAIL_FAST`].
async fn assert_unavailable_fast<T: std::fmt::Debug>(
    what: &str,
    request: impl std::future::Future<Output = Result<T, ClientError>>,
) {
    let started = Instant::now();
    let result = timeout(CALL_TIMEOUT, request)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {CALL_TIMEOUT:?}"));
    let elapsed = started.elapsed();
    assert_eq!(kind_of(&result), "shard_unavailable", "{what}");
    let data = result.unwrap_err().rpc().and_then(|e| e.data.clone());
    let data = data.unwrap_or_default();
    assert_eq!(data["shard"], VICTIM, "{what}: {data}");
    assert!(data["retry_after_ms"].is_u64(), "{what}: {data}");
    assert!(elapsed <= FAIL_FAST, "{what} took {elapsed:?} to fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_shard_fails_fast_while_others_keep_booking() {
    let mut cluster = start_cluster(3).await;
    let client = cluster.client().await;
    let date = days_ahead(5);
    let by_shard = segments_by_shard(&client, &date).await;
    let on = |shard: u32, index: usize| by_shard[&shard][index].id.clone();
    let victim_segment = on(VICTIM, 0);

    // Before the kill: single-segment bookings on every shard, and trips
    // with the victim as home and as a participant.
    let plans: Vec<(String, Vec<String>)> = vec![
        ("PRE-0".into(), vec![on(0, 0)]),
        ("PRE-1".into(), vec![victim_segment.clone()]),
        ("PRE-2".into(), vec![on(2, 0)]),
        ("PRE-3".into(), vec![on(VICTIM, 1), on(0, 1), on(2, 1)]),
        ("PRE-4".into(), vec![on(2, 1), on(VICTIM, 1)]),
    ];
    let mut before = Vec::new();
    for (document, segments) in &plans {
        let ids: Vec<&str> = segments.iter().map(String::as_str).collect();
        let booking = client
            .create(book_params(document, &ids, 2))
            .await
            .unwrap_or_else(|e| panic!("booking for {document} failed: {e}"));
        before.push(booking);
    }
    let mut held_params = book_params("PRE-5", &[&victim_segment], 1);
    held_params.hold_seconds = Some(3600);
    before.push(client.hold(held_params).await.expect("hold failed"));
    let mut touched: Vec<String> = plans.iter().flat_map(|(_, s)| s.clone()).collect();
    touched.sort();
    touched.dedup();
    assert!(audit::wait_settled(cluster.router_addr(), CALL_TIMEOUT)
        .await
        .expect("audit"));
    let counts_before = seat_counts(&client, &touched).await;

    cluster.kill_shard(VICTIM as usize);

    // The dead shard's data fails fast, reads and writes alike.
    assert_unavailable_fast("segments.get", client.segment(&victim_segment)).await;
    assert_unavailable_fast(
        "bookings.create",
        client.create(book_params("DURING-1", &[&victim_segment], 1)),
    )
    .await;
    assert_unavailable_fast("bookings.get", client.booking(&before[1].id, "PRE-1")).await;
    assert_unavailable_fast(
        "a trip through the dead shard",
        client.create(book_params("DURING-2", &[&on(0, 2), &on(VICTIM, 2)], 1)),
    )
    .await;

    // The other shards keep booking and serving reads.
    let mut during = Vec::new();
    for shard in [0, 2] {
        for index in 3..6 {
            let document = format!("DURING-{shard}-{index}");
            let booking = client
                .create(book_params(&document, &[&on(shard, index)], 1))
                .await
                .unwrap_or_else(|e| panic!("booking on live shard {shard} failed: {e}"));
            during.push(booking);
        }
    }
    let trip = client
        .create(book_params("DURING-3", &[&on(0, 6), &on(2, 6)], 1))
        .await
        .expect("a trip over the live shards failed");
    during.push(trip);
    let fetched = client.booking(&before[0].id, "PRE-0").await.expect("get");
    assert_eq!(fetched, before[0]);
    let search = client
        .search(SearchParams {
            origin: Some("GRU".into()),
            destination: None,
            date: Some(Date::parse(&date).expect("a date")),
            limit: Some(1000),
        })
        .await
        .expect("search failed");
    assert!(
        search.coverage.partial,
        "a search without shard 1 is partial"
    );
    assert_eq!(search.coverage.unavailable_shards, vec![VICTIM]);
    assert!(
        !search.segments.is_empty(),
        "the live shards' segments are listed"
    );
    let status = client.status().await.expect("cluster.status failed");
    for shard in &status.shards {
        assert_eq!(shard.healthy, shard.id != VICTIM, "{shard:?}");
    }

    cluster.restart_shard(VICTIM as usize).await;

    // Every booking made before the kill is back, unchanged, and the
    // seats are counted once.
    for (booking, document) in before
        .iter()
        .zip(["PRE-0", "PRE-1", "PRE-2", "PRE-3", "PRE-4", "PRE-5"])
    {
        let fetched = client
            .booking(&booking.id, document)
            .await
            .unwrap_or_else(|e| panic!("{} lost after the restart: {e}", booking.id));
        assert_eq!(&fetched, booking);
    }
    assert_eq!(seat_counts(&client, &touched).await, counts_before);
    let listed = client
        .bookings("PRE-5")
        .await
        .expect("bookings.list failed");
    assert!(!listed.coverage.partial);
    assert_eq!(listed.bookings, vec![before[5].clone()]);
    // The restarted shard books again.
    client
        .create(book_params("AFTER-1", &[&victim_segment], 1))
        .await
        .expect("booking on the restarted shard failed");

    let expected = before
        .iter()
        .chain(&during)
        .map(|booking| ExpectedBooking {
            locator: booking.id.clone(),
            status: booking.status,
        })
        .collect();
    assert_audit_clean(cluster.router_addr(), expected).await;
}

/// Pause after each booking of the load, so that the segments cannot sell
/// out before the kill: 6 workers at most 100 bookings a second each for
/// 0.7 s stay below the seats of 8 segments.
const LOAD_PAUSE: Duration = Duration::from_millis(10);

/// What one booking client saw during the load.
#[derive(Default)]
struct Seen {
    confirmed: Vec<Booking>,
    /// Request ids answered with outcome_unknown.
    unknown: Vec<(String, String)>,
}

/// Books one seat at a time on `segments`, each booking with its own
/// request id and [`LOAD_PAUSE`] after it, until `stop` passes; stops early
/// when an outcome is unknown.
fn book_in_a_loop(
    client: Client,
    worker: usize,
    segments: Vec<String>,
    stop: Instant,
) -> JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let mut count = 0;
        while Instant::now() < stop {
            let segment = &segments[count % segments.len()];
            let request_id = format!("w{worker}-{count}");
            let mut params = book_params(&format!("LOAD-{worker}"), &[segment], 1);
            params.request_id = Some(request_id.clone());
            count += 1;
            match timeout(CALL_TIMEOUT, client.create(params)).await {
                Ok(Ok(booking)) => {
                    seen.confirmed.push(booking);
                    tokio::time::sleep(LOAD_PAUSE).await;
                }
                Ok(Err(error)) if error.kind() == Some("shard_unavailable") => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Err(error)) if error.kind() == Some("sold_out") => {
                    panic!("a segment sold out during the load: {error}")
                }
                // The shard died with the booking in flight: only a retry
                // with the same request id can tell whether it was made.
                Ok(Err(error)) if error.kind() == Some("outcome_unknown") => {
                    seen.unknown.push((format!("LOAD-{worker}"), request_id));
                    return seen;
                }
                Ok(Err(error)) => panic!("{request_id} failed: {error}"),
                Err(_) => panic!("{request_id} got no answer within {CALL_TIMEOUT:?}"),
            }
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_confirmed_before_a_kill_survive_it() {
    const WORKERS: usize = 6;
    let mut cluster = start_cluster(3).await;
    let client = cluster.client().await;
    let date = days_ahead(6);
    let by_shard = segments_by_shard(&client, &date).await;
    let segments: Vec<String> = by_shard[&VICTIM][..8]
        .iter()
        .map(|s| s.id.clone())
        .collect();
    let capacity: FxHashMap<String, u32> = by_shard[&VICTIM][..8]
        .iter()
        .map(|s| (s.id.clone(), s.capacity))
        .collect();

    // Load on the victim's segments, each worker on its own connection,
    // and the kill in the middle of it.
    let stop = Instant::now() + Duration::from_secs(3);
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let connection = cluster.client().await;
        workers.push(book_in_a_loop(connection, worker, segments.clone(), stop));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.kill_shard(VICTIM as usize);
    let mut seen = Vec::new();
    for worker in workers {
        seen.push(worker.await.expect("a worker panicked"));
    }
    let confirmed: Vec<Booking> = seen.iter().flat_map(|s| s.confirmed.clone()).collect();
    let unknown: Vec<(String, String)> = seen.iter().flat_map(|s| s.unknown.clone()).collect();
    assert!(
        !confirmed.is_empty(),
        "no booking was confirmed before the kill"
    );

    cluster.restart_shard(VICTIM as usize).await;
    let client = cluster.client().await;

    // Every confirmation a client received is on disk.
    for booking in &confirmed {
        let fetched = client
            .booking(&booking.id, &booking.passenger.document)
            .await
            .unwrap_or_else(|e| panic!("confirmed booking {} lost: {e}", booking.id));
        assert_eq!(&fetched, booking);
    }
    // A retry with the same request id settles each unknown outcome: it
    // returns the booking if the first attempt made it, or makes it now.
    let mut all = confirmed.clone();
    for (document, request_id) in &unknown {
        let worker: usize = document["LOAD-".len()..].parse().expect("a worker number");
        let count: usize = request_id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a count");
        let mut params = book_params(document, &[&segments[count % segments.len()]], 1);
        params.request_id = Some(request_id.clone());
        let booking = client
            .create(params)
            .await
            .unwrap_or_else(|e| panic!("retry of {request_id} for worker {worker} failed: {e}"));
        all.push(booking);
    }
    // Each booking is counted once: seats taken equal the bookings made.
    for segment in &segments {
        let booked: u32 = all
            .iter()
            .filter(|b| b.segments.contains(segment))
            .map(|b| b.seats)
            .sum();
        let left = client
            .segment(segment)
            .await
            .expect("segments.get failed")
            .seats_left;
        assert_eq!(left, capacity[segment] - booked, "{segment}");
    }
    let mut listed = 0;
    for worker in 0..WORKERS {
        let list = client
            .bookings(&format!("LOAD-{worker}"))
            .await
            .expect("list failed");
        listed += list.bookings.len();
    }
    assert_eq!(
        listed,
        all.len(),
        "bookings listed differ from bookings made"
    );
    let expected = all
        .iter()
        .map(|booking| ExpectedBooking {
            locator: booking.id.clone(),
            status: BookingStatus::Confirmed,
        })
        .collect();
    assert_audit_clean(cluster.router_addr(), expected).await;
}
