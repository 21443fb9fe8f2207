//! A batch: the journal bytes and the reply lines of the requests the owner
//! task applied in one turn, handed whole to the journal thread.

use serde::Serialize;
use trecho_common::internal::{InternalResult, ShardError, ShardReply};

use crate::journal;
use crate::record::Record;
use crate::server::ReplyTo;
use crate::state::{FinishJob, RecordSink};

/// Fault-injection points the journal thread reaches after the batch is
/// durable.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Failpoints {
    /// The batch holds a prepared reservation.
    pub after_prepare: bool,
    /// The batch holds a decision made by a `decide` request.
    pub after_decide: bool,
    /// The batch pauses slots for a move out of this shard.
    pub after_move_paused: bool,
    /// The batch imports slots moved to this shard.
    pub after_import: bool,
}

/// Records and replies of one owner turn. Buffers are kept when the batch
/// comes back from the journal thread, so a steady load allocates nothing
/// here.
#[derive(Default)]
pub(crate) struct Batch {
    /// Journal lines, ready to write.
    pub records: Vec<u8>,
    /// Number of records in `records`.
    pub record_count: usize,
    /// Response lines, back to back.
    pub replies: Vec<u8>,
    /// Who gets each response: its connection and the end of its line in
    /// `replies`.
    pub targets: Vec<(ReplyTo, usize)>,
    /// Finishes to deliver once the records are durable.
    pub finishes: Vec<FinishJob>,
    /// Moves whose pause is in this batch: their copy starts once the
    /// pause is durable.
    pub paused_moves: Vec<u64>,
    /// Points to stop at once the records are durable.
    pub failpoints: Failpoints,
}

/// The wire form of a response, borrowing the result.
#[derive(Serialize)]
struct ResponseRef<'a> {
    id: u64,
    #[serde(flatten)]
    result: &'a InternalResult,
}

impl Batch {
    /// Returns whether the batch has nothing to write or send.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.targets.is_empty()
            && self.finishes.is_empty()
            && self.paused_moves.is_empty()
    }

    /// Appends the response line to request `id` for `reply`.
    pub fn push_reply(&mut self, reply: &ReplyTo, id: u64, result: Result<ShardReply, ShardError>) {
        let result = match result {
            Ok(reply) => InternalResult::Ok(reply),
            Err(error) => InternalResult::Err(error),
        };
        let start = self.replies.len();
        let line = ResponseRef {
            id,
            result: &result,
        };
        if serde_json::to_writer(&mut self.replies, &line).is_err() {
            // Replies hold only strings, numbers and lists; should one ever
            // fail to serialize, send a refusal rather than nothing.
            self.replies.truncate(start);
            let error = InternalResult::Err(ShardError::BadRequest {
                message: "the reply could not be encoded".to_owned(),
            });
            let fallback = ResponseRef { id, result: &error };
            let _ = serde_json::to_writer(&mut self.replies, &fallback);
        }
        self.replies.push(b'\n');
        self.targets.push((reply.clone(), self.replies.len()));
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.records.clear();
        self.record_count = 0;
        self.replies.clear();
        self.targets.clear();
        self.finishes.clear();
        self.paused_moves.clear();
        self.failpoints = Failpoints::default();
    }
}

impl RecordSink for Batch {
    fn record(&mut self, record: &Record) {
        journal::encode(record, &mut self.records);
        self.record_count += 1;
    }
}
