//! Journal records: the events of the state machine.
//!
//! A request produces zero or more records; applying a record is the only
//! way the state changes, both while serving and while replaying the
//! journal, so replay rebuilds exactly the state that was served. Records
//! carry every time and random choice they depend on.

use serde::{Deserialize, Serialize};
use trecho_common::internal::{Claim, SlotImport, TxnId};
use trecho_common::protocol::methods::BookRequest;
use trecho_common::types::Locator;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Record {
    /// A single-shard booking: creates the booking (held or confirmed),
    /// its committed reservation and its request id, and takes the seats.
    Booked {
        txn: TxnId,
        locator: Locator,
        request: BookRequest,
        created_ms: i64,
        /// Set for a hold.
        expires_ms: Option<i64>,
    },
    /// Phase one on a participant: a prepared reservation that takes the
    /// seats. With `booking`, this shard is home and also records the
    /// transaction as pending under the request id.
    Prepared {
        txn: TxnId,
        home_slot: u16,
        segments: Vec<String>,
        seats: u32,
        deadline_ms: i64,
        participant_slots: Vec<u16>,
        booking: Option<BookRequest>,
        /// A request id claimed for a booking whose home is another shard.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claim: Option<Claim>,
    },
    /// The home shard's commit decision: creates the booking, commits its
    /// own reservation, and queues `finish commit` for the others.
    Committed {
        txn: TxnId,
        locator: Locator,
        created_ms: i64,
        expires_ms: Option<i64>,
    },
    /// The home shard's abort decision, or a tombstone for a transaction it
    /// never prepared: releases its own reservation and queues
    /// `finish release` for every other participant.
    Aborted {
        txn: TxnId,
        /// Participant slots named by the sender, added to those already
        /// known.
        participant_slots: Vec<u16>,
        /// The home slot of a transaction this shard never prepared, so
        /// that its tombstone moves with the slot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        home_slot: Option<u16>,
    },
    /// A participant applied the outcome: commit keeps the seats, release
    /// frees them. A release for an unknown transaction is a tombstone that
    /// refuses a late prepare.
    Finished { txn: TxnId, commit: bool },
    /// A hold became confirmed.
    Confirmed { locator: Locator },
    /// The passenger cancelled: releases the home shard's seats and queues
    /// `finish release` for the other participants.
    Cancelled { locator: Locator },
    /// A hold ran out: same releases as a cancel.
    Expired { locator: Locator },
    /// The owner of participant slot `slot` acknowledged the finish of
    /// `txn`; it leaves the outbox unless a later outcome replaced it.
    FinishAcked { txn: TxnId, slot: u16, commit: bool },
    /// The source of a move stops serving slots `first..=last` and takes
    /// everything in them out of its state, to send to `target`. Replay
    /// takes out the same state, because the records before this one are
    /// the same.
    MovePaused {
        move_id: u64,
        first: u16,
        last: u16,
        target: u32,
        target_address: String,
        version: u64,
        paused_ms: i64,
    },
    /// The target of a move took the slots' state, and from this record on
    /// it owns them. This record is the commit point of a move.
    Imported { import: Box<SlotImport> },
    /// The source learned that the target imported the move, so the slots
    /// belong to the target in this shard's map.
    HandedOff { move_id: u64 },
}
