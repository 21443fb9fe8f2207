//! Reads: status, segment search and lookups, and the audit dump.

use trecho_common::error::Error;
use trecho_common::hashing::slot;
use trecho_common::internal::{
    AuditBooking, AuditReport, AuditReservation, AuditSegment, ReservationState as Audited,
    ShardError, ShardReply, ShardStatus,
};
use trecho_common::time::Date;

use super::{MoveOut, Outcome, ReservationState, State};
use crate::catalog::SearchFilter;

impl State {
    /// Counts and ownership.
    pub(super) fn status(&self) -> ShardStatus {
        let slots = self
            .map
            .shard(self.shard_id)
            .map(|shard| shard.slots.clone())
            .unwrap_or_default();
        ShardStatus {
            shard_id: self.shard_id,
            map_version: self.map.version,
            slots,
            segments: self.owned_segments,
            bookings: self.bookings.len() as u64,
            moving: self.moving.as_ref().map(MoveOut::view),
        }
    }

    /// Segments of this shard's slots matching the filters, by departure
    /// then id.
    pub(super) fn search(
        &self,
        origin: Option<&str>,
        destination: Option<&str>,
        date: Option<Date>,
        limit: u32,
    ) -> ShardReply {
        let filter = SearchFilter {
            origin,
            destination,
            date,
        };
        let owned = |entry: &crate::catalog::SegmentEntry| self.owns(entry.slot);
        let found = self.catalog.search(filter, limit as usize, owned);
        let segments = found.into_iter().map(|i| self.catalog.view(i)).collect();
        ShardReply::Segments { segments }
    }

    /// One segment.
    pub(super) fn get_segment(&self, id: &str) -> Result<ShardReply, ShardError> {
        self.check_slot(slot(id))?;
        let index = self.catalog.find(id).ok_or_else(|| Error::UnknownSegment {
            segment: id.to_owned(),
        })?;
        let segment = self.catalog.view(index);
        Ok(ShardReply::Segment { segment })
    }

    /// Seats left per id, `None` for unknown ids.
    pub(super) fn seats(&self, ids: &[String]) -> Result<ShardReply, ShardError> {
        self.check_owns_all(ids)?;
        let seats = ids
            .iter()
            .map(|id| {
                let index = self.catalog.find(id)?;
                Some(self.catalog.entry(index).seats_left())
            })
            .collect();
        Ok(ShardReply::Seats { seats })
    }

    /// Everything the invariant checker needs, sorted so two dumps of the
    /// same state compare equal.
    pub(super) fn audit(&self) -> AuditReport {
        AuditReport {
            shard_id: self.shard_id,
            segments: self.audit_segments(),
            reservations: self.audit_reservations(),
            bookings: self.audit_bookings(),
            pending: self.audit_pending(),
            unacknowledged: self.outbox.keys().copied().collect(),
        }
    }

    fn audit_segments(&self) -> Vec<AuditSegment> {
        let mut segments: Vec<AuditSegment> = self
            .catalog
            .entries()
            .filter(|(_, entry)| entry.taken > 0)
            .map(|(index, entry)| AuditSegment {
                id: self.catalog.id(index),
                capacity: entry.capacity,
                taken: entry.taken,
            })
            .collect();
        segments.sort_by(|a, b| a.id.cmp(&b.id));
        segments
    }

    fn audit_reservations(&self) -> Vec<AuditReservation> {
        let mut reservations: Vec<AuditReservation> = self
            .reservations
            .iter()
            .filter_map(|(&txn, reservation)| {
                let state = match reservation.state {
                    ReservationState::Prepared { .. } => Audited::Prepared,
                    ReservationState::Committed => Audited::Committed,
                    ReservationState::Released => return None,
                };
                Some(AuditReservation {
                    txn,
                    home_slot: reservation.home_slot,
                    segments: reservation
                        .segments
                        .iter()
                        .map(|&i| self.catalog.id(i))
                        .collect(),
                    seats: reservation.seats,
                    state,
                })
            })
            .collect();
        reservations.sort_by_key(|reservation| reservation.txn);
        reservations
    }

    fn audit_bookings(&self) -> Vec<AuditBooking> {
        let mut bookings: Vec<AuditBooking> = self
            .bookings
            .iter()
            .map(|(locator, booking)| AuditBooking {
                locator: locator.to_string(),
                txn: booking.txn,
                status: booking.status,
                segments: booking.segments.clone(),
                seats: booking.seats,
            })
            .collect();
        bookings.sort_by(|a, b| a.locator.cmp(&b.locator));
        bookings
    }

    fn audit_pending(&self) -> Vec<u64> {
        let mut pending: Vec<u64> = self
            .txns
            .iter()
            .filter(|(_, home)| matches!(home.outcome, Outcome::Pending { .. }))
            .map(|(&txn, _)| txn)
            .collect();
        pending.sort_unstable();
        pending
    }
}
