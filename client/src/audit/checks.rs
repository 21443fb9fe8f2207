//! The invariants, checked over one reading of every shard.

use rustc_hash::{FxHashMap, FxHashSet};
use trecho_common::internal::{AuditBooking, AuditReservation, ReservationState, TxnId};
use trecho_common::shardmap::ShardMap;
use trecho_common::types::Locator;

use super::report::{Report, Violation};
use super::snapshot::{Snapshot, Unsettled};
use super::ExpectedBooking;

/// Indexes over every shard's dump.
struct Index<'a> {
    map: &'a ShardMap,
    /// (participant shard, txn) to its reservation.
    reservations: FxHashMap<(u32, TxnId), &'a AuditReservation>,
    /// txn to (home shard, booking record).
    bookings: FxHashMap<TxnId, (u32, &'a AuditBooking)>,
    /// (home shard, txn) undecided at home.
    pending: FxHashSet<(u32, TxnId)>,
    /// (txn, participant) whose finish the home shard still sends.
    unacknowledged: FxHashSet<(TxnId, u32)>,
}

/// Runs every check on `snapshot`; `in_doubt` lists what stayed unsettled
/// for the whole wait.
pub(crate) fn run(
    snapshot: &Snapshot,
    in_doubt: &FxHashSet<Unsettled>,
    expected: &[ExpectedBooking],
) -> Report {
    let index = Index::build(snapshot);
    let mut violations = Vec::new();
    check_segments(snapshot, &index, &mut violations);
    check_bookings(snapshot, &index, &mut violations);
    check_orphans(snapshot, &index, &mut violations);
    report_in_doubt(in_doubt, &mut violations);
    check_expected(snapshot, expected, &mut violations);
    let reports = &snapshot.reports;
    Report {
        shards: reports.len(),
        segments: reports.iter().map(|r| r.segments.len()).sum(),
        reservations: reports.iter().map(|r| r.reservations.len()).sum(),
        bookings: reports.iter().map(|r| r.bookings.len()).sum(),
        violations,
    }
}

impl<'a> Index<'a> {
    fn build(snapshot: &'a Snapshot) -> Self {
        let mut index = Index {
            map: &snapshot.map,
            reservations: FxHashMap::default(),
            bookings: FxHashMap::default(),
            pending: FxHashSet::default(),
            unacknowledged: FxHashSet::default(),
        };
        for report in &snapshot.reports {
            let shard = report.shard_id;
            for reservation in &report.reservations {
                index
                    .reservations
                    .insert((shard, reservation.txn), reservation);
            }
            for booking in &report.bookings {
                index.bookings.insert(booking.txn, (shard, booking));
            }
            index
                .pending
                .extend(report.pending.iter().map(|&txn| (shard, txn)));
            // The shards name participants by slot; the checks by shard.
            let map = &snapshot.map;
            let participants = report
                .unacknowledged
                .iter()
                .map(|&(txn, slot)| (txn, map.owner_of_slot(slot).id));
            index.unacknowledged.extend(participants);
        }
        index
    }

    fn owner(&self, segment: &str) -> u32 {
        self.map.owner_of(segment).id
    }
}

/// Checks capacity, placement, and `taken` against the live reservations.
fn check_segments(snapshot: &Snapshot, index: &Index<'_>, out: &mut Vec<Violation>) {
    for report in &snapshot.reports {
        let shard = report.shard_id;
        let mut reserved: FxHashMap<&str, u32> = FxHashMap::default();
        for reservation in &report.reservations {
            for segment in &reservation.segments {
                *reserved.entry(segment.as_str()).or_default() += reservation.seats;
            }
        }
        let mut counted = FxHashSet::default();
        for segment in &report.segments {
            counted.insert(segment.id.as_str());
            let owner = index.owner(&segment.id);
            if owner != shard {
                out.push(Violation::MisplacedSegment {
                    shard,
                    segment: segment.id.clone(),
                    owner,
                });
            }
            if segment.taken > segment.capacity {
                out.push(Violation::OverCapacity {
                    shard,
                    segment: segment.id.clone(),
                    taken: segment.taken,
                    capacity: segment.capacity,
                });
            }
            let sum = reserved.get(segment.id.as_str()).copied().unwrap_or(0);
            if sum != segment.taken {
                out.push(Violation::TakenMismatch {
                    shard,
                    segment: segment.id.clone(),
                    taken: segment.taken,
                    reserved: sum,
                });
            }
        }
        // The dump lists only segments with seats taken, so a reserved
        // segment missing from it counts zero.
        for (segment, sum) in reserved {
            if !counted.contains(segment) && sum > 0 {
                out.push(Violation::TakenMismatch {
                    shard,
                    segment: segment.to_owned(),
                    taken: 0,
                    reserved: sum,
                });
            }
        }
    }
}

/// Checks each booking record's placement and its reservation on every
/// participant.
fn check_bookings(snapshot: &Snapshot, index: &Index<'_>, out: &mut Vec<Violation>) {
    let mut seen = FxHashSet::default();
    for report in &snapshot.reports {
        let home = report.shard_id;
        for booking in &report.bookings {
            if !seen.insert(booking.locator.as_str()) {
                out.push(Violation::DuplicateLocator {
                    booking: booking.locator.clone(),
                });
            }
            if let Ok(locator) = Locator::parse(&booking.locator) {
                let owner = index.map.owner_of_slot(locator.slot()).id;
                if owner != home {
                    out.push(Violation::MisplacedBooking {
                        booking: booking.locator.clone(),
                        shard: home,
                        owner,
                    });
                }
            }
            for (participant, segments) in participants(index, booking) {
                // While the home shard still sends the outcome, the
                // participant may not have applied it yet.
                if participant != home && index.unacknowledged.contains(&(booking.txn, participant))
                {
                    continue;
                }
                let reservation = index.reservations.get(&(participant, booking.txn));
                check_participant(booking, participant, &segments, reservation.copied(), out);
            }
        }
    }
}

/// Groups a booking's segments by the shard that owns them, in first-seen
/// order.
fn participants<'a>(index: &Index<'_>, booking: &'a AuditBooking) -> Vec<(u32, Vec<&'a str>)> {
    let mut groups: Vec<(u32, Vec<&str>)> = Vec::new();
    for segment in &booking.segments {
        let owner = index.owner(segment);
        match groups.iter_mut().find(|(shard, _)| *shard == owner) {
            Some((_, list)) => list.push(segment),
            None => groups.push((owner, vec![segment])),
        }
    }
    groups
}

fn check_participant(
    booking: &AuditBooking,
    shard: u32,
    segments: &[&str],
    reservation: Option<&AuditReservation>,
    out: &mut Vec<Violation>,
) {
    if !booking.status.takes_seats() {
        if let Some(reservation) = reservation {
            out.push(Violation::LeakedReservation {
                booking: booking.locator.clone(),
                status: booking.status,
                shard,
                seats: reservation.seats,
            });
        }
        return;
    }
    let Some(reservation) = reservation else {
        for segment in segments {
            out.push(Violation::MissingReservation {
                booking: booking.locator.clone(),
                status: booking.status,
                segment: (*segment).to_owned(),
                shard,
            });
        }
        return;
    };
    if reservation.state != ReservationState::Committed || reservation.seats != booking.seats {
        out.push(Violation::WrongReservation {
            booking: booking.locator.clone(),
            shard,
            state: reservation.state,
            seats: reservation.seats,
            expected_seats: booking.seats,
        });
    }
    compare_segments(booking, shard, segments, reservation, out);
}

fn compare_segments(
    booking: &AuditBooking,
    shard: u32,
    segments: &[&str],
    reservation: &AuditReservation,
    out: &mut Vec<Violation>,
) {
    for segment in segments {
        if !reservation.segments.iter().any(|s| s == segment) {
            out.push(Violation::MissingReservation {
                booking: booking.locator.clone(),
                status: booking.status,
                segment: (*segment).to_owned(),
                shard,
            });
        }
    }
    for segment in &reservation.segments {
        if !segments.contains(&segment.as_str()) {
            out.push(Violation::ExtraSegment {
                booking: booking.locator.clone(),
                shard,
                segment: segment.clone(),
            });
        }
    }
}

/// Finds committed reservations with no booking record at home. A
/// committed reservation exists only after the home shard decided commit,
/// which creates the record.
fn check_orphans(snapshot: &Snapshot, index: &Index<'_>, out: &mut Vec<Violation>) {
    for report in &snapshot.reports {
        let shard = report.shard_id;
        for reservation in &report.reservations {
            let committed = reservation.state == ReservationState::Committed;
            if !committed || index.bookings.contains_key(&reservation.txn) {
                continue;
            }
            let home = index.map.owner_of_slot(reservation.home_slot).id;
            out.push(Violation::OrphanReservation {
                shard,
                txn: reservation.txn,
                home,
                pending_at_home: index.pending.contains(&(home, reservation.txn)),
            });
        }
    }
}

fn report_in_doubt(in_doubt: &FxHashSet<Unsettled>, out: &mut Vec<Violation>) {
    let mut items: Vec<&Unsettled> = in_doubt.iter().collect();
    items.sort_by_key(|item| format!("{item:?}"));
    for item in items {
        out.push(match *item {
            Unsettled::Prepared { shard, txn } => Violation::PreparedInDoubt { shard, txn },
            Unsettled::Pending { shard, txn } => Violation::PendingInDoubt { shard, txn },
            Unsettled::Unacknowledged {
                home,
                txn,
                participant,
            } => Violation::FinishUnacknowledged {
                home,
                txn,
                participant,
            },
        });
    }
}

fn check_expected(snapshot: &Snapshot, expected: &[ExpectedBooking], out: &mut Vec<Violation>) {
    let by_locator: FxHashMap<&str, &AuditBooking> = snapshot
        .reports
        .iter()
        .flat_map(|report| report.bookings.iter())
        .map(|booking| (booking.locator.as_str(), booking))
        .collect();
    for item in expected {
        match by_locator.get(item.locator.as_str()) {
            None => out.push(Violation::ExpectedBookingMissing {
                booking: item.locator.clone(),
                expected: item.status,
            }),
            Some(found) if found.status != item.status => {
                out.push(Violation::ExpectedStatusMismatch {
                    booking: item.locator.clone(),
                    expected: item.status,
                    found: found.status,
                })
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
