//! Applying records: the only code that changes a [`State`].
//!
//! Each function checks everything first and changes the state only when
//! the whole record applies, so a record that fails leaves no trace.

use trecho_common::hashing::distinct_slots;
use trecho_common::internal::TxnId;
use trecho_common::protocol::methods::BookRequest;
use trecho_common::types::{BookingStatus, Locator};

use super::{
    request_key, BookingRecord, FinishJob, HomeTxn, Outcome, RequestEntry, Reservation,
    ReservationState, State,
};
use crate::catalog::SegmentIndex;
use crate::record::Record;

/// A record that contradicts the state: a bug, or a journal that does not
/// belong to these segments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction {txn}: {reason}")]
pub struct ApplyError {
    txn: TxnId,
    reason: String,
}

impl ApplyError {
    pub(super) fn new(txn: TxnId, reason: impl Into<String>) -> Self {
        ApplyError {
            txn,
            reason: reason.into(),
        }
    }
}

fn fail<T>(txn: TxnId, reason: impl Into<String>) -> Result<T, ApplyError> {
    Err(ApplyError {
        txn,
        reason: reason.into(),
    })
}

/// Fields of a new booking.
struct NewBooking<'a> {
    txn: TxnId,
    locator: Locator,
    request: &'a BookRequest,
    created_ms: i64,
    expires_ms: Option<i64>,
}

impl State {
    /// Applies one record.
    ///
    /// # Errors
    ///
    /// Returns [`ApplyError`] when the record contradicts the state; the
    /// state is then unchanged.
    pub fn apply(&mut self, record: &Record) -> Result<(), ApplyError> {
        match record {
            Record::Booked {
                txn,
                locator,
                request,
                created_ms,
                expires_ms,
            } => self.apply_booked(NewBooking {
                txn: *txn,
                locator: *locator,
                request,
                created_ms: *created_ms,
                expires_ms: *expires_ms,
            }),
            Record::Prepared { .. } => self.apply_prepared(record),
            Record::Committed {
                txn,
                locator,
                created_ms,
                expires_ms,
            } => self.apply_committed(*txn, *locator, *created_ms, *expires_ms),
            Record::Aborted {
                txn,
                participant_slots,
                home_slot,
            } => self.apply_aborted(*txn, participant_slots, *home_slot),
            Record::Finished { txn, commit } => self.apply_finished(*txn, *commit),
            Record::Confirmed { locator } => self.apply_confirmed(*locator),
            Record::Cancelled { locator } => self.apply_ended(*locator, BookingStatus::Cancelled),
            Record::Expired { locator } => self.apply_ended(*locator, BookingStatus::Expired),
            Record::MovePaused {
                move_id,
                first,
                last,
                target,
                target_address,
                version,
                paused_ms,
            } => {
                let request = super::MoveRequest {
                    first: *first,
                    last: *last,
                    target: *target,
                    target_address: target_address.clone(),
                    version: *version,
                };
                self.apply_move_paused(request, *move_id, *paused_ms)
            }
            Record::Imported { import } => self.apply_imported(import),
            Record::HandedOff { move_id } => self.apply_handed_off(*move_id),
            Record::FinishAcked { txn, slot, commit } => {
                if self.outbox.get(&(*txn, *slot)) == Some(commit) {
                    self.outbox.remove(&(*txn, *slot));
                }
                Ok(())
            }
        }
    }

    fn apply_booked(&mut self, new: NewBooking<'_>) -> Result<(), ApplyError> {
        let txn = new.txn;
        if self.txns.contains_key(&txn) || self.reservations.contains_key(&txn) {
            return fail(txn, "the transaction id is already in use");
        }
        let segments = self.segments_with_room(txn, &new.request.segments, new.request.seats)?;
        self.check_locator_free(txn, new.locator)?;
        self.take_seats(&segments, new.request.seats);
        self.reservations.insert(
            txn,
            Reservation {
                home_slot: new.locator.slot(),
                segments,
                seats: new.request.seats,
                state: ReservationState::Committed,
            },
        );
        let home = HomeTxn {
            home_slot: Some(new.locator.slot()),
            // Every slot of its segments, so that a cancel still reaches
            // the seats of a slot that has moved to another shard.
            participants: distinct_slots(new.request.segments.iter().map(String::as_str)),
            outcome: Outcome::Committed(new.locator),
        };
        self.txns.insert(txn, home);
        self.register_request(new.request, txn);
        self.insert_booking(new);
        Ok(())
    }

    fn apply_prepared(&mut self, record: &Record) -> Result<(), ApplyError> {
        let Record::Prepared {
            txn,
            home_slot,
            segments,
            seats,
            deadline_ms,
            participant_slots,
            booking,
            claim,
        } = record
        else {
            return Ok(());
        };
        let txn = *txn;
        if self.reservations.contains_key(&txn) {
            return fail(txn, "a reservation already exists");
        }
        if booking.is_some() && self.txns.contains_key(&txn) {
            return fail(txn, "the home transaction already exists");
        }
        let indexes = self.segments_with_room(txn, segments, *seats)?;
        self.take_seats(&indexes, *seats);
        let state = ReservationState::Prepared {
            deadline_ms: *deadline_ms,
        };
        let reservation = Reservation {
            home_slot: *home_slot,
            segments: indexes,
            seats: *seats,
            state,
        };
        self.reservations.insert(txn, reservation);
        if let Some(claim) = claim {
            let key = request_key(&claim.document, &claim.request_id);
            if !self.request_ids.contains_key(&key) {
                self.claims.entry(key).or_insert(claim.fingerprint);
            }
        }
        match booking {
            Some(request) => {
                self.register_request(request, txn);
                self.home_deadlines.insert((*deadline_ms, txn));
                let outcome = Outcome::Pending {
                    request: request.clone(),
                    deadline_ms: *deadline_ms,
                };
                let home = HomeTxn {
                    home_slot: Some(*home_slot),
                    participants: participant_slots.clone(),
                    outcome,
                };
                self.txns.insert(txn, home);
            }
            None => {
                self.participant_deadlines.insert((*deadline_ms, txn));
            }
        }
        Ok(())
    }

    fn apply_committed(
        &mut self,
        txn: TxnId,
        locator: Locator,
        created_ms: i64,
        expires_ms: Option<i64>,
    ) -> Result<(), ApplyError> {
        let Some(home) = self.txns.get(&txn) else {
            return fail(txn, "commit of a transaction this shard never prepared");
        };
        let Outcome::Pending {
            request,
            deadline_ms,
        } = &home.outcome
        else {
            return fail(txn, "commit of a transaction already decided");
        };
        self.check_locator_free(txn, locator)?;
        let (request, deadline_ms) = (request.clone(), *deadline_ms);
        let participants = home.participants.clone();
        self.home_deadlines.remove(&(deadline_ms, txn));
        if let Some(reservation) = self.reservations.get_mut(&txn) {
            if matches!(reservation.state, ReservationState::Prepared { .. }) {
                reservation.state = ReservationState::Committed;
            }
        }
        if let Some(home) = self.txns.get_mut(&txn) {
            home.outcome = Outcome::Committed(locator);
        }
        self.insert_booking(NewBooking {
            txn,
            locator,
            request: &request,
            created_ms,
            expires_ms,
        });
        self.queue_finishes(txn, &participants, true);
        Ok(())
    }

    fn apply_aborted(
        &mut self,
        txn: TxnId,
        named: &[u16],
        home_slot: Option<u16>,
    ) -> Result<(), ApplyError> {
        let (mut participants, home_slot) = match self.txns.get(&txn) {
            None => (Vec::new(), home_slot),
            Some(HomeTxn {
                outcome: Outcome::Pending { deadline_ms, .. },
                participants,
                home_slot,
            }) => {
                self.home_deadlines.remove(&(*deadline_ms, txn));
                (participants.clone(), *home_slot)
            }
            Some(_) => return fail(txn, "abort of a transaction already decided"),
        };
        for slot in named {
            if !participants.contains(slot) {
                participants.push(*slot);
            }
        }
        self.release(txn);
        self.queue_finishes(txn, &participants, false);
        let home = HomeTxn {
            home_slot,
            participants,
            outcome: Outcome::Aborted,
        };
        self.txns.insert(txn, home);
        Ok(())
    }

    fn apply_finished(&mut self, txn: TxnId, commit: bool) -> Result<(), ApplyError> {
        let Some(reservation) = self.reservations.get_mut(&txn) else {
            if commit {
                return fail(txn, "commit of a reservation this shard never prepared");
            }
            let tombstone = Reservation {
                home_slot: 0,
                segments: Vec::new(),
                seats: 0,
                state: ReservationState::Released,
            };
            self.reservations.insert(txn, tombstone);
            return Ok(());
        };
        if let ReservationState::Prepared { deadline_ms } = reservation.state {
            self.participant_deadlines.remove(&(deadline_ms, txn));
            if commit {
                reservation.state = ReservationState::Committed;
                return Ok(());
            }
        }
        if !commit {
            self.release(txn);
        }
        Ok(())
    }

    fn apply_confirmed(&mut self, locator: Locator) -> Result<(), ApplyError> {
        let Some(booking) = self.bookings.get_mut(&locator) else {
            return fail(0, format!("confirm of unknown booking {locator}"));
        };
        if booking.status != BookingStatus::Held {
            return fail(
                booking.txn,
                format!("confirm of booking {locator} that is not held"),
            );
        }
        booking.status = BookingStatus::Confirmed;
        if let Some(expires_ms) = booking.expires_ms {
            self.holds.remove(&(expires_ms, locator));
        }
        Ok(())
    }

    /// Cancels or expires a booking: its seats here are released and the
    /// other participants are told to release theirs.
    fn apply_ended(&mut self, locator: Locator, status: BookingStatus) -> Result<(), ApplyError> {
        let Some(booking) = self.bookings.get_mut(&locator) else {
            return fail(0, format!("{status} change of unknown booking {locator}"));
        };
        let allowed = match status {
            BookingStatus::Expired => booking.status == BookingStatus::Held,
            _ => booking.status.takes_seats(),
        };
        if !allowed {
            return fail(
                booking.txn,
                format!(
                    "booking {locator} is {} and cannot become {status}",
                    booking.status
                ),
            );
        }
        booking.status = status;
        let txn = booking.txn;
        if let Some(expires_ms) = booking.expires_ms {
            self.holds.remove(&(expires_ms, locator));
        }
        self.release(txn);
        let participants = self
            .txns
            .get(&txn)
            .map(|home| home.participants.clone())
            .unwrap_or_default();
        self.queue_finishes(txn, &participants, false);
        Ok(())
    }

    /// Resolves `ids` to segments that each have `seats` left.
    fn segments_with_room(
        &self,
        txn: TxnId,
        ids: &[String],
        seats: u32,
    ) -> Result<Vec<SegmentIndex>, ApplyError> {
        let mut indexes = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(index) = self.catalog.find(id) else {
                return fail(txn, format!("unknown segment {id}"));
            };
            if self.catalog.entry(index).seats_left() < seats || indexes.contains(&index) {
                return fail(txn, format!("segment {id} has not enough seats left"));
            }
            indexes.push(index);
        }
        Ok(indexes)
    }

    fn check_locator_free(&self, txn: TxnId, locator: Locator) -> Result<(), ApplyError> {
        if self.bookings.contains_key(&locator) {
            return fail(txn, format!("locator {locator} is already in use"));
        }
        Ok(())
    }

    fn take_seats(&mut self, segments: &[SegmentIndex], seats: u32) {
        for &index in segments {
            self.catalog.entry_mut(index).taken += seats;
        }
    }

    /// Frees the seats of this shard's reservation for `txn`, if it still
    /// counts any.
    pub(super) fn release(&mut self, txn: TxnId) {
        let Some(reservation) = self.reservations.get_mut(&txn) else {
            return;
        };
        if let ReservationState::Prepared { deadline_ms } = reservation.state {
            self.participant_deadlines.remove(&(deadline_ms, txn));
        }
        if reservation.state == ReservationState::Released {
            return;
        }
        reservation.state = ReservationState::Released;
        let segments = std::mem::take(&mut reservation.segments);
        let seats = reservation.seats;
        for index in segments {
            let entry = self.catalog.entry_mut(index);
            entry.taken = entry.taken.saturating_sub(seats);
        }
    }

    /// Queues a finish for every participant slot that this shard does not
    /// own, replacing any earlier outcome still queued for them. The slots
    /// this shard owns are finished by the record itself.
    fn queue_finishes(&mut self, txn: TxnId, participants: &[u16], commit: bool) {
        let slots: Vec<u16> = participants
            .iter()
            .copied()
            .filter(|&slot| !self.owns(slot))
            .collect();
        if slots.is_empty() {
            return;
        }
        for &slot in &slots {
            self.outbox.insert((txn, slot), commit);
        }
        self.new_finishes.push(FinishJob { txn, commit, slots });
    }

    fn register_request(&mut self, request: &BookRequest, txn: TxnId) {
        if let Some(request_id) = &request.request_id {
            let key = request_key(&request.passenger.document, request_id);
            let entry = RequestEntry {
                fingerprint: request.fingerprint(),
                txn,
            };
            self.request_ids.insert(key, entry);
        }
    }

    fn insert_booking(&mut self, new: NewBooking<'_>) {
        let request = new.request;
        let status = match new.expires_ms {
            Some(expires_ms) => {
                self.holds.insert((expires_ms, new.locator));
                BookingStatus::Held
            }
            None => BookingStatus::Confirmed,
        };
        let booking = BookingRecord {
            txn: new.txn,
            seq: self.next_seq,
            passenger: request.passenger.clone(),
            segments: request.segments.clone(),
            seats: request.seats,
            status,
            created_ms: new.created_ms,
            expires_ms: new.expires_ms,
        };
        self.next_seq += 1;
        self.by_document
            .entry(request.passenger.document.clone())
            .or_default()
            .push(new.locator);
        self.bookings.insert(new.locator, booking);
    }
}
