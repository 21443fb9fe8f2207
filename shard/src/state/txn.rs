//! Two-phase commit: prepare on every participant, decide at home, finish
//! from home, resolve when a participant's deadline passes, and the timers
//! that drive expiry and deadlines.

use trecho_common::error::Error;
use trecho_common::hashing::{slot, SLOT_COUNT};
use trecho_common::internal::{Claim, ShardError, ShardReply, TxnId};
use trecho_common::protocol::methods::BookRequest;

use super::booking::Prior;
use super::{check_shape, request_key, Outcome, RecordSink, ReservationState, State};
use crate::record::Record;

/// The fields of [`trecho_common::internal::ShardOp::Prepare`].
pub(super) struct Prepare {
    pub txn: TxnId,
    pub home_slot: u16,
    pub segments: Vec<String>,
    pub seats: u32,
    pub deadline_ms: i64,
    pub participant_slots: Vec<u16>,
    pub booking: Option<BookRequest>,
    pub claim: Option<Claim>,
}

/// A prepared reservation whose deadline passed while its home is another
/// shard: the caller must ask that shard for the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DueResolve {
    /// The transaction.
    pub txn: TxnId,
    /// Its home slot.
    pub home_slot: u16,
}

/// Rejects a participant slot past the last slot.
fn check_participant_slots(slots: &[u16]) -> Result<(), ShardError> {
    match slots.iter().find(|&&slot| slot >= SLOT_COUNT) {
        Some(slot) => Err(ShardError::BadRequest {
            message: format!(
                "participant slot {slot} is out of range; slots run from 0 to {}",
                SLOT_COUNT - 1
            ),
        }),
        None => Ok(()),
    }
}

fn aborted(txn: TxnId) -> ShardError {
    Error::internal(format!(
        "transaction {txn} was aborted before it committed (its prepare deadline passed or a participant refused); nothing was booked, book again"
    ))
    .into()
}

impl State {
    /// Phase one: checks this shard's segments and records a prepared
    /// reservation, plus the pending transaction when this is the home.
    pub(super) fn prepare(
        &mut self,
        prepare: Prepare,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<ShardReply, ShardError> {
        // The shard that only holds the request id's claim has no segments.
        if prepare.claim.is_none() || !prepare.segments.is_empty() {
            check_shape(&prepare.segments, prepare.seats)?;
        }
        self.check_owns_all(&prepare.segments)?;
        check_participant_slots(&prepare.participant_slots)?;
        if let Some(reply) = self.earlier_prepare(&prepare, now_ms)? {
            return Ok(reply);
        }
        if let Some(booking) = &prepare.booking {
            self.check_slot(prepare.home_slot)?;
            if booking.request_id.is_some() {
                // The owner of the document's slot keeps the document's
                // request ids: this shard, or a participant that claims
                // the request id there.
                let document_slot = slot(&booking.passenger.document);
                if !prepare.participant_slots.contains(&document_slot) {
                    self.check_slot(document_slot)?;
                }
            }
            if let Prior::Booked(locator) = self.prior_attempt(booking, Some(prepare.txn), sink)? {
                return Ok(self.booking_reply(locator, now_ms));
            }
        }
        if let Some(claim) = &prepare.claim {
            self.check_slot(slot(&claim.document))?;
            self.check_claim(claim)?;
        }
        self.check_segments(&prepare.segments, prepare.seats, now_ms)?;
        let cap = now_ms.saturating_add(self.prepare_timeout_ms);
        let record = Record::Prepared {
            txn: prepare.txn,
            home_slot: prepare.home_slot,
            segments: prepare.segments,
            seats: prepare.seats,
            deadline_ms: prepare.deadline_ms.min(cap),
            participant_slots: prepare.participant_slots,
            booking: prepare.booking,
            claim: prepare.claim,
        };
        self.emit(record, sink)?;
        tracing::debug!(shard.id = self.shard_id, txn = prepare.txn, "prepared");
        Ok(ShardReply::Prepared)
    }

    /// Answers a prepare for a transaction this shard already saw: a
    /// repeat gets the same answer, and a released or aborted one is
    /// refused so a late prepare cannot take seats.
    fn earlier_prepare(
        &self,
        prepare: &Prepare,
        now_ms: i64,
    ) -> Result<Option<ShardReply>, ShardError> {
        let txn = prepare.txn;
        if let Some(home) = self.txns.get(&txn) {
            return match &home.outcome {
                Outcome::Pending { .. } => Ok(Some(ShardReply::Prepared)),
                Outcome::Committed(locator) => Ok(Some(self.booking_reply(*locator, now_ms))),
                Outcome::Aborted => Err(aborted(txn)),
            };
        }
        match self.reservations.get(&txn).map(|r| r.state) {
            None => Ok(None),
            Some(ReservationState::Released) => Err(aborted(txn)),
            Some(_) => Ok(Some(ShardReply::Prepared)),
        }
    }

    /// Rejects a claim on a request id that this shard knows with another
    /// fingerprint, as a home or as the owner of the document's slot.
    fn check_claim(&self, claim: &Claim) -> Result<(), ShardError> {
        let key = request_key(&claim.document, &claim.request_id);
        let home = self.request_ids.get(&key).map(|entry| entry.fingerprint);
        let claimed = self.claims.get(&key).copied();
        let reused = [home, claimed]
            .into_iter()
            .flatten()
            .any(|fingerprint| fingerprint != claim.fingerprint);
        if reused {
            return Err(Error::RequestIdReused {
                request_id: claim.request_id.clone(),
            }
            .into());
        }
        Ok(())
    }

    /// Phase two at home: the one place a transaction's outcome is chosen.
    /// A decision is final; a later decide gets the recorded answer.
    pub(super) fn decide(
        &mut self,
        txn: TxnId,
        home_slot: u16,
        commit: bool,
        participant_slots: Vec<u16>,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<ShardReply, ShardError> {
        self.check_slot(home_slot)?;
        check_participant_slots(&participant_slots)?;
        let outcome = self.txns.get(&txn).map(|home| &home.outcome);
        match outcome {
            Some(Outcome::Committed(locator)) => Ok(self.booking_reply(*locator, now_ms)),
            Some(Outcome::Aborted) if commit => Err(aborted(txn)),
            Some(Outcome::Aborted) => Ok(ShardReply::Ack),
            Some(Outcome::Pending { deadline_ms, .. }) if commit && now_ms < *deadline_ms => {
                self.commit(txn, home_slot, now_ms, sink)
            }
            // Unknown, aborted on request, or past its deadline: abort,
            // telling every named participant, so none keeps its seats.
            _ => {
                let record = Record::Aborted {
                    txn,
                    participant_slots,
                    home_slot: Some(home_slot),
                };
                self.emit(record, sink)?;
                tracing::debug!(shard.id = self.shard_id, txn, "aborted");
                if commit {
                    Err(aborted(txn))
                } else {
                    Ok(ShardReply::Ack)
                }
            }
        }
    }

    fn commit(
        &mut self,
        txn: TxnId,
        home_slot: u16,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<ShardReply, ShardError> {
        let hold_seconds = match self.txns.get(&txn).map(|home| &home.outcome) {
            Some(Outcome::Pending { request, .. }) => request.hold_seconds,
            _ => None,
        };
        let locator = self.new_locator(home_slot)?;
        let record = Record::Committed {
            txn,
            locator,
            created_ms: now_ms,
            expires_ms: hold_seconds.map(|seconds| now_ms + i64::from(seconds) * 1000),
        };
        self.emit(record, sink)?;
        tracing::debug!(shard.id = self.shard_id, txn, booking = %locator, "committed");
        Ok(self.booking_reply(locator, now_ms))
    }

    /// The outcome from home on a participant: commit keeps the seats,
    /// release frees them; a release of an unknown transaction leaves a
    /// tombstone. `slots` are the participant slots the sender meant, which
    /// this shard must own.
    pub(super) fn finish(
        &mut self,
        txn: TxnId,
        commit: bool,
        slots: &[u16],
        sink: &mut dyn RecordSink,
    ) -> Result<ShardReply, ShardError> {
        slots.iter().try_for_each(|&slot| self.check_slot(slot))?;
        if self.txns.contains_key(&txn) {
            return Err(ShardError::BadRequest {
                message: format!(
                    "shard {} is the home of transaction {txn} and finishes it itself",
                    self.shard_id
                ),
            });
        }
        let state = self.reservations.get(&txn).map(|r| r.state);
        let changes = match state {
            // A commit comes only after every prepare succeeded, so the
            // reservation was here. It moved with its slot, or it was a
            // request id's claim alone, which takes no seats and stays on
            // the shard it was prepared on when the document's slot moves;
            // that shard resolves it at its deadline. Nothing is left to do
            // here.
            None if commit => {
                tracing::debug!(
                    shard.id = self.shard_id,
                    txn,
                    "commit of a reservation that is not here"
                );
                return Ok(ShardReply::Ack);
            }
            None | Some(ReservationState::Prepared { .. }) => true,
            Some(ReservationState::Committed) => !commit,
            Some(ReservationState::Released) => false,
        };
        if changes {
            self.emit(Record::Finished { txn, commit }, sink)?;
            tracing::debug!(shard.id = self.shard_id, txn, commit, "finished");
        }
        Ok(ShardReply::Ack)
    }

    /// A participant asks home for the outcome. Without a decision, home
    /// records an abort first (a tombstone if it never heard of the
    /// transaction), so a late commit cannot win.
    pub(super) fn resolve(
        &mut self,
        txn: TxnId,
        home_slot: u16,
        sink: &mut dyn RecordSink,
    ) -> Result<ShardReply, ShardError> {
        self.check_slot(home_slot)?;
        let committed = match self.txns.get(&txn).map(|home| &home.outcome) {
            Some(Outcome::Committed(_)) => true,
            Some(Outcome::Aborted) => false,
            Some(Outcome::Pending { .. }) | None => {
                let participant_slots = Vec::new();
                let record = Record::Aborted {
                    txn,
                    participant_slots,
                    home_slot: Some(home_slot),
                };
                self.emit(record, sink)?;
                tracing::debug!(shard.id = self.shard_id, txn, "aborted on resolve");
                false
            }
        };
        Ok(ShardReply::Outcome { committed })
    }

    /// Records a participant's acknowledgement of a finish, unless a later
    /// outcome replaced the one acknowledged.
    pub fn acknowledge(
        &mut self,
        txn: TxnId,
        slot: u16,
        commit: bool,
        sink: &mut dyn RecordSink,
    ) -> Result<(), ShardError> {
        if self.outbox.get(&(txn, slot)) != Some(&commit) {
            return Ok(());
        }
        self.emit(Record::FinishAcked { txn, slot, commit }, sink)
    }

    /// Applies the outcome a participant learned by resolving.
    pub fn apply_outcome(
        &mut self,
        txn: TxnId,
        committed: bool,
        sink: &mut dyn RecordSink,
    ) -> Result<(), ShardError> {
        self.finish(txn, committed, &[], sink).map(|_| ())
    }

    /// Runs every timer due at `now_ms`: expires holds, aborts pending home
    /// transactions past their deadline, and returns the prepared
    /// reservations past theirs whose home is another shard. Those whose
    /// home is this shard are resolved here.
    pub fn tick(
        &mut self,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<Vec<DueResolve>, ShardError> {
        self.expire_due(now_ms, sink)?;
        while let Some(&(deadline_ms, txn)) = self.home_deadlines.first() {
            if deadline_ms > now_ms {
                break;
            }
            tracing::debug!(
                shard.id = self.shard_id,
                txn,
                "pending transaction passed its deadline"
            );
            let participant_slots = Vec::new();
            let record = Record::Aborted {
                txn,
                participant_slots,
                home_slot: None,
            };
            self.emit(record, sink)?;
        }
        let mut due = Vec::new();
        while let Some(&(deadline_ms, txn)) = self.participant_deadlines.first() {
            if deadline_ms > now_ms {
                break;
            }
            self.participant_deadlines.remove(&(deadline_ms, txn));
            let Some(reservation) = self.reservations.get(&txn) else {
                continue;
            };
            let home_slot = reservation.home_slot;
            if self.owns(home_slot) {
                self.resolve_locally(txn, home_slot, sink)?;
            } else {
                due.push(DueResolve { txn, home_slot });
            }
        }
        Ok(due)
    }

    /// Resolves a reservation whose home slot is this shard's although its
    /// prepare carried no booking.
    fn resolve_locally(
        &mut self,
        txn: TxnId,
        home_slot: u16,
        sink: &mut dyn RecordSink,
    ) -> Result<(), ShardError> {
        if let ShardReply::Outcome { committed } = self.resolve(txn, home_slot, sink)? {
            self.reservation_outcome(txn, committed, sink)?;
        }
        Ok(())
    }

    /// Applies an outcome to this shard's reservation directly, even when
    /// this shard also holds the transaction's home record.
    fn reservation_outcome(
        &mut self,
        txn: TxnId,
        committed: bool,
        sink: &mut dyn RecordSink,
    ) -> Result<(), ShardError> {
        let prepared = matches!(
            self.reservations.get(&txn).map(|r| r.state),
            Some(ReservationState::Prepared { .. })
        );
        if prepared {
            self.emit(
                Record::Finished {
                    txn,
                    commit: committed,
                },
                sink,
            )?;
        }
        Ok(())
    }

    /// Returns the earliest timer, Unix milliseconds.
    pub fn next_timer(&self) -> Option<i64> {
        let holds = self.holds.first().map(|&(at, _)| at);
        let home = self.home_deadlines.first().map(|&(at, _)| at);
        let participant = self.participant_deadlines.first().map(|&(at, _)| at);
        [holds, home, participant].into_iter().flatten().min()
    }
}
