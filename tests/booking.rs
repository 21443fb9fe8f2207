//! Bookings against real router and shard processes: the race for the last
//! seats, bookings of several segments on one shard and across shards,
//! request_id idempotency, documents as the key to a booking, listing, and
//! clients that disconnect mid-request.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::time::{timeout, Instant};
use trecho_client::audit::{self, ExpectedBooking};
use trecho_client::{BookingStatus, Client, ClientError, RawConnection};
use trecho_tests::start_cluster;

use common::{
    book_params, days_ahead, fill_until, kind_of, seats_left, segments_by_shard, CALL_TIMEOUT,
};

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

/// Returns one segment id on each of `count` different shards, or panics.
async fn segments_on_distinct_shards(client: &Client, date: &str, count: usize) -> Vec<String> {
    let by_shard = segments_by_shard(client, date).await;
    let mut shards: Vec<_> = by_shard.into_iter().collect();
    shards.sort_by_key(|(id, _)| *id);
    assert!(
        shards.len() >= count,
        "segments on only {} shards",
        shards.len()
    );
    shards
        .iter()
        .take(count)
        .map(|(_, segments)| segments[0].id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seats_go_to_exactly_that_many_racers() {
    const RACERS: usize = 40;
    const LAST_SEATS: u32 = 3;
    let cluster = start_cluster(3).await;
    let client = cluster.client().await;
    let date = days_ahead(5);
    let segment = segments_on_distinct_shards(&client, &date, 1)
        .await
        .remove(0);
    fill_until(&client, &segment, LAST_SEATS, "FILLER").await;
    assert_eq!(seats_left(&client, &segment).await, LAST_SEATS);

    // Every racer has its own connection, and all send at once.
    let mut racers = Vec::new();
    for _ in 0..RACERS {
        racers.push(cluster.client().await);
    }
    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = racers
        .into_iter()
        .enumerate()
        .map(|(index, racer)| {
            let barrier = barrier.clone();
            let segment = segment.clone();
            tokio::spawn(async move {
                let params = book_params(&format!("RACER-{index}"), &[&segment], 1);
                barrier.wait().await;
                timeout(CALL_TIMEOUT, racer.create(params))
                    .await
                    .expect("a racer got no answer")
            })
        })
        .collect();
    let mut results: Vec<Result<_, ClientError>> = Vec::new();
    for task in tasks {
        results.push(task.await.expect("a racer panicked"));
    }

    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let losers: Vec<String> = results.iter().filter(|r| r.is_err()).map(kind_of).collect();
    assert_eq!(winners.len(), LAST_SEATS as usize, "winners: {winners:?}");
    assert!(
        losers.iter().all(|kind| kind == "sold_out"),
        "losers got other errors: {losers:?}"
    );
    assert_eq!(seats_left(&client, &segment).await, 0);
    let expected = winners
        .iter()
        .map(|booking| {
            assert_eq!(booking.status, BookingStatus::Confirmed);
            ExpectedBooking {
                locator: booking.id.clone(),
                status: BookingStatus::Confirmed,
            }
        })
        .collect();
    assert_audit_clean(cluster.router_addr(), expected).await;
}

#[tokio::test]
async fn several_segments_on_one_shard_are_booked_together() {
    let cluster = start_cluster(3).await;
    let client = cluster.client().await;
    let date = days_ahead(6);
    let by_shard = segments_by_shard(&client, &date).await;
    let (_, segments) = by_shard
        .iter()
        .find(|(_, segments)| segments.len() >= 3)
        .expect("a shard with three segments");
    // Given in an order that is not the search's, which the booking keeps.
    let ids: Vec<&str> = [2, 0, 1].iter().map(|&i| segments[i].id.as_str()).collect();
    let before: Vec<u32> = segments[..3].iter().map(|s| s.seats_left).collect();

    let booking = client
        .create(book_params("TRIP-1", &ids, 2))
        .await
        .expect("booking failed");
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.segments, ids);
    assert_eq!(booking.seats, 2);
    for (segment, left) in segments[..3].iter().zip(&before) {
        assert_eq!(
            seats_left(&client, &segment.id).await,
            left - 2,
            "{}",
            segment.id
        );
    }
    let fetched = client
        .booking(&booking.id, "TRIP-1")
        .await
        .expect("bookings.get failed");
    assert_eq!(fetched, booking);

    let cancelled = client
        .cancel(&booking.id, "TRIP-1")
        .await
        .expect("cancel failed");
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    for (segment, left) in segments[..3].iter().zip(&before) {
        assert_eq!(
            seats_left(&client, &segment.id).await,
            *left,
            "{}",
            segment.id
        );
    }
    let expected = vec![ExpectedBooking {
        locator: booking.id,
        status: BookingStatus::Cancelled,
    }];
    assert_audit_clean(cluster.router_addr(), expected).await;
}

#[tokio::test]
async fn trip_across_three_shards_books_and_releases() {
    let cluster = start_cluster(3).await;
    let client = cluster.client().await;
    let date = days_ahead(6);
    let ids = segments_on_distinct_shards(&client, &date, 3).await;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut before = Vec::new();
    for id in &ids {
        before.push(seats_left(&client, id).await);
    }

    let booking = client
        .create(book_params("TRIP-2", &ids, 3))
        .await
        .expect("booking failed");
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.segments, ids);
    for (id, left) in ids.iter().zip(&before) {
        assert_eq!(seats_left(&client, id).await, left - 3, "{id}");
    }
    let fetched = client
        .booking(&booking.id, "TRIP-2")
        .await
        .expect("bookings.get failed");
    assert_eq!(fetched, booking);
    let listed = client
        .bookings("TRIP-2")
        .await
        .expect("bookings.list failed");
    assert_eq!(listed.bookings, vec![booking.clone()]);

    let mut held_params = book_params("TRIP-2", &ids, 1);
    held_params.hold_seconds = Some(600);
    let held = client.hold(held_params).await.expect("hold failed");
    assert_eq!(held.status, BookingStatus::Held);
    let confirmed = client
        .confirm(&held.id, "TRIP-2")
        .await
        .expect("confirm failed");
    assert_eq!(confirmed.status, BookingStatus::Confirmed);
    for (id, left) in ids.iter().zip(&before) {
        assert_eq!(seats_left(&client, id).await, left - 4, "{id}");
    }

    client
        .cancel(&booking.id, "TRIP-2")
        .await
        .expect("cancel failed");
    // The router releases the seats on every shard before it responds, so
    // a read right after the response finds them free.
    for (id, left) in ids.iter().zip(&before) {
        assert_eq!(seats_left(&client, id).await, left - 1, "{id}");
    }
    assert!(
        audit::wait_settled(cluster.router_addr(), CALL_TIMEOUT)
            .await
            .expect("audit"),
        "the cancel did not settle"
    );
    for (id, left) in ids.iter().zip(&before) {
        assert_eq!(seats_left(&client, id).await, left - 1, "{id}");
    }
    let expected = vec![
        ExpectedBooking {
            locator: booking.id,
            status: BookingStatus::Cancelled,
        },
        ExpectedBooking {
            locator: held.id,
            status: BookingStatus::Confirmed,
        },
    ];
    assert_audit_clean(cluster.router_addr(), expected).await;
}

#[tokio::test]
async fn sold_out_segment_leaves_every_other_segment_untouched() {
    let cluster = start_cluster(3).await;
    let client = cluster.client().await;
    let date = days_ahead(7);
    let ids = segments_on_distinct_shards(&client, &date, 3).await;
    let (open, first_full, second_full) = (&ids[0], &ids[1], &ids[2]);
    fill_until(&client, first_full, 1, "FILLER").await;
    fill_until(&client, second_full, 1, "FILLER").await;
    let open_before = seats_left(&client, open).await;

    // Both full segments lack seats: the error names the first in the
    // request's order, whichever order that is.
    let orders = [
        [open.as_str(), first_full, second_full],
        [open.as_str(), second_full, first_full],
    ];
    for order in orders {
        let result = client.create(book_params("TRIP-3", &order, 2)).await;
        assert_eq!(kind_of(&result), "sold_out", "{order:?}");
        let data = result.unwrap_err().rpc().and_then(|e| e.data.clone());
        let named = data
            .as_ref()
            .and_then(|d| d["segment"].as_str())
            .map(str::to_owned);
        assert_eq!(named.as_deref(), Some(order[1]), "{data:?}");
    }
    assert!(audit::wait_settled(cluster.router_addr(), CALL_TIMEOUT)
        .await
        .expect("audit"));
    assert_eq!(seats_left(&client, open).await, open_before);
    assert_eq!(seats_left(&client, first_full).await, 1);
    assert_eq!(seats_left(&client, second_full).await, 1);
    let listed = client
        .bookings("TRIP-3")
        .await
        .expect("bookings.list failed");
    assert!(
        listed.bookings.is_empty(),
        "a refused booking was recorded: {listed:?}"
    );
    assert_audit_clean(cluster.router_addr(), Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_returns_the_same_booking_once() {
    let cluster = start_cluster(3).await;
    let client = cluster.client().await;
    let date = days_ahead(8);
    let ids = segments_on_distinct_shards(&client, &date, 2).await;
    let single = [ids[0].as_str()];
    let trip = [ids[0].as_str(), ids[1].as_str()];
    let before = [
        seats_left(&client, &ids[0]).await,
        seats_left(&client, &ids[1]).await,
    ];

    let mut params = book_params("IDEM-1", &single, 2);
    params.request_id = Some("order-17".into());
    let first = client.create(params.clone()).await.expect("booking failed");
    // Retries on other connections, at once, return the same booking.
    let mut retries = Vec::new();
    for _ in 0..5 {
        let retry_client = cluster.client().await;
        let params = params.clone();
        retries.push(tokio::spawn(
            async move { retry_client.create(params).await },
        ));
    }
    for retry in retries {
        let again = retry
            .await
            .expect("a retry panicked")
            .expect("a retry failed");
        assert_eq!(again, first);
    }
    assert_eq!(seats_left(&client, &ids[0]).await, before[0] - 2);

    // The same request_id with other params is refused and takes nothing.
    let mut other = params.clone();
    other.seats = Some(3);
    let reused = client.create(other).await;
    assert_eq!(kind_of(&reused), "request_id_reused");
    let mut held = params.clone();
    held.hold_seconds = Some(600);
    let reused = client.hold(held).await;
    assert_eq!(
        kind_of(&reused),
        "request_id_reused",
        "a hold differs from a create"
    );
    assert_eq!(seats_left(&client, &ids[0]).await, before[0] - 2);

    // Defaults count as given: seats 1 left out equals seats 1.
    let mut trip_params = book_params("IDEM-1", &trip, 1);
    trip_params.request_id = Some("order-18".into());
    let trip_booking = client
        .create(trip_params.clone())
        .await
        .expect("trip failed");
    trip_params.seats = None;
    let again = client
        .create(trip_params.clone())
        .await
        .expect("trip retry failed");
    assert_eq!(again, trip_booking);
    // The retry's prepares are released before its answer arrives, so
    // no segment counts the seat twice.
    assert_eq!(seats_left(&client, &ids[1]).await, before[1] - 1);

    // A request_id belongs to its document: another passenger may use it.
    let mut stranger = params.clone();
    stranger.passenger = common::passenger("IDEM-2");
    let theirs = client
        .create(stranger)
        .await
        .expect("another document's booking failed");
    assert_ne!(theirs.id, first.id);

    // After a cancel, the retry returns the booking as it is now.
    client
        .cancel(&first.id, "IDEM-1")
        .await
        .expect("cancel failed");
    let after_cancel = client
        .create(params)
        .await
        .expect("retry after cancel failed");
    assert_eq!(after_cancel.id, first.id);
    assert_eq!(after_cancel.status, BookingStatus::Cancelled);
    assert_eq!(seats_left(&client, &ids[0]).await, before[0] - 1 - 2);
    let listed = client
        .bookings("IDEM-1")
        .await
        .expect("bookings.list failed");
    assert_eq!(listed.bookings.len(), 2, "{listed:?}");
    assert_audit_clean(cluster.router_addr(), Vec::new()).await;
}

#[tokio::test]
async fn wrong_document_gets_unknown_booking() {
    let cluster = start_cluster(2).await;
    let client = cluster.client().await;
    let date = days_ahead(9);
    let segment = segments_on_distinct_shards(&client, &date, 1)
        .await
        .remove(0);
    let mut params = book_params("OWNER-1", &[&segment], 1);
    params.hold_seconds = Some(600);
    let held = client.hold(params).await.expect("hold failed");
    let left = seats_left(&client, &segment).await;

    let wrong = [
        client.booking(&held.id, "OWNER-2").await,
        client.confirm(&held.id, "OWNER-2").await,
        client.cancel(&held.id, "OWNER-2").await,
        client.booking(&held.id, "owner-1").await,
    ];
    for result in &wrong {
        assert_eq!(kind_of(result), "unknown_booking");
    }
    // A locator that exists with the wrong document looks exactly like
    // one that does not exist, except for the locator itself.
    let missing_locator = if held.id == "AAAAAA" {
        "BBBBBB"
    } else {
        "AAAAAA"
    };
    let missing = client.booking(missing_locator, "OWNER-1").await;
    let wrong_rpc = wrong[0]
        .as_ref()
        .unwrap_err()
        .rpc()
        .expect("an RPC error")
        .clone();
    let missing_rpc = missing
        .as_ref()
        .unwrap_err()
        .rpc()
        .expect("an RPC error")
        .clone();
    assert_eq!(wrong_rpc.code, missing_rpc.code);
    assert_eq!(
        wrong_rpc.message.replace(&held.id, "?"),
        missing_rpc.message.replace(missing_locator, "?")
    );
    assert_eq!(
        wrong_rpc.data.as_ref().map(|d| d["booking"].clone()),
        Some(held.id.clone().into())
    );

    // Nothing changed: the hold is still held, with its seat.
    let still = client
        .booking(&held.id, "OWNER-1")
        .await
        .expect("bookings.get failed");
    assert_eq!(still, held);
    assert_eq!(seats_left(&client, &segment).await, left);
    let listed = client
        .bookings("OWNER-2")
        .await
        .expect("bookings.list failed");
    assert!(listed.bookings.is_empty());
}

#[tokio::test]
async fn bookings_list_shows_newest_first() {
    let cluster = start_cluster(3).await;
    let client = cluster.client().await;
    let date = days_ahead(10);
    let by_shard = segments_by_shard(&client, &date).await;
    let mut shards: Vec<_> = by_shard.into_iter().collect();
    shards.sort_by_key(|(id, _)| *id);
    // Home shards alternate, so the list merges the results of every shard,
    // and several bookings are made within the same second.
    let mut made = Vec::new();
    for round in 0..3 {
        for (_, segments) in &shards {
            let segment = segments[round].id.as_str();
            let booking = client
                .create(book_params("LIST-1", &[segment], 1))
                .await
                .expect("booking failed");
            made.push(booking.id);
            // Bookings of different shards are ordered by created_at, which
            // has millisecond resolution.
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
    }
    let listed = client
        .bookings("LIST-1")
        .await
        .expect("bookings.list failed");
    assert!(!listed.coverage.partial);
    let listed: Vec<String> = listed.bookings.into_iter().map(|b| b.id).collect();
    made.reverse();
    assert_eq!(listed, made, "not newest first");
}

#[tokio::test]
async fn client_gone_mid_trip_leaves_whole_bookings() {
    const TRIPS: u32 = 10;
    let cluster = start_cluster(3).await;
    let client = cluster.client().await;
    let date = days_ahead(11);
    let ids = segments_on_distinct_shards(&client, &date, 3).await;
    let trip: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut before = Vec::new();
    for id in &trip {
        before.push(seats_left(&client, id).await);
    }

    // Each trip request is written, and its connection closed at once.
    for index in 0..TRIPS {
        let mut raw = RawConnection::connect(cluster.router_addr())
            .await
            .expect("connect failed");
        let mut params = book_params(&format!("GONE-{index}"), &trip, 1);
        params.request_id = Some(format!("gone-{index}"));
        let request = serde_json::json!({
            "jsonrpc": "2.0", "id": index, "method": "bookings.create", "params": params,
        });
        let line = serde_json::to_vec(&request).expect("a request encodes");
        raw.send_line(&line).await.expect("send failed");
        drop(raw);
    }
    // Each trip ends booked wholly or not at all. The router may still be
    // reading the abandoned requests, so the check repeats until the
    // cluster settles with every seat count matching the bookings made.
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        let settled = audit::wait_settled(cluster.router_addr(), CALL_TIMEOUT)
            .await
            .expect("audit");
        let mut made = 0;
        for index in 0..TRIPS {
            let document = format!("GONE-{index}");
            let listed = client.bookings(&document).await.expect("list failed");
            assert!(listed.bookings.len() <= 1, "{listed:?}");
            made += listed.bookings.len() as u32;
        }
        let expected_left: Vec<u32> = before.iter().map(|left| left - made).collect();
        let mut left_now = Vec::new();
        for id in &trip {
            left_now.push(seats_left(&client, id).await);
        }
        if settled && left_now == expected_left {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{made} trips booked, seats left {left_now:?}, expected {expected_left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A retry with the request id settles each trip to exactly one booking.
    for index in 0..TRIPS {
        let document = format!("GONE-{index}");
        let mut params = book_params(&document, &trip, 1);
        params.request_id = Some(format!("gone-{index}"));
        let booking = client.create(params).await.expect("retry failed");
        let listed = client.bookings(&document).await.expect("list failed");
        assert_eq!(listed.bookings, vec![booking]);
    }
    assert!(audit::wait_settled(cluster.router_addr(), CALL_TIMEOUT)
        .await
        .expect("audit"));
    for (id, left) in trip.iter().zip(&before) {
        assert_eq!(seats_left(&client, id).await, left - TRIPS, "{id}");
    }
    assert_audit_clean(cluster.router_addr(), Vec::new()).await;
}

#[tokio::test]
async fn request_id_reuse_is_found_on_any_home() {
    let cluster = start_cluster(3).await;
    let client = cluster.client().await;
    let date = days_ahead(12);
    let by_shard = segments_by_shard(&client, &date).await;
    let mut shards: Vec<_> = by_shard.into_iter().collect();
    shards.sort_by_key(|(id, _)| *id);
    let a = shards[0].1[0].id.clone();
    let b = shards[1].1[0].id.clone();
    let c = shards[2].1[0].id.clone();

    // Documents hash to different shards, so the document's shard is the
    // home in some rounds and a third shard in others.
    for document in [
        "REUSE-1", "REUSE-2", "REUSE-3", "REUSE-4", "REUSE-5", "REUSE-6",
    ] {
        let mut trip = book_params(document, &[&a, &b], 1);
        trip.request_id = Some("trip".into());
        let first = client.create(trip.clone()).await.expect("trip failed");

        // The same segments in the other order have another first segment,
        // so another home shard.
        let before = [seats_left(&client, &a).await, seats_left(&client, &b).await];
        let mut reordered = book_params(document, &[&b, &a], 1);
        reordered.request_id = Some("trip".into());
        let reused = client.create(reordered).await;
        assert_eq!(kind_of(&reused), "request_id_reused", "{document}");
        let after = [seats_left(&client, &a).await, seats_left(&client, &b).await];
        assert_eq!(after, before, "{document}: the reuse took seats");

        // A single segment on a third shard, same request id.
        let mut single = book_params(document, &[&c], 1);
        single.request_id = Some("trip".into());
        let reused = client.create(single).await;
        assert_eq!(kind_of(&reused), "request_id_reused", "{document}");

        // The original params still return the original booking.
        let again = client.create(trip).await.expect("retry failed");
        assert_eq!(again.id, first.id, "{document}");
        let listed = client
            .bookings(document)
            .await
            .expect("bookings.list failed");
        assert_eq!(listed.bookings.len(), 1, "{document}: {listed:?}");
    }
}

#[tokio::test]
async fn concurrent_retries_keep_the_request_id_claimed() {
    let cluster = start_cluster(3).await;
    let client = Arc::new(cluster.client().await);
    let date = days_ahead(13);
    let by_shard = segments_by_shard(&client, &date).await;
    let mut shards: Vec<_> = by_shard.into_iter().collect();
    shards.sort_by_key(|(id, _)| *id);
    for round in 0..12 {
        // Rotate the segment's shard so the document's shard is the home
        // in some rounds and a claim-only participant in others.
        let first = shards[round % 3].1[0].id.clone();
        let other = shards[(round + 1) % 3].1[0].id.clone();
        let request_id = format!("race-{round}");
        let mut params = book_params("RACE-DOC", &[&first], 1);
        params.request_id = Some(request_id.clone());
        let attempts: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                let params = params.clone();
                tokio::spawn(async move { client.create(params).await })
            })
            .collect();
        for attempt in attempts {
            let _ = attempt.await.expect("attempt task panicked");
        }
        let mut reuse = book_params("RACE-DOC", &[&other], 1);
        reuse.request_id = Some(request_id);
        let reused = client.create(reuse).await;
        assert_eq!(kind_of(&reused), "request_id_reused", "round {round}");
    }
}
