//! The owner task's side of a move out of this shard. It pauses the
//! slots, sends their state to the target until the target replies, and
//! then hands the slots off. The section "One move" of docs/design.md has
//! the steps and their crash cases.
//!
//! Fault-injection points for crash tests (see `trecho_common::failpoint`):
//! - `shard.before_hand_off` stops the source after the target replied
//!   that it imported the move and before the source writes the hand-off.
//! - `shard.before_import` stops the target when the copy arrives, before
//!   it writes anything.
//! - `shard.after_move_paused` and `shard.after_import`, reached by the
//!   journal thread, stop the source once its pause is durable and the
//!   target once its import is durable.

use std::time::Duration;

use trecho_common::error::Error;
use trecho_common::failpoint;
use trecho_common::internal::{ShardError, ShardOp, ShardReply};
use trecho_common::link::{LinkError, LinkOptions, ShardLink};
use trecho_common::time::now_unix_millis;

use super::{Command, Owner};
use crate::server::ReplyTo;
use crate::state::{MoveRequest, MoveStart};

/// Timeout for the target's reply to an import. The target parses and
/// journals every row of the slots, and the pauses in docs/performance.md,
/// which include that work, stayed under 0.1 s for batches of 256 slots.
/// After this long without a reply, for example from a target cut off by
/// the network, the copy is sent again.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Delay before the first resend of a failed copy. It doubles after each
/// failure, up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Owner {
    /// Serves `move_slots` by pausing the slots, or by joining the move
    /// already running. The reply waits for the hand-off.
    pub(super) fn start_move(&mut self, reply: ReplyTo, id: u64, request: MoveRequest) {
        let before = self.batch.record_count;
        let shard = self.state.shard_id();
        let (first, last, target) = (request.first, request.last, request.target);
        match self
            .state
            .start_move(request, now_unix_millis(), &mut self.batch)
        {
            Ok(MoveStart::Started(move_id)) => {
                if self.batch.record_count > before {
                    self.batch.failpoints.after_move_paused = true;
                }
                self.batch.paused_moves.push(move_id);
                tracing::info!(
                    shard.id = shard,
                    move_id,
                    first,
                    last,
                    target,
                    "slots paused for a move"
                );
                self.move_waiters.push((reply, id));
            }
            Ok(MoveStart::Running(_)) => self.move_waiters.push((reply, id)),
            Ok(MoveStart::Done { version }) => {
                let done = ShardReply::Moved {
                    version,
                    rows: 0,
                    pause_ms: 0,
                };
                self.batch.push_reply(&reply, id, Ok(done));
            }
            Err(error) => {
                tracing::warn!(shard.id = shard, first, last, target, %error, "move rejected");
                self.batch.push_reply(&reply, id, Err(error));
            }
        }
    }

    /// Sends the paused slots' state to the target, and resends it until
    /// the target replies that it imported them. A copy already in flight
    /// is not sent twice.
    pub(super) fn send_copy(&mut self, move_id: u64) {
        let Some(running) = self.state.moving() else {
            return;
        };
        if running.move_id != move_id || self.copying == Some(move_id) {
            return;
        }
        self.copying = Some(move_id);
        let shard = self.state.shard_id();
        let import = running.import(shard, self.state.map());
        let rows = import.state.rows();
        let options = LinkOptions {
            request_timeout: IMPORT_TIMEOUT,
            ..LinkOptions::default()
        };
        let link = ShardLink::spawn(running.target, running.target_address.clone(), options);
        let commands = self.commands_sender.clone();
        let op = ShardOp::ImportSlots(Box::new(import));
        tracing::info!(
            shard.id = shard,
            move_id,
            rows,
            target = link.shard(),
            "sending moved slots to the target"
        );
        tokio::spawn(async move {
            let mut backoff = MIN_BACKOFF;
            loop {
                match link.call(&op).await {
                    Ok(ShardReply::Imported) => {
                        let _ = commands.send(Command::TargetImported(move_id));
                        return;
                    }
                    Ok(_) => tracing::error!(
                        shard.id = shard,
                        move_id,
                        "unexpected reply from the target to an import, the shards may run \
                         different versions"
                    ),
                    Err(LinkError::Remote(refusal)) if !is_transient(&refusal) => {
                        tracing::error!(
                            shard.id = shard,
                            move_id,
                            %refusal,
                            "target rejected the import, slots stay paused until it accepts them"
                        );
                    }
                    Err(error) => tracing::warn!(
                        shard.id = shard,
                        move_id,
                        %error,
                        "move target unavailable, retrying"
                    ),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
    }

    /// Writes the hand-off after the target imported the slots, and replies
    /// to the requests that waited for the move.
    pub(super) fn hand_off(&mut self, move_id: u64) -> Result<(), ShardError> {
        failpoint::hit("shard.before_hand_off");
        if self.copying == Some(move_id) {
            self.copying = None;
        }
        let Some(done) = self.state.hand_off(move_id, &mut self.batch)? else {
            return Ok(());
        };
        let pause_ms = u64::try_from(now_unix_millis() - done.paused_ms).unwrap_or(0);
        let rows = done.state.rows();
        tracing::info!(
            shard.id = self.state.shard_id(),
            move_id,
            first = done.first,
            last = done.last,
            target = done.target,
            map_version = done.version,
            rows,
            pause_ms,
            "slots handed off"
        );
        self.peers.handed_off(
            done.first,
            done.last,
            done.target,
            &done.target_address,
            done.version,
        );
        let moved = ShardReply::Moved {
            version: done.version,
            rows,
            pause_ms,
        };
        for (reply, id) in std::mem::take(&mut self.move_waiters) {
            self.batch.push_reply(&reply, id, Ok(moved.clone()));
        }
        Ok(())
    }
}

/// Returns whether an import rejection is temporary (an overloaded or
/// unavailable target). Every rejection is retried, but only the others
/// are logged as errors.
fn is_transient(refusal: &ShardError) -> bool {
    matches!(
        refusal,
        ShardError::Client {
            error: Error::Overloaded { .. } | Error::ShardUnavailable { .. },
        }
    )
}
