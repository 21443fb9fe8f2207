//! The shard's state machine, free of I/O and clocks.
//!
//! [`State::handle`] checks a request against the current state and, for a
//! change, emits [`Record`]s; [`State::apply`] is the only code that changes
//! the state, and replay calls the same function. Every handler takes the
//! current time as `now_ms` (Unix milliseconds), so tests control time.
//!
//! Roles, as docs/design.md describes them:
//! - participant: reservations keyed by transaction id, prepared with a
//!   deadline, then committed, then released;
//! - home: pending and decided transactions with their participants,
//!   bookings by locator, request ids, hold expiry, and the outbox of
//!   finishes to deliver.

mod apply;
mod booking;
mod moves;
mod read;
mod txn;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use trecho_common::error::Error;
use trecho_common::hashing::slot;
use trecho_common::internal::{ShardError, ShardOp, ShardReply, TxnId};
use trecho_common::protocol::methods::BookRequest;
use trecho_common::shardmap::ShardMap;
use trecho_common::types::{Locator, Passenger};

use crate::catalog::{Catalog, SegmentIndex};
use crate::record::Record;

pub use apply::ApplyError;
pub(crate) use moves::{MoveOut, MoveRequest, MoveStart};
pub(crate) use txn::DueResolve;

/// Sales close this long before departure, in milliseconds.
pub(crate) const SALES_CLOSE_MS: i64 = 30 * 60 * 1000;

/// Receives the records a request emits, in order.
pub(crate) trait RecordSink {
    /// Takes one record that has just been applied.
    fn record(&mut self, record: &Record);
}

impl RecordSink for Vec<Record> {
    fn record(&mut self, record: &Record) {
        self.push(record.clone());
    }
}

/// Finishes that a record queued for the participants of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FinishJob {
    /// The transaction.
    pub txn: TxnId,
    /// Commit or release.
    pub commit: bool,
    /// Participant slots that this shard does not own, in the order of the
    /// booking.
    pub slots: Vec<u16>,
}

/// A participant's reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reservation {
    home_slot: u16,
    /// Emptied on release.
    segments: Vec<SegmentIndex>,
    seats: u32,
    state: ReservationState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReservationState {
    Prepared {
        deadline_ms: i64,
    },
    Committed,
    /// Seats freed; also the tombstone of a transaction released before it
    /// was prepared here.
    Released,
}

/// A transaction whose home is this shard.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HomeTxn {
    /// The transaction's home slot, or `None` for a tombstone written
    /// before tombstones recorded it. Such a tombstone stays on this shard.
    home_slot: Option<u16>,
    /// Every participant slot, this shard's included.
    participants: Vec<u16>,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Pending {
        request: BookRequest,
        deadline_ms: i64,
    },
    Committed(Locator),
    /// Also the tombstone of a transaction this shard never prepared.
    Aborted,
}

/// A booking on its home shard.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BookingRecord {
    txn: TxnId,
    /// Creation order, for newest-first listings.
    seq: u64,
    passenger: Passenger,
    segments: Vec<String>,
    seats: u32,
    status: trecho_common::types::BookingStatus,
    created_ms: i64,
    /// Kept after the hold ends, for `hold_expired`.
    expires_ms: Option<i64>,
}

/// A request id's first use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RequestEntry {
    fingerprint: u64,
    /// The latest attempt.
    txn: TxnId,
}

/// The splitmix64 generator: enough for transaction ids and locators,
/// which only need to be hard to collide, not to guess.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Seeds from the clock and the process id.
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng::new(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// Returns the next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Everything a shard knows.
pub(crate) struct State {
    shard_id: u32,
    map: ShardMap,
    catalog: Catalog,
    /// Participant role, this shard's own part of its home bookings
    /// included.
    reservations: FxHashMap<TxnId, Reservation>,
    /// Home role.
    txns: FxHashMap<TxnId, HomeTxn>,
    bookings: FxHashMap<Locator, BookingRecord>,
    by_document: FxHashMap<String, Vec<Locator>>,
    /// Keyed by [`request_key`].
    request_ids: FxHashMap<String, RequestEntry>,
    /// Fingerprints of request ids of bookings whose home is another
    /// shard, claimed here because this shard owns the slot of the
    /// passenger's document; keyed by [`request_key`]. Like the home
    /// shard's entries, a claim stays once made: a request id is bound to
    /// the params of its first attempt, whether that attempt booked or not.
    claims: FxHashMap<String, u64>,
    /// Held bookings by expiry.
    holds: BTreeSet<(i64, Locator)>,
    /// Pending home transactions by deadline.
    home_deadlines: BTreeSet<(i64, TxnId)>,
    /// Prepared reservations of remote homes by deadline; taken out when
    /// reported by [`State::tick`].
    participant_deadlines: BTreeSet<(i64, TxnId)>,
    /// Finishes not yet acknowledged: (txn, participant slot) to commit.
    outbox: BTreeMap<(TxnId, u16), bool>,
    /// Finishes queued since the last [`State::take_finishes`].
    new_finishes: Vec<FinishJob>,
    next_seq: u64,
    rng: Rng,
    prepare_timeout_ms: i64,
    /// The move that took slots out of this shard and is not handed off
    /// yet.
    moving: Option<MoveOut>,
    /// Moves this shard imported, so that a repeated import gets its reply
    /// without being applied twice.
    imported: rustc_hash::FxHashSet<u64>,
    /// Number of segments in the slots this shard owns. The catalog also
    /// keeps the segments of slots that moved away, hidden from reads.
    owned_segments: u64,
}

/// Returns the key of a request id: document and id, joined by a NUL that
/// neither may contain.
fn request_key(document: &str, request_id: &str) -> String {
    let mut key = String::with_capacity(document.len() + request_id.len() + 1);
    key.push_str(document);
    key.push('\0');
    key.push_str(request_id);
    key
}

impl State {
    /// Builds the state of shard `shard_id` over its seeded segments.
    pub fn new(
        shard_id: u32,
        map: ShardMap,
        catalog: Catalog,
        rng: Rng,
        prepare_timeout_ms: u64,
    ) -> Self {
        let owned_segments = catalog.len() as u64;
        State {
            shard_id,
            map,
            catalog,
            reservations: FxHashMap::default(),
            txns: FxHashMap::default(),
            bookings: FxHashMap::default(),
            by_document: FxHashMap::default(),
            request_ids: FxHashMap::default(),
            claims: FxHashMap::default(),
            holds: BTreeSet::new(),
            home_deadlines: BTreeSet::new(),
            participant_deadlines: BTreeSet::new(),
            outbox: BTreeMap::new(),
            new_finishes: Vec::new(),
            next_seq: 0,
            rng,
            prepare_timeout_ms: i64::try_from(prepare_timeout_ms).unwrap_or(i64::MAX),
            moving: None,
            imported: rustc_hash::FxHashSet::default(),
            owned_segments,
        }
    }

    /// Returns this shard's id.
    pub fn shard_id(&self) -> u32 {
        self.shard_id
    }

    /// Returns the shard map.
    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    /// Returns the number of bookings whose home is this shard.
    pub fn booking_count(&self) -> usize {
        self.bookings.len()
    }

    /// Returns the number of segments in the slots this shard owns.
    pub fn segment_count(&self) -> usize {
        self.owned_segments as usize
    }

    /// Serves one request at `now_ms`, emitting the records of any change
    /// to `sink` after applying them.
    pub fn handle(
        &mut self,
        op: ShardOp,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<ShardReply, ShardError> {
        match op {
            ShardOp::Ping => Ok(ShardReply::Pong),
            ShardOp::Status => Ok(ShardReply::Status(self.status())),
            ShardOp::ClusterMap => Ok(ShardReply::ClusterMap {
                map: self.map.clone(),
            }),
            ShardOp::Search {
                origin,
                destination,
                date,
                limit,
            } => Ok(self.search(origin.as_deref(), destination.as_deref(), date, limit)),
            ShardOp::GetSegment { id } => self.get_segment(&id),
            ShardOp::Seats { ids } => self.seats(&ids),
            ShardOp::Book { request } => self.book(request, now_ms, sink),
            ShardOp::Prepare {
                txn,
                home_slot,
                segments,
                seats,
                deadline_ms,
                participant_slots,
                booking,
                claim,
            } => {
                let prepare = txn::Prepare {
                    txn,
                    home_slot,
                    segments,
                    seats,
                    deadline_ms,
                    participant_slots,
                    booking,
                    claim,
                };
                self.prepare(prepare, now_ms, sink)
            }
            ShardOp::Decide {
                txn,
                home_slot,
                commit,
                participant_slots,
            } => self.decide(txn, home_slot, commit, participant_slots, now_ms, sink),
            ShardOp::Finish { txn, commit, slots } => self.finish(txn, commit, &slots, sink),
            ShardOp::Resolve { txn, home_slot } => self.resolve(txn, home_slot, sink),
            ShardOp::Confirm { locator, document } => {
                self.confirm(Locator(locator), &document, now_ms, sink)
            }
            ShardOp::Cancel { locator, document } => {
                self.cancel(Locator(locator), &document, now_ms, sink)
            }
            ShardOp::GetBooking { locator, document } => {
                self.get_booking(Locator(locator), &document, now_ms)
            }
            ShardOp::ListBookings { document } => Ok(self.list_bookings(&document, now_ms)),
            ShardOp::Audit => Ok(ShardReply::Audit(self.audit())),
            // The owner task starts moves itself, because their reply waits
            // for the target.
            ShardOp::MoveSlots { .. } => Err(ShardError::BadRequest {
                message: "move_slots reached the state machine directly".to_owned(),
            }),
            ShardOp::ImportSlots(import) => self.import(*import, sink),
        }
    }

    /// Applies `record` and passes it to `sink`.
    ///
    /// A record that does not apply is a bug in the handler that built it:
    /// nothing changed, nothing is journaled, and the request fails.
    fn emit(&mut self, record: Record, sink: &mut dyn RecordSink) -> Result<(), ShardError> {
        match self.apply(&record) {
            Ok(()) => {
                sink.record(&record);
                Ok(())
            }
            Err(error) => {
                tracing::error!(shard.id = self.shard_id, %error, "record did not apply");
                Err(Error::internal(format!(
                    "shard {} could not apply a change: {error}",
                    self.shard_id
                ))
                .into())
            }
        }
    }

    /// Returns the finishes queued since the last call.
    pub fn take_finishes(&mut self) -> Vec<FinishJob> {
        std::mem::take(&mut self.new_finishes)
    }

    /// Returns every finish still waiting for its acknowledgement, grouped
    /// by transaction and outcome, for delivery after a restart.
    pub fn outbox_jobs(&self) -> Vec<FinishJob> {
        group_finishes(
            self.outbox
                .iter()
                .map(|(&(txn, slot), &commit)| (txn, slot, commit)),
        )
    }

    /// Returns whether this shard serves `slot`: it owns it and is not
    /// moving it away.
    pub(crate) fn owns(&self, slot: u16) -> bool {
        self.map.owns(self.shard_id, slot) && !self.is_moving(slot)
    }

    fn check_slot(&self, slot: u16) -> Result<(), ShardError> {
        if self.owns(slot) {
            Ok(())
        } else if self.is_moving(slot) {
            Err(ShardError::SlotMoving {
                slot,
                shard: self.shard_id,
                retry_after_ms: moves::RETRY_AFTER_MS,
            })
        } else {
            Err(ShardError::NotOwner {
                slot,
                shard: self.shard_id,
                map_version: self.map.version,
                owner: Some(self.map.owner_of_slot(slot).id),
            })
        }
    }

    /// Checks that this shard owns every segment id.
    fn check_owns_all(&self, ids: &[String]) -> Result<(), ShardError> {
        ids.iter().try_for_each(|id| self.check_slot(slot(id)))
    }

    /// Checks every segment in order, failing on the first that is unknown,
    /// closed for sale or short of seats.
    fn check_segments(
        &self,
        ids: &[String],
        seats: u32,
        now_ms: i64,
    ) -> Result<Vec<SegmentIndex>, ShardError> {
        let mut indexes = Vec::with_capacity(ids.len());
        for id in ids {
            let index = self.catalog.find(id).ok_or_else(|| Error::UnknownSegment {
                segment: id.clone(),
            })?;
            let entry = self.catalog.entry(index);
            if entry.departure.saturating_mul(1000) - now_ms < SALES_CLOSE_MS {
                return Err(Error::SalesClosed {
                    segment: id.clone(),
                    departure: self.catalog.departure_rfc3339(index),
                }
                .into());
            }
            if entry.seats_left() < seats {
                return Err(Error::SoldOut {
                    segment: id.clone(),
                    requested: seats,
                    left: entry.seats_left(),
                }
                .into());
            }
            indexes.push(index);
        }
        Ok(indexes)
    }

    /// Returns an unused transaction id.
    fn new_txn(&mut self) -> TxnId {
        loop {
            let txn = self.rng.next_u64();
            if txn != 0 && !self.txns.contains_key(&txn) && !self.reservations.contains_key(&txn) {
                return txn;
            }
        }
    }

    /// Returns an unused locator of `slot`: random first, then the first
    /// free one when random picks keep colliding.
    fn new_locator(&mut self, slot: u16) -> Result<Locator, ShardError> {
        for _ in 0..1000 {
            let locator = Locator::new(slot, self.rng.next_u64() % Locator::PER_SLOT);
            if !self.bookings.contains_key(&locator) {
                return Ok(locator);
            }
        }
        (0..Locator::PER_SLOT)
            .map(|index| Locator::new(slot, index))
            .find(|locator| !self.bookings.contains_key(locator))
            .ok_or_else(|| {
                Error::internal(format!(
                    "every locator of slot {slot} is taken; book with another first segment"
                ))
                .into()
            })
    }
}

/// Groups finishes given as (txn, participant slot, commit) into one job
/// per run of the same transaction and outcome.
fn group_finishes(finishes: impl IntoIterator<Item = (TxnId, u16, bool)>) -> Vec<FinishJob> {
    let mut jobs: Vec<FinishJob> = Vec::new();
    for (txn, slot, commit) in finishes {
        match jobs.last_mut() {
            Some(job) if job.txn == txn && job.commit == commit => job.slots.push(slot),
            _ => jobs.push(FinishJob {
                txn,
                commit,
                slots: vec![slot],
            }),
        }
    }
    jobs
}

/// Checks the shape the router already validated: a malformed request
/// here would take seats twice or none.
fn check_shape(segments: &[String], seats: u32) -> Result<(), ShardError> {
    let bad = |message: &str| ShardError::BadRequest {
        message: message.to_owned(),
    };
    if segments.is_empty() {
        return Err(bad("segments must not be empty"));
    }
    if seats == 0 {
        return Err(bad("seats must be at least 1"));
    }
    for (index, id) in segments.iter().enumerate() {
        if segments[..index].contains(id) {
            return Err(bad("segments must not repeat a segment id"));
        }
    }
    Ok(())
}
