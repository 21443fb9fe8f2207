//! Crash tests of the multi-shard booking: at each fault-injection point of
//! the two-phase commit, the process that reached it is SIGKILLed and
//! started again without the point. After the prepare deadline the audit
//! must find every segment's taken seats equal to its bookings' seats and
//! nothing in doubt, and a retry with the same request id must give
//! exactly one booking.

mod common;

use std::time::Duration;

use trecho_client::audit::{self, ExpectedBooking};
use trecho_client::SearchParams;
use trecho_client::{BookParams, Booking, BookingStatus, Client, ClientError, Passenger};
use trecho_common::failpoint;
use trecho_common::time::Date;
use trecho_tests::{Cluster, ClusterBuilder};

/// Prepare deadline of the test clusters, in milliseconds, short so that
/// abandoned transactions resolve quickly.
const PREPARE_TIMEOUT_MS: &str = "1000";
/// How long the audit waits for transactions to settle before it reports
/// them as in doubt: the prepare deadline plus the resolve retries.
const IN_DOUBT_AFTER: Duration = Duration::from_secs(10);
/// How long a process may take to reach its fault-injection point.
const FAILPOINT_WAIT: Duration = Duration::from_secs(15);
/// Maximum wait for a call that the test expects to end.
const CALL_WAIT: Duration = Duration::from_secs(15);
const SEATS: u32 = 2;
const DOCUMENT: &str = "TP-1234567";

fn test_cluster(shards: usize) -> ClusterBuilder {
    Cluster::builder(shards)
        .shard_args(&["--prepare-timeout-ms", PREPARE_TIMEOUT_MS, "--days", "4"])
        .router_args(&["--prepare-timeout-ms", PREPARE_TIMEOUT_MS])
}

/// Returns a trip with one segment on each of `shards`, in that order, all
/// departing on one day. The first segment's shard is the home shard.
async fn trip_across(client: &Client, shards: &[usize]) -> Vec<String> {
    let by_shard = segments_by_shard(client).await;
    shards
        .iter()
        .map(|&shard| {
            by_shard[shard]
                .first()
                .unwrap_or_else(|| panic!("no segment out of GRU lives on shard {shard}"))
                .clone()
        })
        .collect()
}

/// Returns the segments out of GRU two days from now, grouped by the id of
/// the shard that owns them.
async fn segments_by_shard(client: &Client) -> Vec<Vec<String>> {
    let status = client.status().await.expect("cluster.status failed");
    let params = SearchParams {
        origin: Some("GRU".into()),
        destination: None,
        date: Some(Date::today_utc().add_days(2)),
        limit: Some(1000),
    };
    let found = client.search(params).await.expect("segments.search failed");
    let mut by_shard = vec![Vec::new(); status.shards.len()];
    for segment in found.segments {
        let owner = common::shard_of(&status, &segment.id);
        let index = usize::try_from(owner).expect("shard ids are small");
        by_shard[index].push(segment.id);
    }
    by_shard
}

fn params(segments: &[String], request_id: &str) -> BookParams {
    BookParams {
        passenger: Passenger {
            name: "Rita Two Phase".into(),
            document: DOCUMENT.into(),
        },
        segments: segments.to_vec(),
        seats: Some(SEATS),
        request_id: Some(request_id.into()),
        hold_seconds: None,
    }
}

async fn seats_left(client: &Client, segments: &[String]) -> Vec<u32> {
    let mut left = Vec::new();
    for id in segments {
        let segment = client.segment(id).await.expect("segments.get failed");
        left.push(segment.seats_left);
    }
    left
}

/// Starts `bookings.create` in a task of its own, so the test can kill the
/// process it waits on.
fn spawn_create(
    client: &Client,
    params: &BookParams,
) -> tokio::task::JoinHandle<Result<Booking, ClientError>> {
    let client = client.clone();
    let params = params.clone();
    tokio::spawn(async move { client.create(params).await })
}

async fn join_call(
    call: tokio::task::JoinHandle<Result<Booking, ClientError>>,
) -> Result<Booking, ClientError> {
    tokio::time::timeout(CALL_WAIT, call)
        .await
        .expect("the first attempt did not end after its process was killed")
        .expect("the booking task panicked")
}

async fn wait_for_failpoint(cluster: &Cluster, process: &str, point: &str) {
    let needle = format!("failpoint {point} reached");
    let reached = cluster.wait_for_log(process, &needle, FAILPOINT_WAIT).await;
    assert!(
        reached,
        "{process} never reached {point}\n{}",
        cluster.logs()
    );
}

/// Audits the cluster, waiting up to [`IN_DOUBT_AFTER`] for transactions
/// to settle, and fails on any violation.
async fn assert_audit_clean(cluster: &Cluster, expected: Vec<ExpectedBooking>) {
    let options = audit::Options {
        in_doubt_after: IN_DOUBT_AFTER,
        expected,
    };
    let report = audit::check(cluster.router_addr(), &options)
        .await
        .expect("the audit could not read the cluster");
    assert!(report.is_clean(), "{report}\n{}", cluster.logs());
}

/// Returns the passenger's bookings, every one of them.
async fn bookings_of_passenger(client: &Client) -> Vec<Booking> {
    let listed = client
        .bookings(DOCUMENT)
        .await
        .expect("bookings.list failed");
    listed.bookings
}

/// Retries the booking twice with the first attempt's request id and
/// checks that both retries return the one confirmed booking, that it is
/// the only one of the passenger, and that each segment lost its seats
/// once.
async fn assert_retry_books_once(
    client: &Client,
    params: &BookParams,
    seats_before: &[u32],
) -> Booking {
    let retried = client
        .create(params.clone())
        .await
        .expect("the retry failed");
    let again = client
        .create(params.clone())
        .await
        .expect("the second retry failed");
    assert_eq!(again.id, retried.id, "two retries gave two bookings");
    assert_eq!(retried.status, BookingStatus::Confirmed);
    assert_eq!(retried.segments, params.segments);
    assert_eq!(retried.seats, SEATS);

    let listed = bookings_of_passenger(client).await;
    let ids: Vec<&str> = listed.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![retried.id.as_str()],
        "the passenger has other bookings"
    );

    let fetched = client
        .booking(&retried.id, DOCUMENT)
        .await
        .expect("bookings.get failed");
    assert_eq!(fetched.status, BookingStatus::Confirmed);

    let expected: Vec<u32> = seats_before.iter().map(|left| left - SEATS).collect();
    assert_eq!(seats_left(client, &params.segments).await, expected);
    retried
}

/// Checks that the aborted first attempt left no booking and no seat
/// taken once its deadline passed.
async fn assert_nothing_booked(
    cluster: &Cluster,
    client: &Client,
    params: &BookParams,
    seats_before: &[u32],
) {
    assert_audit_clean(cluster, Vec::new()).await;
    assert!(
        bookings_of_passenger(client).await.is_empty(),
        "the aborted attempt left a booking"
    );
    assert_eq!(seats_left(client, &params.segments).await, seats_before);
}

/// Kills the router at `point` of a two-shard booking, restarts it
/// without the point, and returns what the retries need.
async fn crash_router_at(point: &str) -> (Cluster, BookParams, Vec<u32>) {
    let mut cluster = test_cluster(2)
        .router_env(failpoint::ENV, point)
        .start()
        .await;
    let client = cluster.client().await;
    let segments = trip_across(&client, &[0, 1]).await;
    let params = params(&segments, "router-crash");
    let seats_before = seats_left(&client, &segments).await;

    let first = spawn_create(&client, &params);
    wait_for_failpoint(&cluster, "router", point).await;
    cluster.kill_router();
    let error = join_call(first)
        .await
        .expect_err("the router died before it replied");
    assert!(
        matches!(error, ClientError::ConnectionLost { .. }),
        "expected a lost connection, got {error}"
    );

    cluster.remove_router_env(failpoint::ENV);
    cluster.restart_router().await;
    (cluster, params, seats_before)
}

#[tokio::test]
async fn router_crash_after_some_prepares_aborts() {
    let (cluster, params, seats_before) = crash_router_at("router.after_prepare_some").await;
    let client = cluster.client().await;

    assert_nothing_booked(&cluster, &client, &params, &seats_before).await;
    let booking = assert_retry_books_once(&client, &params, &seats_before).await;
    let expected = vec![ExpectedBooking {
        locator: booking.id,
        status: BookingStatus::Confirmed,
    }];
    assert_audit_clean(&cluster, expected).await;
}

#[tokio::test]
async fn router_crash_after_all_prepares_aborts() {
    let (cluster, params, seats_before) = crash_router_at("router.after_prepare_all").await;
    let client = cluster.client().await;

    assert_nothing_booked(&cluster, &client, &params, &seats_before).await;
    let booking = assert_retry_books_once(&client, &params, &seats_before).await;
    let expected = vec![ExpectedBooking {
        locator: booking.id,
        status: BookingStatus::Confirmed,
    }];
    assert_audit_clean(&cluster, expected).await;
}

#[tokio::test]
async fn retry_while_first_attempt_pending_books_once() {
    // The retry arrives before the prepare deadline, while the first
    // attempt is still pending at home with every seat prepared.
    let (cluster, params, seats_before) = crash_router_at("router.after_prepare_all").await;
    let client = cluster.client().await;

    let booking = assert_retry_books_once(&client, &params, &seats_before).await;
    let expected = vec![ExpectedBooking {
        locator: booking.id.clone(),
        status: BookingStatus::Confirmed,
    }];
    assert_audit_clean(&cluster, expected).await;
    let expected: Vec<u32> = seats_before.iter().map(|left| left - SEATS).collect();
    assert_eq!(seats_left(&client, &params.segments).await, expected);
}

#[tokio::test]
async fn router_crash_after_decision_keeps_booking() {
    let (cluster, params, seats_before) = crash_router_at("router.after_decide").await;
    let client = cluster.client().await;

    // The decision was written before the crash, so the booking exists
    // although its client never heard of it.
    let listed = bookings_of_passenger(&client).await;
    assert_eq!(
        listed.len(),
        1,
        "expected the committed booking alone: {listed:?}"
    );
    let committed = listed[0].clone();
    assert_eq!(committed.status, BookingStatus::Confirmed);
    let expected = vec![ExpectedBooking {
        locator: committed.id.clone(),
        status: BookingStatus::Confirmed,
    }];
    assert_audit_clean(&cluster, expected).await;

    let retried = assert_retry_books_once(&client, &params, &seats_before).await;
    assert_eq!(retried.id, committed.id);
}

/// Kills shard `victim` at `point` during a booking of `shards` (the first
/// is the home), restarts it without the point, and returns the first
/// attempt's result with what the retries need.
async fn crash_shard_at(
    point: &str,
    shards: &[usize],
    victim: usize,
) -> (Cluster, BookParams, Vec<u32>, Result<Booking, ClientError>) {
    let shard_count = shards.len();
    let mut cluster = test_cluster(shard_count)
        .shard_env(victim, failpoint::ENV, point)
        .start()
        .await;
    let client = cluster.client().await;
    let segments = trip_across(&client, shards).await;
    let params = params(&segments, "shard-crash");
    let seats_before = seats_left(&client, &segments).await;

    let first = spawn_create(&client, &params);
    let name = format!("shard-{victim}");
    wait_for_failpoint(&cluster, &name, point).await;
    cluster.kill_shard(victim);
    let outcome = join_call(first).await;

    cluster.remove_shard_env(victim, failpoint::ENV);
    cluster.restart_shard(victim).await;
    (cluster, params, seats_before, outcome)
}

#[tokio::test]
async fn participant_crash_after_prepare_aborts() {
    let point = "shard.after_prepare";
    let (cluster, params, seats_before, first) = crash_shard_at(point, &[0, 1], 1).await;
    let error = first.expect_err("a participant died before voting");
    // The router lost the vote, but the home shard acknowledged the abort,
    // so the client learns that nothing was booked.
    assert_eq!(error.kind(), Some("shard_unavailable"), "{error}");
    let client = cluster.client().await;

    assert_nothing_booked(&cluster, &client, &params, &seats_before).await;
    assert_retry_books_once(&client, &params, &seats_before).await;
}

#[tokio::test]
async fn home_crash_after_prepare_aborts() {
    let point = "shard.after_prepare";
    let (cluster, params, seats_before, first) = crash_shard_at(point, &[0, 1], 0).await;
    let error = first.expect_err("the home shard died before voting");
    assert_eq!(error.kind(), Some("outcome_unknown"), "{error}");
    let client = cluster.client().await;

    assert_nothing_booked(&cluster, &client, &params, &seats_before).await;
    assert_retry_books_once(&client, &params, &seats_before).await;
}

#[tokio::test]
async fn home_crash_after_decision_keeps_booking() {
    let point = "shard.after_decide";
    let (cluster, params, seats_before, first) = crash_shard_at(point, &[0, 1], 0).await;
    let error = first.expect_err("the home shard died before it replied to the decision");
    assert_eq!(error.kind(), Some("outcome_unknown"), "{error}");
    let client = cluster.client().await;

    let listed = bookings_of_passenger(&client).await;
    assert_eq!(
        listed.len(),
        1,
        "expected the committed booking alone: {listed:?}"
    );
    let expected = vec![ExpectedBooking {
        locator: listed[0].id.clone(),
        status: BookingStatus::Confirmed,
    }];
    assert_audit_clean(&cluster, expected).await;
    let retried = assert_retry_books_once(&client, &params, &seats_before).await;
    assert_eq!(retried.id, listed[0].id);
}

#[tokio::test]
async fn home_crash_between_finishes_completes_commit() {
    // Three participants, so the home shard has two finishes to send and
    // stops after the first is acknowledged.
    let point = "shard.mid_finish";
    let (cluster, params, seats_before, first) = crash_shard_at(point, &[0, 1, 2], 0).await;
    let booking =
        first.expect("the home shard replied to the decision before it sent the finishes");
    assert_eq!(booking.status, BookingStatus::Confirmed);
    let client = cluster.client().await;

    let expected = vec![ExpectedBooking {
        locator: booking.id.clone(),
        status: BookingStatus::Confirmed,
    }];
    assert_audit_clean(&cluster, expected).await;
    let retried = assert_retry_books_once(&client, &params, &seats_before).await;
    assert_eq!(retried.id, booking.id);
}

#[tokio::test]
async fn single_shard_booking_skips_two_phase_commit() {
    // Both prepare points would stop the router on any two-phase booking,
    // so a single-shard booking that succeeds never went through prepare.
    let points = "router.after_prepare_some,router.after_prepare_all";
    let cluster = test_cluster(2)
        .router_env(failpoint::ENV, points)
        .shard_env(0, "RUST_LOG", "trecho_shard=debug")
        .start()
        .await;
    let client = cluster.client().await;
    let by_shard = segments_by_shard(&client).await;
    assert!(
        by_shard[0].len() >= 2,
        "shard 0 owns fewer than two segments out of GRU"
    );
    let segments = by_shard[0][..2].to_vec();
    let seats_before = seats_left(&client, &segments).await;

    // Without a request id: a request id is also claimed on the shard of
    // the passenger's document, which may be another shard.
    let mut single = params(&segments, "single-shard");
    single.request_id = None;
    let call = client.create(single);
    let booking = tokio::time::timeout(CALL_WAIT, call)
        .await
        .expect("a single-shard booking reached a two-phase fault-injection point")
        .expect("the single-shard booking failed");
    assert_eq!(booking.status, BookingStatus::Confirmed);
    let expected: Vec<u32> = seats_before.iter().map(|left| left - SEATS).collect();
    assert_eq!(seats_left(&client, &segments).await, expected);

    let log = cluster.log("shard-0");
    assert!(
        log.contains("method=\"book\""),
        "shard 0 logged no book request:\n{log}"
    );
    assert!(
        !log.contains("method=\"prepare\""),
        "shard 0 received a prepare:\n{log}"
    );
    assert_audit_clean(&cluster, Vec::new()).await;
}

#[tokio::test]
async fn concurrent_retries_book_once() {
    // Four attempts with one request id race through prepare. Each one
    // that reaches the home shard while another is pending aborts that
    // one. The aborted attempts return outcome_unknown, because only a
    // retry can tell, and every success is the same booking.
    let cluster = test_cluster(2).start().await;
    let client = cluster.client().await;
    let segments = trip_across(&client, &[0, 1]).await;
    let params = params(&segments, "concurrent");
    let seats_before = seats_left(&client, &segments).await;

    let mut calls = Vec::new();
    for _ in 0..4 {
        let client = cluster.client().await;
        calls.push(spawn_create(&client, &params));
    }
    let mut locators = Vec::new();
    for call in calls {
        match join_call(call).await {
            Ok(booking) => locators.push(booking.id),
            Err(error) => assert_eq!(error.kind(), Some("outcome_unknown"), "{error}"),
        }
    }
    assert_audit_clean(&cluster, Vec::new()).await;

    let booking = assert_retry_books_once(&client, &params, &seats_before).await;
    for locator in &locators {
        assert_eq!(locator, &booking.id, "two attempts made two bookings");
    }
}
