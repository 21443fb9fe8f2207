use trecho_common::hashing::slot;
use trecho_common::internal::{AuditReport, AuditSegment};
use trecho_common::types::BookingStatus;

use super::*;

/// Two shards with slots split evenly.
fn map() -> ShardMap {
    ShardMap::even(&["127.0.0.1:1".into(), "127.0.0.1:2".into()]).unwrap()
}

/// Returns the `nth` segment id whose slot `shard` owns.
fn segment_on(map: &ShardMap, shard: u32, nth: usize) -> String {
    (0..)
        .map(|n| format!("AD{n}-2026-12-20"))
        .filter(|id| map.owner_of(id).id == shard)
        .nth(nth)
        .unwrap()
}

/// Returns a locator whose home is `shard`.
fn locator_on(map: &ShardMap, shard: u32, index: u64) -> String {
    let slot = map.shards[shard as usize].slots[0][0];
    Locator::new(slot, index).to_string()
}

fn empty_report(shard: u32) -> AuditReport {
    AuditReport {
        shard_id: shard,
        segments: Vec::new(),
        reservations: Vec::new(),
        bookings: Vec::new(),
        pending: Vec::new(),
        unacknowledged: Vec::new(),
    }
}

fn reservation(txn: TxnId, home_slot: u16, segments: &[&str], seats: u32) -> AuditReservation {
    AuditReservation {
        txn,
        home_slot,
        segments: segments.iter().map(|s| (*s).to_owned()).collect(),
        seats,
        state: ReservationState::Committed,
    }
}

fn taken(id: &str, capacity: u32, taken: u32) -> AuditSegment {
    AuditSegment {
        id: id.to_owned(),
        capacity,
        taken,
    }
}

/// A confirmed two-shard booking of 2 seats, home on shard 0, and a
/// cancelled one whose seats are released everywhere.
struct Fixture {
    snapshot: Snapshot,
    first: String,
    second: String,
    locator: String,
    cancelled: String,
}

fn fixture() -> Fixture {
    let map = map();
    let first = segment_on(&map, 0, 0);
    let second = segment_on(&map, 1, 0);
    let locator = locator_on(&map, 0, 1);
    let cancelled = locator_on(&map, 0, 2);
    let home_slot = slot(&first);
    let mut shard0 = empty_report(0);
    shard0.segments.push(taken(&first, 100, 2));
    shard0
        .reservations
        .push(reservation(7, home_slot, &[&first], 2));
    shard0.bookings.push(AuditBooking {
        locator: locator.clone(),
        txn: 7,
        status: BookingStatus::Confirmed,
        segments: vec![first.clone(), second.clone()],
        seats: 2,
    });
    shard0.bookings.push(AuditBooking {
        locator: cancelled.clone(),
        txn: 8,
        status: BookingStatus::Cancelled,
        segments: vec![first.clone(), second.clone()],
        seats: 1,
    });
    let mut shard1 = empty_report(1);
    shard1.segments.push(taken(&second, 100, 2));
    shard1
        .reservations
        .push(reservation(7, home_slot, &[&second], 2));
    Fixture {
        snapshot: Snapshot {
            map,
            reports: vec![shard0, shard1],
        },
        first,
        second,
        locator,
        cancelled,
    }
}

fn violations(snapshot: &Snapshot) -> Vec<Violation> {
    run(snapshot, &FxHashSet::default(), &[]).violations
}

#[test]
fn consistent_cluster_is_clean() {
    let fixture = fixture();
    let report = run(&fixture.snapshot, &FxHashSet::default(), &[]);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.shards, 2);
    assert_eq!(report.segments, 2);
    assert_eq!(report.reservations, 2);
    assert_eq!(report.bookings, 2);
}

#[test]
fn over_capacity_segment_is_reported() {
    let mut fixture = fixture();
    let segment = &mut fixture.snapshot.reports[0].segments[0];
    segment.capacity = 1;
    assert_eq!(
        violations(&fixture.snapshot),
        vec![Violation::OverCapacity {
            shard: 0,
            segment: fixture.first.clone(),
            taken: 2,
            capacity: 1,
        }]
    );
}

#[test]
fn taken_differing_from_reservations_is_reported() {
    let mut fixture = fixture();
    fixture.snapshot.reports[1].segments[0].taken = 3;
    assert_eq!(
        violations(&fixture.snapshot),
        vec![Violation::TakenMismatch {
            shard: 1,
            segment: fixture.second.clone(),
            taken: 3,
            reserved: 2,
        }]
    );
}

#[test]
fn reserved_segment_missing_from_dump_counts_zero() {
    let mut fixture = fixture();
    fixture.snapshot.reports[1].segments.clear();
    assert_eq!(
        violations(&fixture.snapshot),
        vec![Violation::TakenMismatch {
            shard: 1,
            segment: fixture.second.clone(),
            taken: 0,
            reserved: 2,
        }]
    );
}

#[test]
fn confirmed_booking_without_participant_reservation_is_reported() {
    let mut fixture = fixture();
    let shard1 = &mut fixture.snapshot.reports[1];
    shard1.reservations.clear();
    shard1.segments.clear();
    assert_eq!(
        violations(&fixture.snapshot),
        vec![Violation::MissingReservation {
            booking: fixture.locator.clone(),
            status: BookingStatus::Confirmed,
            segment: fixture.second.clone(),
            shard: 1,
        }]
    );
}

#[test]
fn prepared_reservation_of_confirmed_booking_is_wrong() {
    let mut fixture = fixture();
    fixture.snapshot.reports[1].reservations[0].state = ReservationState::Prepared;
    assert_eq!(
        violations(&fixture.snapshot),
        vec![Violation::WrongReservation {
            booking: fixture.locator.clone(),
            shard: 1,
            state: ReservationState::Prepared,
            seats: 2,
            expected_seats: 2,
        }]
    );
}

#[test]
fn unacknowledged_finish_excuses_participant() {
    let mut fixture = fixture();
    fixture.snapshot.reports[1].reservations[0].state = ReservationState::Prepared;
    let participant_slot = slot(&fixture.second);
    fixture.snapshot.reports[0]
        .unacknowledged
        .push((7, participant_slot));
    assert_eq!(violations(&fixture.snapshot), vec![]);
}

#[test]
fn cancelled_booking_with_reservation_is_leaked() {
    let mut fixture = fixture();
    let home_slot = slot(&fixture.first);
    let shard1 = &mut fixture.snapshot.reports[1];
    let second = fixture.second.clone();
    shard1
        .reservations
        .push(reservation(8, home_slot, &[&second], 1));
    shard1.segments[0].taken = 3;
    assert_eq!(
        violations(&fixture.snapshot),
        vec![Violation::LeakedReservation {
            booking: fixture.cancelled.clone(),
            status: BookingStatus::Cancelled,
            shard: 1,
            seats: 1,
        }]
    );
    fixture.snapshot.reports[0]
        .unacknowledged
        .push((8, slot(&second)));
    assert_eq!(violations(&fixture.snapshot), vec![]);
}

#[test]
fn committed_reservation_without_booking_is_orphan() {
    let mut fixture = fixture();
    let home_slot = slot(&fixture.first);
    let second = fixture.second.clone();
    let shard1 = &mut fixture.snapshot.reports[1];
    shard1
        .reservations
        .push(reservation(99, home_slot, &[&second], 1));
    shard1.segments[0].taken = 3;
    fixture.snapshot.reports[0].pending.push(99);
    assert_eq!(
        violations(&fixture.snapshot),
        vec![Violation::OrphanReservation {
            shard: 1,
            txn: 99,
            home: 0,
            pending_at_home: true,
        }]
    );
}

#[test]
fn reservation_with_extra_segment_is_reported() {
    let mut fixture = fixture();
    let extra = segment_on(&fixture.snapshot.map, 1, 1);
    let shard1 = &mut fixture.snapshot.reports[1];
    shard1.reservations[0].segments.push(extra.clone());
    shard1.segments.push(taken(&extra, 100, 2));
    assert_eq!(
        violations(&fixture.snapshot),
        vec![Violation::ExtraSegment {
            booking: fixture.locator.clone(),
            shard: 1,
            segment: extra,
        }]
    );
}

#[test]
fn booking_on_wrong_shard_is_misplaced() {
    let mut fixture = fixture();
    let wrong = locator_on(&fixture.snapshot.map, 1, 5);
    fixture.snapshot.reports[0].bookings[1].locator = wrong.clone();
    assert_eq!(
        violations(&fixture.snapshot),
        vec![Violation::MisplacedBooking {
            booking: wrong,
            shard: 0,
            owner: 1,
        }]
    );
}

#[test]
fn in_doubt_items_become_violations() {
    let fixture = fixture();
    let in_doubt: FxHashSet<Unsettled> = [
        Unsettled::Prepared { shard: 1, txn: 3 },
        Unsettled::Pending { shard: 0, txn: 3 },
        Unsettled::Unacknowledged {
            home: 0,
            txn: 4,
            participant: 1,
        },
    ]
    .into_iter()
    .collect();
    let found = run(&fixture.snapshot, &in_doubt, &[]).violations;
    assert_eq!(found.len(), 3);
    assert!(found.contains(&Violation::PreparedInDoubt { shard: 1, txn: 3 }));
    assert!(found.contains(&Violation::PendingInDoubt { shard: 0, txn: 3 }));
    assert!(found.contains(&Violation::FinishUnacknowledged {
        home: 0,
        txn: 4,
        participant: 1,
    }));
}

#[test]
fn expected_bookings_are_checked() {
    let fixture = fixture();
    let expected = [
        ExpectedBooking {
            locator: fixture.locator.clone(),
            status: BookingStatus::Confirmed,
        },
        ExpectedBooking {
            locator: fixture.cancelled.clone(),
            status: BookingStatus::Confirmed,
        },
        ExpectedBooking {
            locator: "ZZZZZZ".into(),
            status: BookingStatus::Held,
        },
    ];
    let found = run(&fixture.snapshot, &FxHashSet::default(), &expected).violations;
    assert_eq!(
        found,
        vec![
            Violation::ExpectedStatusMismatch {
                booking: fixture.cancelled.clone(),
                expected: BookingStatus::Confirmed,
                found: BookingStatus::Cancelled,
            },
            Violation::ExpectedBookingMissing {
                booking: "ZZZZZZ".into(),
                expected: BookingStatus::Held,
            },
        ]
    );
}

#[test]
fn report_lists_each_violation_on_its_own_line() {
    let report = Report {
        shards: 2,
        segments: 1,
        reservations: 1,
        bookings: 0,
        violations: vec![
            Violation::PendingInDoubt { shard: 0, txn: 3 },
            Violation::DuplicateLocator {
                booking: "AAAAAA".into(),
            },
        ],
    };
    let text = report.to_string();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("2 violations"), "{text}");
    assert!(text.contains("\n  - locator AAAAAA"), "{text}");
}
