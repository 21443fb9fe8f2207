//! The journal thread: group commit.
//!
//! It takes every batch that is waiting, writes their records, calls
//! `fdatasync` once, and only then sends their replies and hands their
//! finishes back to the owner task. Replies to reads wait in the same queue,
//! so no client sees state that a crash could still undo. While it syncs,
//! the owner task builds the next batch.

use rustc_hash::FxHashMap;
use tokio::sync::mpsc;
use trecho_common::failpoint;

use super::JournalFile;
use crate::batch::Batch;
use crate::owner::Command;
use crate::server::{Outbound, ReplyTo};

/// The journal thread's ends of its channels.
pub(crate) struct JournalWriter {
    /// The journal, opened after its last record.
    pub file: JournalFile,
    /// Batches from the owner task.
    pub batches: mpsc::Receiver<Batch>,
    /// Emptied batches back to the owner task.
    pub recycle: mpsc::UnboundedSender<Batch>,
    /// Durable finishes to the owner task.
    pub commands: mpsc::UnboundedSender<Command>,
    /// For logs.
    pub shard_id: u32,
}

impl JournalWriter {
    /// Runs until the owner task drops its sender, or until a write or sync
    /// fails. After a failure nothing more is acknowledged: the batches in
    /// hand are dropped unanswered, because the owner already applied them
    /// in memory and only a restart from the journal is safe.
    pub fn run(mut self) -> std::io::Result<()> {
        let mut waiting: Vec<Batch> = Vec::new();
        let mut outgoing: FxHashMap<u64, (ReplyTo, Outbound)> = FxHashMap::default();
        while let Some(first) = self.batches.blocking_recv() {
            waiting.push(first);
            while let Ok(next) = self.batches.try_recv() {
                waiting.push(next);
            }
            if let Err(error) = self.write_and_sync(&waiting) {
                tracing::error!(shard.id = self.shard_id, %error, "journal write failed; no further replies");
                return Err(error);
            }
            stop_at_failpoints(&waiting);
            for mut batch in waiting.drain(..) {
                send_replies(&batch, &mut outgoing);
                if !batch.finishes.is_empty() {
                    let finishes = std::mem::take(&mut batch.finishes);
                    let _ = self.commands.send(Command::Deliver(finishes));
                }
                for move_id in batch.paused_moves.drain(..) {
                    let _ = self.commands.send(Command::MovePaused(move_id));
                }
                batch.clear();
                let _ = self.recycle.send(batch);
            }
        }
        Ok(())
    }

    fn write_and_sync(&mut self, batches: &[Batch]) -> std::io::Result<()> {
        let mut written = false;
        for batch in batches.iter().filter(|b| !b.records.is_empty()) {
            self.file.write(&batch.records)?;
            written = true;
        }
        if written {
            self.file.sync()?;
        }
        Ok(())
    }
}

/// Fault injection for crash tests: both points are reached with the
/// records durable and no reply of their batch sent.
fn stop_at_failpoints(batches: &[Batch]) {
    // shard.after_prepare: a prepared reservation is durable, and neither
    // its `prepared` reply nor any later reply has been sent.
    if batches.iter().any(|b| b.failpoints.after_prepare) {
        failpoint::hit("shard.after_prepare");
    }
    // shard.after_decide: a decision made by a `decide` request is durable
    // at home, before its reply and before any finish of it is sent (the
    // finishes go out only after this thread hands them back).
    if batches.iter().any(|b| b.failpoints.after_decide) {
        failpoint::hit("shard.after_decide");
    }
    // shard.after_move_paused: the source of a move paused the slots on
    // disk and sent the target nothing yet.
    if batches.iter().any(|b| b.failpoints.after_move_paused) {
        failpoint::hit("shard.after_move_paused");
    }
    // shard.after_import: the target of a move imported the slots on
    // disk and has not answered the source.
    if batches.iter().any(|b| b.failpoints.after_import) {
        failpoint::hit("shard.after_import");
    }
}

/// Sends the replies of `batch`, one message per connection.
fn send_replies(batch: &Batch, outgoing: &mut FxHashMap<u64, (ReplyTo, Outbound)>) {
    let mut start = 0;
    for (target, end) in &batch.targets {
        let line = &batch.replies[start..*end];
        start = *end;
        let (_, out) = outgoing
            .entry(target.conn)
            .or_insert_with(|| (target.clone(), Outbound::default()));
        out.bytes.extend_from_slice(line);
        out.lines += 1;
    }
    for (_, (target, out)) in outgoing.drain() {
        // A closed connection has nobody left to answer.
        let _ = target.sender.send(out);
    }
}
