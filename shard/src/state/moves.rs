//! Moving slots between shards, as docs/design.md "One move" describes.
//!
//! The source pauses the slots with one record, [`Record::MovePaused`],
//! whose apply takes everything filed under them out of the state. The
//! owner task then sends that state to the target, which writes it as one
//! [`Record::Imported`]. From that record on, the target owns the slots.
//! Once the target replies, the source writes [`Record::HandedOff`] and
//! gives the slots to the target in its map.
//!
//! Reservations are split by slot: a reservation on two segments in two
//! slots moves the part in the moved slot and keeps the other. When the
//! target already has a part of the same transaction, the two parts merge
//! into one reservation. If the target's part was already released, the
//! transaction has ended, so the arriving part is released too.

use trecho_common::error::Error;
use trecho_common::hashing::slot;
use trecho_common::internal::{
    Claim, MoveView, MovedBooking, MovedOutcome, MovedRequestId, MovedReservation, MovedSegment,
    MovedTxn, ShardError, ShardReply, SlotImport, SlotState, TxnId,
};
use trecho_common::shardmap::ShardMap;
use trecho_common::types::Locator;

use super::apply::ApplyError;
use super::{
    request_key, BookingRecord, HomeTxn, Outcome, RecordSink, RequestEntry, Reservation,
    ReservationState, State,
};
use crate::record::Record;

/// Retry delay in milliseconds suggested to a request that was rejected
/// because its slot is moving.
pub(crate) const RETRY_AFTER_MS: u64 = 50;

/// A move of slots out of this shard, from its pause until its hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MoveOut {
    pub move_id: u64,
    pub first: u16,
    pub last: u16,
    pub target: u32,
    pub target_address: String,
    pub version: u64,
    pub paused_ms: i64,
    /// State of the slots at the pause.
    pub state: SlotState,
}

impl MoveOut {
    /// Returns the move as `cluster.status` reports it.
    pub fn view(&self) -> MoveView {
        MoveView {
            first: self.first,
            last: self.last,
            target: self.target,
            version: self.version,
            rows: self.state.rows(),
            paused_since_ms: self.paused_ms,
        }
    }

    /// Builds the request that hands the slots to the target.
    pub fn import(&self, source: u32, map: &ShardMap) -> SlotImport {
        let mut map = map.clone();
        // The target gets the source's map with this move applied, so it
        // learns every shard's address. On a valid map, `assign` fails only
        // on an invalid range, and `start_move` rejects those before the
        // pause.
        let _ = map.assign(
            self.first,
            self.last,
            self.target,
            &self.target_address,
            self.version,
        );
        SlotImport {
            move_id: self.move_id,
            source,
            first: self.first,
            last: self.last,
            version: self.version,
            map,
            state: self.state.clone(),
        }
    }

    fn contains(&self, slot: u16) -> bool {
        (self.first..=self.last).contains(&slot)
    }
}

/// Outcome of a `move_slots` request at the source shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoveStart {
    /// This request paused the slots and started the move with this id.
    Started(u64),
    /// A move of the same slots to the same target was already running,
    /// with this id.
    Running(u64),
    /// The target already owns the slots. `version` is this shard's map
    /// version.
    Done { version: u64 },
}

impl State {
    /// Returns whether `slot` is paused by a move out of this shard.
    pub(crate) fn is_moving(&self, slot: u16) -> bool {
        self.moving.as_ref().is_some_and(|m| m.contains(slot))
    }

    /// Returns the move out of this shard that is not handed off yet, if
    /// any.
    pub fn moving(&self) -> Option<&MoveOut> {
        self.moving.as_ref()
    }

    /// Starts moving slots `first..=last` to `target`. Validates the
    /// request and writes [`Record::MovePaused`], whose apply takes the
    /// slots' state out of this shard.
    pub fn start_move(
        &mut self,
        request: MoveRequest,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<MoveStart, ShardError> {
        let MoveRequest {
            first,
            last,
            target,
            target_address,
            version,
        } = request;
        let bad = |message: String| ShardError::Client {
            error: Error::invalid_params(message),
        };
        if first > last || last >= trecho_common::hashing::SLOT_COUNT {
            return Err(bad(format!(
                "slots {first}-{last} are not a range of slots from 0 to 16383"
            )));
        }
        if target == self.shard_id {
            return Err(bad(format!(
                "shard {target} cannot move slots to itself; name another shard"
            )));
        }
        if let Some(running) = &self.moving {
            if (running.first, running.last, running.target) == (first, last, target) {
                return Ok(MoveStart::Running(running.move_id));
            }
            return Err(Error::Overloaded {
                message: format!(
                    "shard {} is moving slots {}-{} to shard {}; wait for that move to end",
                    self.shard_id, running.first, running.last, running.target
                ),
            }
            .into());
        }
        let slots = first..=last;
        if slots.clone().all(|s| self.map.owns(target, s)) {
            return Ok(MoveStart::Done {
                version: self.map.version,
            });
        }
        if let Some(other) = slots.clone().find(|&s| !self.owns(s)) {
            return Err(bad(format!(
                "shard {} does not own slot {other} of {first}-{last}; ask cluster.status \
                 for the owners and move each shard's part separately",
                self.shard_id
            )));
        }
        if version <= self.map.version {
            return Err(bad(format!(
                "map version {version} is not above shard {}'s version {}; the new version \
                 must be higher than every shard's",
                self.shard_id, self.map.version
            )));
        }
        let move_id = loop {
            let id = self.rng.next_u64();
            if id != 0 {
                break id;
            }
        };
        let record = Record::MovePaused {
            move_id,
            first,
            last,
            target,
            target_address,
            version,
            paused_ms: now_ms,
        };
        self.emit(record, sink)?;
        Ok(MoveStart::Started(move_id))
    }

    /// Writes [`Record::HandedOff`] after the target imported move
    /// `move_id`. Returns the handed-off move, or `None` when no move with
    /// that id is running.
    pub fn hand_off(
        &mut self,
        move_id: u64,
        sink: &mut dyn RecordSink,
    ) -> Result<Option<MoveOut>, ShardError> {
        let Some(running) = self.moving.clone() else {
            return Ok(None);
        };
        if running.move_id != move_id {
            return Ok(None);
        }
        self.emit(Record::HandedOff { move_id }, sink)?;
        Ok(Some(running))
    }

    /// Validates an `import_slots` request and writes [`Record::Imported`],
    /// which gives this shard the moved slots and their state. A repeated
    /// import of the same move returns `Imported` without a second record.
    pub(super) fn import(
        &mut self,
        import: SlotImport,
        sink: &mut dyn RecordSink,
    ) -> Result<ShardReply, ShardError> {
        if self.imported.contains(&import.move_id) {
            return Ok(ShardReply::Imported);
        }
        if import.first > import.last || import.last >= trecho_common::hashing::SLOT_COUNT {
            return Err(ShardError::BadRequest {
                message: format!("invalid slot range {}-{}", import.first, import.last),
            });
        }
        if let Some(owned) = (import.first..=import.last).find(|&s| self.map.owns(self.shard_id, s))
        {
            return Err(ShardError::BadRequest {
                message: format!(
                    "shard {} already owns slot {owned}, so it cannot import move {} of slots \
                     {}-{} from shard {}",
                    self.shard_id, import.move_id, import.first, import.last, import.source
                ),
            });
        }
        self.emit(
            Record::Imported {
                import: Box::new(import),
            },
            sink,
        )?;
        Ok(ShardReply::Imported)
    }

    /// Applies [`Record::MovePaused`] by taking the slots' state out of this
    /// shard and keeping it as the move's copy.
    pub(super) fn apply_move_paused(
        &mut self,
        request: MoveRequest,
        move_id: u64,
        paused_ms: i64,
    ) -> Result<(), ApplyError> {
        if let Some(running) = &self.moving {
            return Err(ApplyError::new(
                0,
                format!(
                    "move {move_id} paused while move {} is running",
                    running.move_id
                ),
            ));
        }
        let state = self.take_slots(request.first, request.last);
        self.moving = Some(MoveOut {
            move_id,
            first: request.first,
            last: request.last,
            target: request.target,
            target_address: request.target_address,
            version: request.version,
            paused_ms,
            state,
        });
        Ok(())
    }

    /// Applies [`Record::HandedOff`].
    pub(super) fn apply_handed_off(&mut self, move_id: u64) -> Result<(), ApplyError> {
        let Some(running) = self.moving.take_if(|m| m.move_id == move_id) else {
            return Err(ApplyError::new(
                0,
                format!("hand-off of move {move_id}, which is not running"),
            ));
        };
        self.map
            .assign(
                running.first,
                running.last,
                running.target,
                &running.target_address,
                running.version,
            )
            .map_err(|e| ApplyError::new(0, format!("hand-off of move {move_id}: {e}")))
    }

    /// Applies [`Record::Imported`].
    pub(super) fn apply_imported(&mut self, import: &SlotImport) -> Result<(), ApplyError> {
        if self.imported.contains(&import.move_id) {
            return Ok(());
        }
        let own_address = self
            .map
            .shard(self.shard_id)
            .map(|s| s.address.clone())
            .map_err(|e| ApplyError::new(0, e.to_string()))?;
        let mut map = self.map.clone();
        map.assign(
            import.first,
            import.last,
            self.shard_id,
            &own_address,
            import.version,
        )
        .map_err(|e| ApplyError::new(0, format!("import of move {}: {e}", import.move_id)))?;
        let state = &import.state;
        let specs: Vec<_> = state.segments.iter().map(|s| s.spec.clone()).collect();
        let moved_to = self
            .catalog
            .add(&specs)
            .map_err(|e| ApplyError::new(0, format!("import of move {}: {e}", import.move_id)))?;
        if let Some(moved_to) = moved_to {
            for reservation in self.reservations.values_mut() {
                for index in &mut reservation.segments {
                    *index = moved_to[*index as usize];
                }
            }
        }
        self.map = map;
        for segment in &state.segments {
            if let Some(index) = self.catalog.find(&segment.spec.id) {
                self.catalog.entry_mut(index).taken = segment.taken;
            }
        }
        self.owned_segments += state.segments.len() as u64;
        for moved in &state.reservations {
            self.import_reservation(moved);
        }
        for moved in &state.txns {
            self.import_txn(moved);
        }
        let mut bookings: Vec<&MovedBooking> = state.bookings.iter().collect();
        bookings.sort_by_key(|b| (b.created_ms, b.locator));
        for moved in bookings {
            self.import_booking(moved);
        }
        for moved in &state.request_ids {
            let key = request_key(&moved.document, &moved.request_id);
            let entry = RequestEntry {
                fingerprint: moved.fingerprint,
                txn: moved.txn,
            };
            self.request_ids.entry(key).or_insert(entry);
        }
        for claim in &state.claims {
            let key = request_key(&claim.document, &claim.request_id);
            if !self.request_ids.contains_key(&key) {
                self.claims.entry(key).or_insert(claim.fingerprint);
            }
        }
        self.import_outbox(&state.outbox);
        // Finishes that this shard queued for these slots while another
        // shard owned them now apply to its own reservations.
        let own_now: Vec<((TxnId, u16), bool)> = self
            .outbox
            .iter()
            .filter(|((_, slot), _)| (import.first..=import.last).contains(slot))
            .map(|(&key, &commit)| (key, commit))
            .collect();
        for (key, commit) in own_now {
            self.outbox.remove(&key);
            self.finish_here(key.0, commit);
        }
        self.imported.insert(import.move_id);
        self.rebuild_participant_deadlines();
        Ok(())
    }

    fn import_reservation(&mut self, moved: &MovedReservation) {
        let indexes: Vec<_> = moved
            .segments
            .iter()
            .filter_map(|id| self.catalog.find(id))
            .collect();
        let state = match moved.prepared_deadline_ms {
            Some(deadline_ms) => ReservationState::Prepared { deadline_ms },
            None => ReservationState::Committed,
        };
        match self.reservations.get_mut(&moved.txn) {
            None => {
                let reservation = Reservation {
                    home_slot: moved.home_slot,
                    segments: indexes,
                    seats: moved.seats,
                    state,
                };
                self.reservations.insert(moved.txn, reservation);
            }
            // The transaction already ended on this shard, so the seats of
            // the arriving part are released too.
            Some(existing) if existing.state == ReservationState::Released => {
                for index in indexes {
                    let entry = self.catalog.entry_mut(index);
                    entry.taken = entry.taken.saturating_sub(moved.seats);
                }
            }
            Some(existing) => {
                existing.segments.extend(indexes);
                existing.state = match (existing.state, state) {
                    (
                        ReservationState::Prepared { deadline_ms: a },
                        ReservationState::Prepared { deadline_ms: b },
                    ) => ReservationState::Prepared {
                        deadline_ms: a.min(b),
                    },
                    // A committed part means the transaction committed.
                    _ => ReservationState::Committed,
                };
            }
        }
    }

    fn import_txn(&mut self, moved: &MovedTxn) {
        let outcome = match &moved.outcome {
            MovedOutcome::Pending {
                request,
                deadline_ms,
            } => {
                self.home_deadlines.insert((*deadline_ms, moved.txn));
                Outcome::Pending {
                    request: request.clone(),
                    deadline_ms: *deadline_ms,
                }
            }
            MovedOutcome::Committed { locator } => Outcome::Committed(*locator),
            MovedOutcome::Aborted => Outcome::Aborted,
        };
        let home = HomeTxn {
            home_slot: Some(moved.home_slot),
            participants: moved.participants.clone(),
            outcome,
        };
        self.txns.insert(moved.txn, home);
    }

    fn import_booking(&mut self, moved: &MovedBooking) {
        if let (trecho_common::types::BookingStatus::Held, Some(expires_ms)) =
            (moved.status, moved.expires_ms)
        {
            self.holds.insert((expires_ms, moved.locator));
        }
        let booking = BookingRecord {
            txn: moved.txn,
            seq: self.next_seq,
            passenger: moved.passenger.clone(),
            segments: moved.segments.clone(),
            seats: moved.seats,
            status: moved.status,
            created_ms: moved.created_ms,
            expires_ms: moved.expires_ms,
        };
        self.next_seq += 1;
        self.by_document
            .entry(moved.passenger.document.clone())
            .or_default()
            .push(moved.locator);
        self.bookings.insert(moved.locator, booking);
    }

    /// Takes over the unacknowledged finishes of moved transactions. A
    /// finish for a slot this shard owns is applied at once, and the others
    /// are queued for delivery.
    fn import_outbox(&mut self, outbox: &[(TxnId, u16, bool)]) {
        let mut queued = Vec::new();
        for &(txn, slot, commit) in outbox {
            if self.map.owns(self.shard_id, slot) {
                self.finish_here(txn, commit);
                continue;
            }
            self.outbox.insert((txn, slot), commit);
            queued.push((txn, slot, commit));
        }
        let jobs = super::group_finishes(queued);
        self.new_finishes.extend(jobs);
    }

    /// Applies an outcome to this shard's own reservation of `txn`.
    fn finish_here(&mut self, txn: TxnId, commit: bool) {
        let Some(reservation) = self.reservations.get_mut(&txn) else {
            return;
        };
        match reservation.state {
            ReservationState::Prepared { .. } if commit => {
                reservation.state = ReservationState::Committed;
            }
            ReservationState::Released => {}
            _ if !commit => self.release(txn),
            _ => {}
        }
    }

    /// Takes everything filed under slots `first..=last` out of the state.
    fn take_slots(&mut self, first: u16, last: u16) -> SlotState {
        let inside = |s: u16| (first..=last).contains(&s);
        let mut out = SlotState::default();
        for index in 0..self.catalog.len() as u32 {
            let entry = *self.catalog.entry(index);
            if !inside(entry.slot) || !self.map.owns(self.shard_id, entry.slot) {
                continue;
            }
            out.segments.push(MovedSegment {
                spec: self.catalog.spec(index),
                taken: entry.taken,
            });
            // The catalog entry stays, hidden from reads because this shard
            // no longer serves its slot, so that the segment indexes stored
            // in reservations stay valid.
            self.catalog.entry_mut(index).taken = 0;
        }
        self.owned_segments = self
            .owned_segments
            .saturating_sub(out.segments.len() as u64);
        self.take_reservations(&inside, &mut out);
        let moved_txns: rustc_hash::FxHashSet<TxnId> = self
            .txns
            .iter()
            .filter(|(_, home)| home.home_slot.is_some_and(inside))
            .map(|(&txn, _)| txn)
            .collect();
        for &txn in &moved_txns {
            let Some(home) = self.txns.remove(&txn) else {
                continue;
            };
            let outcome = match home.outcome {
                Outcome::Pending {
                    request,
                    deadline_ms,
                } => {
                    self.home_deadlines.remove(&(deadline_ms, txn));
                    MovedOutcome::Pending {
                        request,
                        deadline_ms,
                    }
                }
                Outcome::Committed(locator) => MovedOutcome::Committed { locator },
                Outcome::Aborted => MovedOutcome::Aborted,
            };
            out.txns.push(MovedTxn {
                txn,
                home_slot: home.home_slot.unwrap_or_default(),
                participants: home.participants,
                outcome,
            });
        }
        let outbox: Vec<(TxnId, u16)> = self
            .outbox
            .keys()
            .filter(|(txn, _)| moved_txns.contains(txn))
            .copied()
            .collect();
        for key in outbox {
            if let Some(commit) = self.outbox.remove(&key) {
                out.outbox.push((key.0, key.1, commit));
            }
        }
        self.take_bookings(&inside, &mut out);
        let request_keys: Vec<String> = self
            .request_ids
            .iter()
            .filter(|(_, entry)| moved_txns.contains(&entry.txn))
            .map(|(key, _)| key.clone())
            .collect();
        for key in request_keys {
            if let Some(entry) = self.request_ids.remove(&key) {
                let (document, request_id) = split_key(&key);
                out.request_ids.push(MovedRequestId {
                    document,
                    request_id,
                    fingerprint: entry.fingerprint,
                    txn: entry.txn,
                });
            }
        }
        let claim_keys: Vec<String> = self
            .claims
            .keys()
            .filter(|key| inside(slot(&split_key(key).0)))
            .cloned()
            .collect();
        for key in claim_keys {
            if let Some(fingerprint) = self.claims.remove(&key) {
                let (document, request_id) = split_key(&key);
                out.claims.push(Claim {
                    document,
                    request_id,
                    fingerprint,
                });
            }
        }
        self.rebuild_participant_deadlines();
        out
    }

    /// Splits every unreleased reservation at the moved slots and moves the
    /// parts in those slots to `out`. A reservation left with no segments
    /// is removed.
    fn take_reservations(&mut self, inside: &dyn Fn(u16) -> bool, out: &mut SlotState) {
        let mut emptied = Vec::new();
        for (&txn, reservation) in &mut self.reservations {
            if reservation.state == ReservationState::Released {
                continue;
            }
            let (moving, staying): (Vec<_>, Vec<_>) = reservation
                .segments
                .iter()
                .partition(|&&index| inside(self.catalog.entry(index).slot));
            if moving.is_empty() {
                continue;
            }
            out.reservations.push(MovedReservation {
                txn,
                home_slot: reservation.home_slot,
                segments: moving.iter().map(|&i| self.catalog.id(i)).collect(),
                seats: reservation.seats,
                prepared_deadline_ms: match reservation.state {
                    ReservationState::Prepared { deadline_ms } => Some(deadline_ms),
                    _ => None,
                },
            });
            reservation.segments = staying;
            if reservation.segments.is_empty() {
                emptied.push(txn);
            }
        }
        for txn in emptied {
            self.reservations.remove(&txn);
        }
    }

    /// Takes out the bookings whose home slot is in the moved range.
    fn take_bookings(&mut self, inside: &dyn Fn(u16) -> bool, out: &mut SlotState) {
        let locators: Vec<Locator> = self
            .bookings
            .keys()
            .filter(|locator| inside(locator.slot()))
            .copied()
            .collect();
        for locator in locators {
            let Some(booking) = self.bookings.remove(&locator) else {
                continue;
            };
            if let Some(expires_ms) = booking.expires_ms {
                self.holds.remove(&(expires_ms, locator));
            }
            let document = &booking.passenger.document;
            if let Some(list) = self.by_document.get_mut(document) {
                list.retain(|l| *l != locator);
                if list.is_empty() {
                    self.by_document.remove(document);
                }
            }
            out.bookings.push(MovedBooking {
                locator,
                txn: booking.txn,
                passenger: booking.passenger,
                segments: booking.segments,
                seats: booking.seats,
                status: booking.status,
                created_ms: booking.created_ms,
                expires_ms: booking.expires_ms,
            });
        }
    }

    /// Rebuilds the deadlines of the prepared reservations whose pending
    /// home record is not on this shard. When such a deadline passes, the
    /// shard queries the home for the outcome. A move changes this set,
    /// because home records leave or arrive with their slots.
    fn rebuild_participant_deadlines(&mut self) {
        let mut deadlines = std::collections::BTreeSet::new();
        for (&txn, reservation) in &self.reservations {
            let ReservationState::Prepared { deadline_ms } = reservation.state else {
                continue;
            };
            let pending_here = matches!(
                self.txns.get(&txn),
                Some(HomeTxn {
                    outcome: Outcome::Pending { .. },
                    ..
                })
            );
            if !pending_here {
                deadlines.insert((deadline_ms, txn));
            }
        }
        self.participant_deadlines = deadlines;
    }
}

/// Fields of a `move_slots` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MoveRequest {
    pub first: u16,
    pub last: u16,
    pub target: u32,
    pub target_address: String,
    pub version: u64,
}

/// Splits a [`request_key`] into document and request id.
fn split_key(key: &str) -> (String, String) {
    match key.split_once('\0') {
        Some((document, request_id)) => (document.to_owned(), request_id.to_owned()),
        None => (key.to_owned(), String::new()),
    }
}
