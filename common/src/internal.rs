//! The internal protocol between router and shards, and between shards.
//!
//! Newline-delimited JSON: requests are `{"id":N,"op":{...}}` and responses
//! `{"id":N,"ok":{...}}` or `{"id":N,"err":{...}}`. Ids are chosen by the
//! sender of the request and only match responses to requests; responses may
//! come back in any order. Only routers and shards speak it: shards listen
//! where only they and the router can reach them.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::protocol::methods::BookRequest;
use crate::schedule::SegmentSpec;
use crate::shardmap::ShardMap;
use crate::time::Date;
use crate::types::{Booking, BookingStatus, Locator, Passenger, Segment};

/// A transaction id: random, chosen by the router for a multi-shard booking,
/// or by the home shard for a single-shard one.
pub type TxnId = u64;

/// A request id claimed for a booking on the shard that owns the slot of
/// the passenger's document, so that a reuse with other params is found
/// whichever shard is the booking's home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The passenger's document.
    pub document: String,
    /// The client's request id.
    pub request_id: String,
    /// Fingerprint of the booking's params.
    pub fingerprint: u64,
}

/// A request from the router, or from another shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalRequest {
    /// Sender-chosen id, echoed in the response.
    pub id: u64,
    /// Version of the shard map the sender routed the request with, or 0
    /// when the sender sends none.
    #[serde(default)]
    pub map_version: u64,
    /// What to do.
    pub op: ShardOp,
}

/// Every operation a shard performs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShardOp {
    /// Liveness check; answers [`ShardReply::Pong`].
    Ping,
    /// Counts and ownership; answers [`ShardReply::Status`].
    Status,
    /// Requests the shard map this shard uses. The reply is
    /// [`ShardReply::ClusterMap`].
    ClusterMap,
    /// Segments matching a search; answers [`ShardReply::Segments`].
    Search {
        /// Origin code.
        origin: Option<String>,
        /// Destination code.
        destination: Option<String>,
        /// Local departure date.
        date: Option<Date>,
        /// Most segments to return.
        limit: u32,
    },
    /// One segment; answers [`ShardReply::Segment`].
    GetSegment {
        /// Segment id.
        id: String,
    },
    /// Seats left for each id, `None` for unknown ids; answers
    /// [`ShardReply::Seats`].
    Seats {
        /// Segment ids, all owned by this shard.
        ids: Vec<String>,
    },
    /// Single-shard booking: every segment lives on this shard, which is
    /// also the home. Answers [`ShardReply::Booking`].
    Book {
        /// The validated request.
        request: BookRequest,
    },
    /// Phase one of a multi-shard booking. Answers [`ShardReply::Prepared`],
    /// or [`ShardReply::Booking`] when the home shard finds that the
    /// request id already produced a booking.
    Prepare {
        /// Transaction id.
        txn: TxnId,
        /// Slot of the home shard (the first segment's slot).
        home_slot: u16,
        /// This shard's segments of the booking.
        segments: Vec<String>,
        /// Seats on every segment.
        seats: u32,
        /// Unix milliseconds after which the participant asks home.
        deadline_ms: i64,
        /// The slot of every segment of the booking, and the slot of the
        /// passenger's document when only a request id's claim needs that
        /// shard. Finishes go to whichever shard owns each slot when they
        /// are sent, so they follow a slot that changes shards.
        participant_slots: Vec<u16>,
        /// The whole booking; only in the home shard's prepare.
        booking: Option<BookRequest>,
        /// The request id to claim; only in the prepare of the shard that
        /// owns the slot of the passenger's document, when that is not the
        /// home shard.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claim: Option<Claim>,
    },
    /// Phase two, sent to the home shard. Answers [`ShardReply::Booking`]
    /// on commit, [`ShardReply::Ack`] on abort.
    Decide {
        /// Transaction id.
        txn: TxnId,
        /// Home slot.
        home_slot: u16,
        /// Commit when true, abort when false.
        commit: bool,
        /// Every participant slot, as in the prepare, so that an abort
        /// reaches participants whose prepare the home shard never saw.
        participant_slots: Vec<u16>,
    },
    /// The outcome, from the home shard to a participant. Answers
    /// [`ShardReply::Ack`].
    Finish {
        /// Transaction id.
        txn: TxnId,
        /// True: make the reservation final. False: release it.
        commit: bool,
        /// The participant slots this finish stands for; the receiver
        /// rejects it with `not_owner` unless it owns all of them.
        slots: Vec<u16>,
    },
    /// A participant asks the home shard for the outcome; a home shard
    /// without a decision records an abort first. Answers
    /// [`ShardReply::Outcome`].
    Resolve {
        /// Transaction id.
        txn: TxnId,
        /// Home slot.
        home_slot: u16,
    },
    /// `bookings.confirm`; answers [`ShardReply::Booking`].
    Confirm {
        /// Locator number.
        locator: u64,
        /// Must match the passenger's.
        document: String,
    },
    /// `bookings.cancel`. The reply is [`ShardReply::Cancelled`].
    Cancel {
        /// Locator number.
        locator: u64,
        /// Must match the passenger's.
        document: String,
    },
    /// `bookings.get`; answers [`ShardReply::Booking`].
    GetBooking {
        /// Locator number.
        locator: u64,
        /// Must match the passenger's.
        document: String,
    },
    /// Every booking of this document whose home is this shard; answers
    /// [`ShardReply::Bookings`].
    ListBookings {
        /// The passenger's document.
        document: String,
    },
    /// A full dump for the invariant checker; answers [`ShardReply::Audit`].
    Audit,
    /// Moves slots `first..=last`, all owned by this shard, to shard
    /// `target`. Replies with [`ShardReply::Moved`] once the target owns
    /// them. A repeated request for a move in progress waits for that move,
    /// and one for a finished move gets its reply at once.
    MoveSlots {
        /// First slot.
        first: u16,
        /// Last slot, inclusive.
        last: u16,
        /// The shard that receives them.
        target: u32,
        /// Address at which the target accepts requests from other shards.
        target_address: String,
        /// Map version that the move creates. The router sets it to one
        /// more than the highest version any shard reports.
        version: u64,
    },
    /// Sent by the source of a move to its target, with the whole state of
    /// the moved slots. Replies with [`ShardReply::Imported`] once the
    /// import is durable, and at once for a move already imported.
    ImportSlots(Box<SlotImport>),
}

/// The state of slots `first..=last`, sent by the source of a move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotImport {
    /// Move id, chosen by the source and the same on every attempt of one
    /// move.
    pub move_id: u64,
    /// The source shard.
    pub source: u32,
    /// First slot.
    pub first: u16,
    /// Last slot, inclusive.
    pub last: u16,
    /// The map version at which the target owns the slots.
    pub version: u64,
    /// The source's map with the slots given to the target, so that the
    /// target learns where every shard is.
    pub map: ShardMap,
    /// State of the moved slots.
    pub state: SlotState,
}

/// Everything a shard keeps for a range of slots, in wire form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    /// Segments with their taken seats.
    pub segments: Vec<MovedSegment>,
    /// Prepared and committed reservations, each limited to its segments
    /// in these slots.
    pub reservations: Vec<MovedReservation>,
    /// Home records of the transactions whose home slot is in the range.
    pub txns: Vec<MovedTxn>,
    /// Bookings whose home slot is in the range.
    pub bookings: Vec<MovedBooking>,
    /// Request ids of those transactions.
    pub request_ids: Vec<MovedRequestId>,
    /// Request ids claimed for passengers whose document's slot is in the
    /// range.
    pub claims: Vec<Claim>,
    /// Unacknowledged finishes of those transactions, as (transaction,
    /// participant slot, commit).
    pub outbox: Vec<(TxnId, u16, bool)>,
}

impl SlotState {
    /// Returns the number of rows in all lists, for progress reports.
    pub fn rows(&self) -> u64 {
        (self.segments.len()
            + self.reservations.len()
            + self.txns.len()
            + self.bookings.len()
            + self.request_ids.len()
            + self.claims.len()
            + self.outbox.len()) as u64
    }
}

/// A segment and its taken seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedSegment {
    /// The segment.
    pub spec: SegmentSpec,
    /// Seats taken by reservations.
    pub taken: u32,
}

/// Part of a reservation that lies in the moved slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedReservation {
    /// Transaction id.
    pub txn: TxnId,
    /// Home slot.
    pub home_slot: u16,
    /// Segment ids in these slots.
    pub segments: Vec<String>,
    /// Seats reserved on each segment.
    pub seats: u32,
    /// Deadline of a prepared reservation, in Unix milliseconds, or `None`
    /// for a committed one.
    pub prepared_deadline_ms: Option<i64>,
}

/// A transaction's home record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedTxn {
    /// Transaction id.
    pub txn: TxnId,
    /// Home slot.
    pub home_slot: u16,
    /// Every participant slot.
    pub participants: Vec<u16>,
    /// State of the transaction.
    pub outcome: MovedOutcome,
}

/// State of a moved transaction at its home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MovedOutcome {
    /// Prepared and waiting for the decision.
    Pending {
        /// The booking request.
        request: BookRequest,
        /// Time in Unix milliseconds at which the home aborts the
        /// transaction if it is still pending.
        deadline_ms: i64,
    },
    /// Committed as this booking.
    Committed {
        /// The booking's locator.
        locator: Locator,
    },
    /// Aborted, or a tombstone.
    Aborted,
}

/// A booking record from its home shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedBooking {
    /// Locator.
    pub locator: Locator,
    /// Transaction id.
    pub txn: TxnId,
    /// The passenger.
    pub passenger: Passenger,
    /// All segments, in request order.
    pub segments: Vec<String>,
    /// Seats on each segment.
    pub seats: u32,
    /// Status.
    pub status: BookingStatus,
    /// Creation time, in Unix milliseconds.
    pub created_ms: i64,
    /// End of the hold, in Unix milliseconds.
    pub expires_ms: Option<i64>,
}

/// The first use of a client's request id, as recorded on the home shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedRequestId {
    /// The passenger's document.
    pub document: String,
    /// The client's request id.
    pub request_id: String,
    /// Fingerprint of the params of the first use.
    pub fingerprint: u64,
    /// Transaction of the latest attempt.
    pub txn: TxnId,
}

/// A move in progress on its source shard, as the shard's status reports
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveView {
    /// First slot.
    pub first: u16,
    /// Last slot, inclusive.
    pub last: u16,
    /// The target shard.
    pub target: u32,
    /// Map version that the move creates.
    pub version: u64,
    /// Rows being copied.
    pub rows: u64,
    /// Time at which the source paused the slots, in Unix milliseconds.
    pub paused_since_ms: i64,
}

impl ShardOp {
    /// Returns whether the operation can change state, so that a lost
    /// answer means `outcome_unknown` rather than `shard_unavailable`.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            ShardOp::Book { .. }
                | ShardOp::Prepare { .. }
                | ShardOp::Decide { .. }
                | ShardOp::Finish { .. }
                | ShardOp::Resolve { .. }
                | ShardOp::Confirm { .. }
                | ShardOp::Cancel { .. }
                | ShardOp::MoveSlots { .. }
                | ShardOp::ImportSlots(_)
        )
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShardReply {
    /// Answer to [`ShardOp::Ping`].
    Pong,
    /// Answer to [`ShardOp::Status`].
    Status(ShardStatus),
    /// Reply to [`ShardOp::ClusterMap`].
    ClusterMap {
        /// The whole map, with its version.
        map: ShardMap,
    },
    /// Answer to [`ShardOp::Search`].
    Segments {
        /// Matching segments by departure, then id.
        segments: Vec<Segment>,
    },
    /// Answer to [`ShardOp::GetSegment`].
    Segment {
        /// The segment.
        segment: Segment,
    },
    /// Answer to [`ShardOp::Seats`].
    Seats {
        /// Seats left, in request order; `None` for unknown ids.
        seats: Vec<Option<u32>>,
    },
    /// A booking as it is now.
    Booking {
        /// The booking.
        booking: Booking,
    },
    /// Answer to [`ShardOp::Cancel`]: the booking as it is now, and the
    /// releases of its seats on other shards that are not acknowledged
    /// yet, which the router sends itself before it answers the client.
    Cancelled {
        /// The booking.
        booking: Booking,
        /// Seats to release elsewhere; `None` when there are none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<Release>,
    },
    /// Answer to [`ShardOp::ListBookings`].
    Bookings {
        /// Newest first.
        bookings: Vec<Booking>,
    },
    /// The participant durably reserved the seats.
    Prepared,
    /// Answer to [`ShardOp::Resolve`].
    Outcome {
        /// True when the transaction committed.
        committed: bool,
    },
    /// Done.
    Ack,
    /// Answer to [`ShardOp::Audit`].
    Audit(AuditReport),
    /// Reply to [`ShardOp::MoveSlots`] once the target owns the slots.
    Moved {
        /// Map version at which the target owns them.
        version: u64,
        /// Rows copied.
        rows: u64,
        /// Time in milliseconds during which writes to the slots were
        /// rejected, or 0 when the move had ended before this request.
        pause_ms: u64,
    },
    /// Reply to [`ShardOp::ImportSlots`] once the import is durable.
    Imported,
}

/// Seats of a transaction to release on the shards that own `slots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The transaction.
    pub txn: TxnId,
    /// Participant slots whose release is not acknowledged yet.
    pub slots: Vec<u16>,
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShardError {
    /// An error for the client, passed through unchanged.
    #[error(transparent)]
    Client {
        /// The error.
        error: Error,
    },
    /// The slot belongs to another shard; the sender's map is stale or
    /// wrong.
    #[error("shard {shard} does not own slot {slot} (its shard map is version {map_version})")]
    NotOwner {
        /// The slot asked for.
        slot: u16,
        /// The shard that refused.
        shard: u32,
        /// Its map version.
        map_version: u64,
        /// The slot's owner under that map.
        #[serde(default)]
        owner: Option<u32>,
    },
    /// The slot is moving to another shard, and nothing changed. Retry
    /// after `retry_after_ms`. Once the move has ended, the shard rejects
    /// the request with [`ShardError::NotOwner`] naming the new owner.
    #[error(
        "slot {slot} of shard {shard} is moving to another shard; retry in {retry_after_ms} ms"
    )]
    SlotMoving {
        /// The requested slot.
        slot: u16,
        /// The shard that rejected the request.
        shard: u32,
        /// Delay before a retry, in milliseconds.
        retry_after_ms: u64,
    },
    /// The request could not be read.
    #[error("invalid internal request: {message}")]
    BadRequest {
        /// What was wrong.
        message: String,
    },
}

impl From<Error> for ShardError {
    fn from(error: Error) -> Self {
        ShardError::Client { error }
    }
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalResponse {
    /// The request's id.
    pub id: u64,
    /// The answer.
    #[serde(flatten)]
    pub result: InternalResult,
}

/// The body of a response line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InternalResult {
    /// Success.
    Ok(ShardReply),
    /// Refusal.
    Err(ShardError),
}

/// Answer to [`ShardOp::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// The shard's id.
    pub shard_id: u32,
    /// Version of the shard map it runs with.
    pub map_version: u64,
    /// Inclusive slot ranges it owns.
    pub slots: Vec<[u16; 2]>,
    /// Segments it owns.
    pub segments: u64,
    /// Bookings whose home it is.
    pub bookings: u64,
    /// The move out of this shard in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<MoveView>,
}

/// Where a participant's reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Counted, waiting for the outcome.
    Prepared,
    /// Counted for good, until released.
    Committed,
}

/// One reservation, in an [`AuditReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReservation {
    /// Transaction id.
    pub txn: TxnId,
    /// Home slot.
    pub home_slot: u16,
    /// Segments on this shard.
    pub segments: Vec<String>,
    /// Seats on each.
    pub seats: u32,
    /// Prepared or committed.
    pub state: ReservationState,
}

/// One booking record on its home shard, in an [`AuditReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBooking {
    /// Locator text.
    pub locator: String,
    /// Transaction id.
    pub txn: TxnId,
    /// Status.
    pub status: BookingStatus,
    /// All segments, in request order.
    pub segments: Vec<String>,
    /// Seats on each.
    pub seats: u32,
}

/// One segment's counts, in an [`AuditReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSegment {
    /// Segment id.
    pub id: String,
    /// Seats on the aircraft.
    pub capacity: u32,
    /// Seats taken.
    pub taken: u32,
}

/// Everything the invariant checker needs from one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// The shard's id.
    pub shard_id: u32,
    /// Segments with at least one seat taken.
    pub segments: Vec<AuditSegment>,
    /// Live reservations (prepared or committed).
    pub reservations: Vec<AuditReservation>,
    /// Booking records whose home is this shard.
    pub bookings: Vec<AuditBooking>,
    /// Transactions prepared at home and not yet decided.
    pub pending: Vec<TxnId>,
    /// Finish messages not yet acknowledged, as (txn, participant slot).
    pub unacknowledged: Vec<(TxnId, u16)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_lines_round_trip() {
        let request = InternalRequest {
            id: 9,
            map_version: 4,
            op: ShardOp::Finish {
                txn: 5,
                commit: true,
                slots: vec![7],
            },
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text,
            r#"{"id":9,"map_version":4,"op":{"type":"finish","txn":5,"commit":true,"slots":[7]}}"#
        );
        assert_eq!(
            serde_json::from_str::<InternalRequest>(&text).unwrap(),
            request
        );
        let response = InternalResponse {
            id: 9,
            result: InternalResult::Err(ShardError::NotOwner {
                slot: 1,
                shard: 2,
                map_version: 3,
                owner: Some(0),
            }),
        };
        let text = serde_json::to_string(&response).unwrap();
        assert!(text.starts_with(r#"{"id":9,"err":"#), "{text}");
        assert_eq!(
            serde_json::from_str::<InternalResponse>(&text).unwrap(),
            response
        );
    }
}
