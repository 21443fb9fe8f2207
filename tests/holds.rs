//! Holds, confirm, expiry and cancel of trips whose segments live on
//! several shards, against real shard and router processes.

mod common;

use std::time::Duration;

use tokio::time::Instant;
use trecho_client::audit::{self, ExpectedBooking};
use trecho_client::{BookParams, Booking, BookingStatus, Client, Passenger, SearchParams};
use trecho_common::failpoint;
use trecho_common::time::Date;
use trecho_tests::{Cluster, ClusterBuilder};

/// Prepare deadline of the test clusters, in milliseconds.
const PREPARE_TIMEOUT_MS: &str = "1000";
/// How long the audit waits for transactions and finishes to settle.
const IN_DOUBT_AFTER: Duration = Duration::from_secs(10);
/// Maximum wait for an expiry or a release to show.
const SETTLE_WAIT: Duration = Duration::from_secs(10);
const SEATS: u32 = 3;
const DOCUMENT: &str = "HD-7654321";

fn test_cluster(shards: usize) -> ClusterBuilder {
    Cluster::builder(shards)
        .shard_args(&["--prepare-timeout-ms", PREPARE_TIMEOUT_MS, "--days", "4"])
        .router_args(&["--prepare-timeout-ms", PREPARE_TIMEOUT_MS])
}

/// Returns one segment per shard, in shard id order, each out of GRU two
/// days from now. A booking of them all has shard 0 as its home shard.
async fn one_segment_per_shard(client: &Client) -> Vec<String> {
    let status = client.status().await.expect("cluster.status failed");
    let params = SearchParams {
        origin: Some("GRU".into()),
        destination: None,
        date: Some(Date::today_utc().add_days(2)),
        limit: Some(1000),
    };
    let found = client.search(params).await.expect("segments.search failed");
    let mut picked: Vec<Option<String>> = vec![None; status.shards.len()];
    for segment in found.segments {
        let owner = common::shard_of(&status, &segment.id);
        let index = usize::try_from(owner).expect("shard ids are small");
        picked[index].get_or_insert(segment.id);
    }
    picked
        .into_iter()
        .enumerate()
        .map(|(shard, id)| id.unwrap_or_else(|| panic!("no segment out of GRU on shard {shard}")))
        .collect()
}

fn params(segments: &[String], hold_seconds: Option<u32>) -> BookParams {
    BookParams {
        passenger: Passenger {
            name: "Hugo Holds".into(),
            document: DOCUMENT.into(),
        },
        segments: segments.to_vec(),
        seats: Some(SEATS),
        request_id: None,
        hold_seconds,
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

fn minus_seats(seats: &[u32]) -> Vec<u32> {
    seats.iter().map(|left| left - SEATS).collect()
}

/// Waits until every segment shows `expected` seats left, and fails with
/// the last reading otherwise.
async fn wait_for_seats(client: &Client, segments: &[String], expected: &[u32]) {
    let deadline = Instant::now() + SETTLE_WAIT;
    loop {
        let left = seats_left(client, segments).await;
        if left == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "seats left {left:?}, expected {expected:?} within {SETTLE_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the booking shows `status`, and returns it.
async fn wait_for_status(client: &Client, id: &str, status: BookingStatus) -> Booking {
    let deadline = Instant::now() + SETTLE_WAIT;
    loop {
        let booking = client
            .booking(id, DOCUMENT)
            .await
            .expect("bookings.get failed");
        if booking.status == status {
            return booking;
        }
        assert!(
            Instant::now() < deadline,
            "booking {id} is {} after {SETTLE_WAIT:?}, expected {status}",
            booking.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_audit_clean(cluster: &Cluster, locator: &str, status: BookingStatus) {
    let options = audit::Options {
        in_doubt_after: IN_DOUBT_AFTER,
        expected: vec![ExpectedBooking {
            locator: locator.to_owned(),
            status,
        }],
    };
    let report = audit::check(cluster.router_addr(), &options)
        .await
        .expect("the audit could not read the cluster");
    assert!(report.is_clean(), "{report}\n{}", cluster.logs());
}

#[tokio::test]
async fn confirmed_hold_outlives_its_expiry() {
    let cluster = test_cluster(3).start().await;
    let client = cluster.client().await;
    let segments = one_segment_per_shard(&client).await;
    let seats_before = seats_left(&client, &segments).await;

    let held = client
        .hold(params(&segments, Some(2)))
        .await
        .expect("bookings.hold failed");
    assert_eq!(held.status, BookingStatus::Held);
    assert!(held.expires_at.is_some(), "a hold has no expires_at");
    assert_eq!(held.segments, segments);
    assert_eq!(
        seats_left(&client, &segments).await,
        minus_seats(&seats_before)
    );
    assert_audit_clean(&cluster, &held.id, BookingStatus::Held).await;

    let confirmed = client
        .confirm(&held.id, DOCUMENT)
        .await
        .expect("bookings.confirm failed");
    assert_eq!(confirmed.id, held.id);
    assert_eq!(confirmed.status, BookingStatus::Confirmed);
    assert_eq!(confirmed.expires_at, None);

    // Past the hold's two seconds the booking and its seats stay.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fetched = client
        .booking(&held.id, DOCUMENT)
        .await
        .expect("bookings.get failed");
    assert_eq!(fetched.status, BookingStatus::Confirmed);
    assert_eq!(
        seats_left(&client, &segments).await,
        minus_seats(&seats_before)
    );
    assert_audit_clean(&cluster, &held.id, BookingStatus::Confirmed).await;
}

#[tokio::test]
async fn expired_hold_releases_every_segment() {
    let cluster = test_cluster(3).start().await;
    let client = cluster.client().await;
    let segments = one_segment_per_shard(&client).await;
    let seats_before = seats_left(&client, &segments).await;

    let held = client
        .hold(params(&segments, Some(1)))
        .await
        .expect("bookings.hold failed");
    assert_eq!(held.status, BookingStatus::Held);
    let expired = wait_for_status(&client, &held.id, BookingStatus::Expired).await;
    assert_eq!(expired.expires_at, None);
    wait_for_seats(&client, &segments, &seats_before).await;

    let confirm = client.confirm(&held.id, DOCUMENT).await;
    let error = confirm.expect_err("an expired hold was confirmed");
    assert_eq!(error.kind(), Some("hold_expired"), "{error}");
    let cancel = client.cancel(&held.id, DOCUMENT).await;
    let error = cancel.expect_err("an expired hold was cancelled");
    assert_eq!(error.kind(), Some("invalid_state"), "{error}");

    let listed = client
        .bookings(DOCUMENT)
        .await
        .expect("bookings.list failed");
    let statuses: Vec<BookingStatus> = listed.bookings.iter().map(|b| b.status).collect();
    assert_eq!(statuses, vec![BookingStatus::Expired]);
    assert_audit_clean(&cluster, &held.id, BookingStatus::Expired).await;
}

#[tokio::test]
async fn hold_due_while_home_down_expires_on_restart() {
    let mut cluster = test_cluster(2).start().await;
    let client = cluster.client().await;
    let segments = one_segment_per_shard(&client).await;
    let seats_before = seats_left(&client, &segments).await;

    let held = client
        .hold(params(&segments, Some(2)))
        .await
        .expect("bookings.hold failed");
    assert_eq!(held.status, BookingStatus::Held);
    // Shard 0 owns the first segment, so it is the home shard. It dies
    // before the hold runs out and comes back after.
    cluster.kill_shard(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        seats_left(&client, &segments[1..]).await,
        minus_seats(&seats_before[1..])
    );
    cluster.restart_shard(0).await;

    let client = cluster.client().await;
    let fetched = client
        .booking(&held.id, DOCUMENT)
        .await
        .expect("bookings.get failed");
    assert_eq!(
        fetched.status,
        BookingStatus::Expired,
        "the overdue hold did not expire on restart"
    );
    wait_for_seats(&client, &segments, &seats_before).await;
    let error = client
        .confirm(&held.id, DOCUMENT)
        .await
        .expect_err("confirmed after expiry");
    assert_eq!(error.kind(), Some("hold_expired"), "{error}");
    assert_audit_clean(&cluster, &held.id, BookingStatus::Expired).await;
}

#[tokio::test]
async fn expiry_reaches_participant_down_at_expiry() {
    let mut cluster = test_cluster(2).start().await;
    let client = cluster.client().await;
    let segments = one_segment_per_shard(&client).await;
    let seats_before = seats_left(&client, &segments).await;

    let held = client
        .hold(params(&segments, Some(1)))
        .await
        .expect("bookings.hold failed");
    // Shard 1 is a participant only. The home shard expires the hold
    // while shard 1 is down, and releases its seats once it is back.
    cluster.kill_shard(1);
    let expired = wait_for_status(&client, &held.id, BookingStatus::Expired).await;
    assert_eq!(expired.segments, segments);
    assert_eq!(seats_left(&client, &segments[..1]).await, seats_before[..1]);
    cluster.restart_shard(1).await;

    let client = cluster.client().await;
    wait_for_seats(&client, &segments, &seats_before).await;
    assert_audit_clean(&cluster, &held.id, BookingStatus::Expired).await;
}

#[tokio::test]
async fn cancel_releases_every_segment() {
    let cluster = test_cluster(3).start().await;
    let client = cluster.client().await;
    let segments = one_segment_per_shard(&client).await;
    let seats_before = seats_left(&client, &segments).await;

    let booking = client
        .create(params(&segments, None))
        .await
        .expect("bookings.create failed");
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(
        seats_left(&client, &segments).await,
        minus_seats(&seats_before)
    );

    let cancelled = client
        .cancel(&booking.id, DOCUMENT)
        .await
        .expect("bookings.cancel failed");
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    wait_for_seats(&client, &segments, &seats_before).await;
    let fetched = client
        .booking(&booking.id, DOCUMENT)
        .await
        .expect("bookings.get failed");
    assert_eq!(fetched.status, BookingStatus::Cancelled);
    let again = client
        .cancel(&booking.id, DOCUMENT)
        .await
        .expect("a second cancel failed");
    assert_eq!(again.status, BookingStatus::Cancelled);
    assert_eq!(seats_left(&client, &segments).await, seats_before);
    let confirm = client.confirm(&booking.id, DOCUMENT).await;
    let error = confirm.expect_err("a cancelled booking was confirmed");
    assert_eq!(error.kind(), Some("invalid_state"), "{error}");
    assert_audit_clean(&cluster, &booking.id, BookingStatus::Cancelled).await;
}

#[tokio::test]
async fn cancel_survives_home_crash_between_releases() {
    let mut cluster = test_cluster(3).start().await;
    let client = cluster.client().await;
    let segments = one_segment_per_shard(&client).await;
    let seats_before = seats_left(&client, &segments).await;
    let booking = client
        .create(params(&segments, None))
        .await
        .expect("bookings.create failed");
    assert_audit_clean(&cluster, &booking.id, BookingStatus::Confirmed).await;

    // The home shard comes back with the point that stops it after the
    // first of its two release finishes is acknowledged.
    cluster.set_shard_env(0, failpoint::ENV, "shard.mid_finish");
    cluster.restart_shard(0).await;
    let client = cluster.client().await;
    let cancelled = client
        .cancel(&booking.id, DOCUMENT)
        .await
        .expect("bookings.cancel failed");
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    let reached = cluster
        .wait_for_log("shard-0", "failpoint shard.mid_finish reached", SETTLE_WAIT)
        .await;
    assert!(
        reached,
        "the home shard never reached shard.mid_finish\n{}",
        cluster.logs()
    );
    cluster.kill_shard(0);
    cluster.remove_shard_env(0, failpoint::ENV);
    cluster.restart_shard(0).await;

    let client = cluster.client().await;
    wait_for_seats(&client, &segments, &seats_before).await;
    let fetched = client
        .booking(&booking.id, DOCUMENT)
        .await
        .expect("bookings.get failed");
    assert_eq!(fetched.status, BookingStatus::Cancelled);
    assert_audit_clean(&cluster, &booking.id, BookingStatus::Cancelled).await;
}
