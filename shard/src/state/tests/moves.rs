//! Moves of slots between the two test shards: everything filed under a
//! slot leaves the source with the pause and arrives at the target with
//! the import, and a two-phase commit across a moving slot still ends all
//! or nothing.

use super::*;
use crate::state::{MoveRequest, MoveStart};

/// Moves slot `slot` from `source` to `target` in the three steps the
/// owner tasks take, checking each reply. Returns the version created.
fn move_slot(source: &mut Shard, target: &mut Shard, slot: u16, now_ms: i64) -> u64 {
    let version = source.state.map().version.max(target.state.map().version) + 1;
    let request = MoveRequest {
        first: slot,
        last: slot,
        target: target.id,
        target_address: format!("127.0.0.1:{}", target.id + 1),
        version,
    };
    let started = source.state.start_move(request, now_ms, &mut source.log);
    let Ok(MoveStart::Started(move_id)) = started else {
        panic!("the move did not start: {started:?}");
    };
    let moving = source.state.moving().expect("the move is paused").clone();
    let import = moving.import(source.id, source.state.map());
    let op = ShardOp::ImportSlots(Box::new(import.clone()));
    assert_eq!(target.handle(op, now_ms), Ok(ShardReply::Imported));
    let records = target.log.len();
    let again = ShardOp::ImportSlots(Box::new(import));
    assert_eq!(target.handle(again, now_ms), Ok(ShardReply::Imported));
    assert_eq!(target.log.len(), records, "a repeated import wrote records");
    let done = source.state.hand_off(move_id, &mut source.log);
    assert!(matches!(done, Ok(Some(_))), "{done:?}");
    version
}

/// Replays `shard`'s log into a fresh state and compares the audits and
/// the maps. Also checks the seat invariant.
fn assert_replay_after_move(shard: &mut Shard) {
    let mut replayed = fresh_state(shard.id, 99);
    for (index, record) in shard.log.iter().enumerate() {
        let applied = replayed.apply(record);
        assert!(applied.is_ok(), "record {index}: {applied:?}");
    }
    assert_eq!(audit(&mut replayed), shard.audit(), "audit after replay");
    assert_eq!(replayed.map(), shard.state.map(), "map after replay");
    assert_eq!(replayed.outbox_jobs(), shard.state.outbox_jobs());
    assert_invariant(&shard.audit());
}

#[test]
fn moved_slot_carries_bookings_holds_and_seats() {
    let mut source = Shard::new(HOME);
    let mut target = Shard::new(REMOTE);
    let now = start_ms();
    let ids = home_ids();
    let confirmed = booking_of(source.book(request(&ids[..1], 2), now));
    let mut held = request(&ids[..1], 1);
    held.hold_seconds = Some(600);
    let held = booking_of(source.book(held, now));
    let staying = booking_of(source.book(request(&ids[1..2], 1), now));
    let moved = slot(&ids[0]);
    assert_ne!(slot(&ids[1]), moved, "the test needs two slots");

    let version = move_slot(&mut source, &mut target, moved, now + 10);

    for booking in [&confirmed, &held] {
        let found = booking_of(target.get(locator_of(booking), DOCUMENT, now + 20));
        assert_eq!(&found, booking);
        let refused = source.get(locator_of(booking), DOCUMENT, now + 20);
        assert!(
            matches!(
                refused,
                Err(ShardError::NotOwner {
                    owner: Some(REMOTE),
                    ..
                })
            ),
            "{refused:?}"
        );
    }
    assert_eq!(target.seats_left(&ids[0]), CAPACITY - 3);
    assert_eq!(source.seats_left(&ids[1]), CAPACITY - 1);
    assert_eq!(
        booking_of(source.get(locator_of(&staying), DOCUMENT, now + 20)),
        staying
    );
    assert_eq!(target.state.map().version, version);
    assert_eq!(source.state.map().version, version);
    assert_eq!(target.state.segment_count(), remote_ids().len() + 1);
    assert_eq!(source.state.segment_count(), ids.len() - 1);

    // The hold still runs out on time, now on the target.
    let expiry = now + 601_000;
    target.tick(expiry);
    let expired = booking_of(target.get(locator_of(&held), DOCUMENT, expiry));
    assert_eq!(expired.status, BookingStatus::Expired);
    assert_eq!(target.seats_left(&ids[0]), CAPACITY - 2);

    assert_replay_after_move(&mut source);
    assert_replay_after_move(&mut target);
}

#[test]
fn paused_slot_rejects_requests_until_hand_off() {
    let mut source = Shard::new(HOME);
    let now = start_ms();
    let ids = home_ids();
    let booking = booking_of(source.book(request(&ids[..1], 1), now));
    let request_move = MoveRequest {
        first: slot(&ids[0]),
        last: slot(&ids[0]),
        target: REMOTE,
        target_address: "127.0.0.1:2".to_owned(),
        version: 2,
    };
    let started = source
        .state
        .start_move(request_move.clone(), now, &mut source.log);
    let Ok(MoveStart::Started(move_id)) = started else {
        panic!("{started:?}");
    };
    for reply in [
        source.get(locator_of(&booking), DOCUMENT, now),
        source.book(request(&ids[..1], 1), now),
        source.cancel(locator_of(&booking), DOCUMENT, now),
    ] {
        assert!(
            matches!(reply, Err(ShardError::SlotMoving { .. })),
            "{reply:?}"
        );
    }
    // Slots outside the move keep serving.
    booking_of(source.book(request(&ids[1..2], 1), now));
    // The same move again joins it, and another move is rejected until it
    // ends.
    let again = source
        .state
        .start_move(request_move.clone(), now, &mut source.log);
    assert_eq!(again, Ok(MoveStart::Running(move_id)));
    let other = MoveRequest {
        first: slot(&ids[1]),
        last: slot(&ids[1]),
        ..request_move.clone()
    };
    let refused = source.state.start_move(other, now, &mut source.log);
    assert!(
        matches!(
            refused,
            Err(ShardError::Client {
                error: Error::Overloaded { .. }
            })
        ),
        "{refused:?}"
    );
    source
        .state
        .hand_off(move_id, &mut source.log)
        .expect("the hand-off applies");
    let done = source.state.start_move(request_move, now, &mut source.log);
    assert_eq!(done, Ok(MoveStart::Done { version: 2 }));
    assert_replay_after_move(&mut source);
}

#[test]
fn move_of_unowned_slot_is_rejected() {
    let mut source = Shard::new(HOME);
    let request_move = MoveRequest {
        first: remote_slot(),
        last: remote_slot(),
        target: 2,
        target_address: "127.0.0.1:3".to_owned(),
        version: 2,
    };
    let refused = source
        .state
        .start_move(request_move, start_ms(), &mut source.log);
    assert!(
        matches!(
            refused,
            Err(ShardError::Client {
                error: Error::InvalidParams { .. }
            })
        ),
        "{refused:?}"
    );
    assert!(source.log.is_empty());
}

#[test]
fn prepared_trip_commits_at_new_home() {
    let mut trip = Trip::prepared(0x61, None);
    let now = start_ms() + 100;
    // The home record moves to the participant's shard, where it meets
    // that shard's own part of the same transaction.
    move_slot(&mut trip.home, &mut trip.remote, trip.home_slot, now);
    let refused = trip.decide(true, now);
    assert!(
        matches!(
            refused,
            Err(ShardError::NotOwner {
                owner: Some(REMOTE),
                ..
            })
        ),
        "{refused:?}"
    );
    let op = ShardOp::Decide {
        txn: trip.txn,
        home_slot: trip.home_slot,
        commit: true,
        participant_slots: trip_slots(),
    };
    let booking = booking_of(trip.remote.handle(op, now + 10));
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(trip.remote.seats_left(&home_ids()[0]), CAPACITY - 2);
    assert_eq!(trip.remote.seats_left(&remote_ids()[0]), CAPACITY - 2);
    let audit = trip.remote.audit();
    assert!(audit.pending.is_empty());
    assert!(
        audit.unacknowledged.is_empty(),
        "{:?}",
        audit.unacknowledged
    );
    assert!(audit
        .reservations
        .iter()
        .all(|r| r.state == ReservationState::Committed));
    assert!(trip.home.audit().reservations.is_empty());
    assert_replay_after_move(&mut trip.home);
    assert_replay_after_move(&mut trip.remote);
}

#[test]
fn prepared_trip_aborts_after_participant_move() {
    let mut trip = Trip::prepared(0x62, None);
    let now = start_ms() + 100;
    // The participant's part moves to the home shard before the abort.
    move_slot(&mut trip.remote, &mut trip.home, remote_slot(), now);
    assert_eq!(trip.decide(false, now + 10), Ok(ShardReply::Ack));
    // Both parts now live on the home shard, which released them with
    // the abort record itself.
    assert!(trip.home.state.take_finishes().is_empty());
    assert_eq!(trip.home_seats(), CAPACITY);
    assert_eq!(trip.home.seats_left(&remote_ids()[0]), CAPACITY);
    assert!(trip.home.audit().reservations.is_empty());
    assert!(trip.remote.audit().reservations.is_empty());
    assert_replay_after_move(&mut trip.home);
    assert_replay_after_move(&mut trip.remote);
}

#[test]
fn cancel_after_participant_move_frees_seats() {
    let mut trip = Trip::prepared(0x63, None);
    let now = start_ms() + 100;
    let booking = booking_of(trip.decide(true, now));
    trip.deliver_finishes(now);
    // The remote part moves to the home shard. The cancel then frees both
    // parts there, so no finish is needed.
    move_slot(&mut trip.remote, &mut trip.home, remote_slot(), now + 10);
    let cancelled = booking_of(trip.home.cancel(locator_of(&booking), DOCUMENT, now + 20));
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    assert_eq!(trip.home_seats(), CAPACITY);
    assert_eq!(trip.home.seats_left(&remote_ids()[0]), CAPACITY);
    assert!(trip.home.audit().unacknowledged.is_empty());
    assert_replay_after_move(&mut trip.home);
    assert_replay_after_move(&mut trip.remote);
}

#[test]
fn queued_finish_applies_when_slot_moves_home() {
    let mut trip = Trip::prepared(0x64, None);
    let now = start_ms() + 100;
    booking_of(trip.decide(true, now));
    // The home queued a finish for the remote slot. Before the finish is
    // delivered, that slot moves to the home shard itself.
    assert_eq!(
        trip.home.audit().unacknowledged,
        [(trip.txn, remote_slot())]
    );
    move_slot(&mut trip.remote, &mut trip.home, remote_slot(), now + 10);
    let audit = trip.home.audit();
    assert!(
        audit.unacknowledged.is_empty(),
        "{:?}",
        audit.unacknowledged
    );
    assert!(audit
        .reservations
        .iter()
        .all(|r| r.state == ReservationState::Committed));
    assert_eq!(trip.home.seats_left(&remote_ids()[0]), CAPACITY - 2);
    assert_replay_after_move(&mut trip.home);
    assert_replay_after_move(&mut trip.remote);
}

#[test]
fn commit_for_absent_reservation_is_acknowledged() {
    // The claim of a request id takes no seats and stays where it was
    // prepared when the document's slot moves; its new owner acknowledges
    // the commit without a record.
    let mut remote = Shard::new(REMOTE);
    let op = ShardOp::Finish {
        txn: 0x65,
        commit: true,
        slots: vec![remote_slot()],
    };
    assert_eq!(remote.handle(op, start_ms()), Ok(ShardReply::Ack));
    assert!(remote.log.is_empty());
}
