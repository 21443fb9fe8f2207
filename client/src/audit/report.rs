//! The audit's findings.

use std::fmt;

use trecho_common::internal::{ReservationState, TxnId};
use trecho_common::types::BookingStatus;

/// The result of an audit: what was read and every violation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Shards read.
    pub shards: usize,
    /// Segments with at least one seat taken.
    pub segments: usize,
    /// Live reservations.
    pub reservations: usize,
    /// Booking records.
    pub bookings: usize,
    /// Every violation, empty when the cluster is consistent.
    pub violations: Vec<Violation>,
}

impl Report {
    /// Returns whether no violation was found.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit of {} shards ({} segments with seats taken, {} reservations, {} bookings): ",
            self.shards, self.segments, self.reservations, self.bookings
        )?;
        if self.violations.is_empty() {
            return f.write_str("no violations");
        }
        write!(f, "{} violations", self.violations.len())?;
        for violation in &self.violations {
            write!(f, "\n  - {violation}")?;
        }
        Ok(())
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// More seats taken than the aircraft has.
    OverCapacity {
        /// The shard that owns the segment.
        shard: u32,
        /// The segment.
        segment: String,
        /// Seats taken.
        taken: u32,
        /// Seats on the aircraft.
        capacity: u32,
    },
    /// `taken` differs from the seats of the live reservations on the
    /// segment.
    TakenMismatch {
        /// The shard that owns the segment.
        shard: u32,
        /// The segment.
        segment: String,
        /// Seats taken, as the shard counts them.
        taken: u32,
        /// Sum of seats over the segment's live reservations.
        reserved: u32,
    },
    /// A shard reports a segment or reservation on a segment whose slot it
    /// does not own.
    MisplacedSegment {
        /// The shard that reported it.
        shard: u32,
        /// The segment.
        segment: String,
        /// The shard that owns its slot.
        owner: u32,
    },
    /// A booking record lives on a shard that does not own its locator's
    /// slot.
    MisplacedBooking {
        /// The locator.
        booking: String,
        /// The shard that stores the record.
        shard: u32,
        /// The shard that owns the locator's slot.
        owner: u32,
    },
    /// Two booking records have the same locator.
    DuplicateLocator {
        /// The locator.
        booking: String,
    },
    /// A held or confirmed booking has no reservation on one of its
    /// segments.
    MissingReservation {
        /// The locator.
        booking: String,
        /// Its status.
        status: BookingStatus,
        /// The segment with no reservation.
        segment: String,
        /// The shard that owns the segment.
        shard: u32,
    },
    /// A held or confirmed booking's reservation is not committed or does
    /// not count the booking's seats.
    WrongReservation {
        /// The locator.
        booking: String,
        /// The participant shard.
        shard: u32,
        /// The reservation's state.
        state: ReservationState,
        /// Seats the reservation counts.
        seats: u32,
        /// Seats the booking has.
        expected_seats: u32,
    },
    /// A reservation counts seats on a segment its booking does not list.
    ExtraSegment {
        /// The locator.
        booking: String,
        /// The participant shard.
        shard: u32,
        /// The segment.
        segment: String,
    },
    /// A cancelled or expired booking still has a reservation, and its home
    /// shard has no finish left to send.
    LeakedReservation {
        /// The locator.
        booking: String,
        /// The booking's status.
        status: BookingStatus,
        /// The participant shard.
        shard: u32,
        /// Seats still counted on each of its segments.
        seats: u32,
    },
    /// A committed reservation whose transaction has no booking record at
    /// its home shard.
    OrphanReservation {
        /// The participant shard.
        shard: u32,
        /// The transaction.
        txn: TxnId,
        /// The home shard.
        home: u32,
        /// Whether the home shard still has the transaction pending.
        pending_at_home: bool,
    },
    /// A reservation stayed prepared for longer than the audit waited.
    PreparedInDoubt {
        /// The participant shard.
        shard: u32,
        /// The transaction.
        txn: TxnId,
    },
    /// A transaction stayed undecided at its home shard for longer than the
    /// audit waited.
    PendingInDoubt {
        /// The home shard.
        shard: u32,
        /// The transaction.
        txn: TxnId,
    },
    /// A finish stayed unacknowledged for longer than the audit waited.
    FinishUnacknowledged {
        /// The home shard.
        home: u32,
        /// The transaction.
        txn: TxnId,
        /// The participant that has not acknowledged.
        participant: u32,
    },
    /// A booking the caller saw does not exist.
    ExpectedBookingMissing {
        /// The locator.
        booking: String,
        /// The status the caller expected.
        expected: BookingStatus,
    },
    /// A booking the caller saw has another status.
    ExpectedStatusMismatch {
        /// The locator.
        booking: String,
        /// The status the caller expected.
        expected: BookingStatus,
        /// The status found.
        found: BookingStatus,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::OverCapacity { shard, segment, taken, capacity } => write!(
                f,
                "segment {segment} on shard {shard} has {taken} seats taken, over its capacity of {capacity}"
            ),
            Violation::TakenMismatch { shard, segment, taken, reserved } => write!(
                f,
                "segment {segment} on shard {shard} counts {taken} seats taken, but its live reservations hold {reserved}"
            ),
            Violation::MisplacedSegment { shard, segment, owner } => write!(
                f,
                "shard {shard} reports segment {segment}, whose slot shard {owner} owns"
            ),
            Violation::MisplacedBooking { booking, shard, owner } => write!(
                f,
                "booking {booking} is recorded on shard {shard}, but its locator's slot belongs to shard {owner}"
            ),
            Violation::DuplicateLocator { booking } => {
                write!(f, "locator {booking} names more than one booking record")
            }
            Violation::MissingReservation { booking, status, segment, shard } => write!(
                f,
                "{status} booking {booking} has no reservation on segment {segment} (shard {shard})"
            ),
            Violation::WrongReservation { booking, shard, state, seats, expected_seats } => write!(
                f,
                "booking {booking}'s reservation on shard {shard} is {state:?} with {seats} seats; \
                 expected committed with {expected_seats}"
            ),
            Violation::ExtraSegment { booking, shard, segment } => write!(
                f,
                "booking {booking}'s reservation on shard {shard} counts segment {segment}, which the booking does not list"
            ),
            Violation::LeakedReservation { booking, status, shard, seats } => write!(
                f,
                "{status} booking {booking} still has a reservation of {seats} seats on shard {shard}, \
                 and no finish is left to release it"
            ),
            Violation::OrphanReservation { shard, txn, home, pending_at_home } => write!(
                f,
                "committed reservation of transaction {txn} on shard {shard} has no booking record on home shard {home}{}",
                if *pending_at_home { ", where it is still pending" } else { "" }
            ),
            Violation::PreparedInDoubt { shard, txn } => write!(
                f,
                "reservation of transaction {txn} on shard {shard} stayed prepared (in doubt)"
            ),
            Violation::PendingInDoubt { shard, txn } => write!(
                f,
                "transaction {txn} stayed pending on home shard {shard} (in doubt)"
            ),
            Violation::FinishUnacknowledged { home, txn, participant } => write!(
                f,
                "shard {participant} never acknowledged the finish of transaction {txn} sent by home shard {home}"
            ),
            Violation::ExpectedBookingMissing { booking, expected } => write!(
                f,
                "booking {booking} was seen {expected}, but no shard has it"
            ),
            Violation::ExpectedStatusMismatch { booking, expected, found } => write!(
                f,
                "booking {booking} should be {expected}, but it is {found}"
            ),
        }
    }
}
