//! The owner task: the one place that changes the shard's state.
//!
//! It takes every request that is waiting, applies each in arrival order,
//! and hands the batch of records and replies to the journal thread. It
//! also runs the timers (hold expiry, deadlines) and applies what the peer
//! tasks report (finish acknowledgements, resolved outcomes). Nothing else
//! touches the state, so the hot path takes no lock.

mod moves;
mod peers;

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use trecho_common::internal::{ShardOp, TxnId};
use trecho_common::shardmap::ShardMap;
use trecho_common::time::now_unix_millis;

use crate::batch::Batch;
use crate::server::{Inbound, ReplyTo};
use crate::state::{DueResolve, FinishJob, State};
use peers::Peers;

/// Most requests applied in one batch; the rest wait for the next turn so
/// replies are not held back behind a long queue.
const MAX_BATCH: usize = 4096;
/// Longest time one turn applies requests before handing its batch on.
/// Replies leave only once their batch is durable, so a turn full of large
/// searches would otherwise keep every reply back for so long that the
/// router takes the silent shard for gone.
const MAX_TURN: Duration = Duration::from_millis(20);

/// Work for the owner task from the journal thread and the peer tasks.
#[derive(Debug)]
pub(crate) enum Command {
    /// These finishes are durable and may be sent.
    Deliver(Vec<FinishJob>),
    /// A participant acknowledged the finish of these participant slots.
    FinishAcked {
        txn: TxnId,
        slots: Vec<u16>,
        commit: bool,
    },
    /// The home shard answered a resolve.
    Outcome { txn: TxnId, committed: bool },
    /// A peer rejected a message for a slot it does not own. The message
    /// is sent again once the peers' maps have arrived.
    Reroute(Retry),
    /// The maps of the peers that replied, by shard id.
    MapsGathered(Vec<(u32, ShardMap)>),
    /// The pause of this move is durable, so its copy may start.
    MovePaused(u64),
    /// The target of this move imported it.
    TargetImported(u64),
}

/// A message to send again after a peer rejected it.
#[derive(Debug)]
pub(crate) enum Retry {
    /// A finish.
    Finish(FinishJob),
    /// A resolve.
    Resolve(DueResolve),
}

/// The journal thread stopped, so nothing more can be made durable.
#[derive(Debug, thiserror::Error)]
#[error("the journal thread stopped; restart the shard to replay the journal")]
pub(crate) struct JournalStopped;

/// The owner task's state and channels.
pub(crate) struct Owner {
    state: State,
    requests: mpsc::Receiver<Inbound>,
    commands: mpsc::UnboundedReceiver<Command>,
    journal: mpsc::Sender<Batch>,
    recycled: mpsc::UnboundedReceiver<Batch>,
    batch: Batch,
    peers: Peers,
    /// Requests waiting for the move out of this shard to end.
    move_waiters: Vec<(ReplyTo, u64)>,
    /// The move whose copy is in flight, so that it is not sent twice.
    copying: Option<u64>,
    commands_sender: mpsc::UnboundedSender<Command>,
}

/// The channels an [`Owner`] is built with.
pub(crate) struct OwnerChannels {
    pub requests: mpsc::Receiver<Inbound>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub command_sender: mpsc::UnboundedSender<Command>,
    pub journal: mpsc::Sender<Batch>,
    pub recycled: mpsc::UnboundedReceiver<Batch>,
}

impl Owner {
    /// Builds the owner over a replayed state.
    pub fn new(state: State, channels: OwnerChannels) -> Self {
        let peers = Peers::new(
            state.shard_id(),
            state.map().clone(),
            channels.command_sender.clone(),
        );
        Owner {
            state,
            requests: channels.requests,
            commands: channels.commands,
            journal: channels.journal,
            recycled: channels.recycled,
            batch: Batch::default(),
            peers,
            move_waiters: Vec::new(),
            copying: None,
            commands_sender: channels.command_sender,
        }
    }

    /// Serves until `stop` turns true or the journal thread stops.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), JournalStopped> {
        // Finishes left unacknowledged before the restart are durable
        // already, so they go out at once.
        for job in self.state.outbox_jobs() {
            self.peers.deliver(job);
        }
        self.state.take_finishes();
        // A move paused before the restart is durable, so its copy is sent
        // again.
        if let Some(move_id) = self.state.moving().map(|m| m.move_id) {
            self.send_copy(move_id);
        }
        self.tick();
        self.flush().await?;
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                Some(command) = self.commands.recv() => {
                    self.tick();
                    self.on_command(command);
                }
                request = self.requests.recv() => {
                    let Some(request) = request else { break };
                    self.tick();
                    self.on_request(request);
                }
                _ = sleep_until(wake), if wake.is_some() => self.tick(),
            }
            self.drain();
            self.flush().await?;
        }
        self.flush().await
    }

    /// Applies what else is already queued, up to [`MAX_BATCH`] requests or
    /// [`MAX_TURN`] of work, whichever comes first.
    fn drain(&mut self) {
        let started = std::time::Instant::now();
        while let Ok(command) = self.commands.try_recv() {
            self.on_command(command);
        }
        for _ in 1..MAX_BATCH {
            if started.elapsed() >= MAX_TURN {
                break;
            }
            let Ok(request) = self.requests.try_recv() else {
                break;
            };
            self.on_request(request);
        }
    }

    fn on_request(&mut self, request: Inbound) {
        let Inbound { reply, id, op } = request;
        let method = op_name(&op);
        let op = match op {
            ShardOp::MoveSlots {
                first,
                last,
                target,
                target_address,
                version,
            } => {
                let request = crate::state::MoveRequest {
                    first,
                    last,
                    target,
                    target_address,
                    version,
                };
                self.start_move(reply, id, request);
                return;
            }
            ShardOp::ImportSlots(import) => {
                // Crash tests stop the target here, with the copy received
                // and nothing of it written.
                trecho_common::failpoint::hit("shard.before_import");
                let map = import.map.clone();
                let before = self.batch.record_count;
                let result = self.state.handle(
                    ShardOp::ImportSlots(import),
                    now_unix_millis(),
                    &mut self.batch,
                );
                if self.batch.record_count > before {
                    self.batch.failpoints.after_import = true;
                    self.peers.learn(&map, self.state.map());
                    tracing::info!(
                        shard.id = self.state.shard_id(),
                        map_version = self.state.map().version,
                        "slots imported"
                    );
                }
                if let Err(error) = &result {
                    tracing::warn!(shard.id = self.state.shard_id(), %error, "import rejected");
                }
                self.collect_finishes();
                self.batch.push_reply(&reply, id, result);
                return;
            }
            op => op,
        };
        let point = match op {
            ShardOp::Prepare { .. } => Some(true),
            ShardOp::Decide { .. } => Some(false),
            _ => None,
        };
        let before = self.batch.record_count;
        let result = self.state.handle(op, now_unix_millis(), &mut self.batch);
        if self.batch.record_count > before {
            match point {
                Some(true) => self.batch.failpoints.after_prepare = true,
                Some(false) => self.batch.failpoints.after_decide = true,
                None => {}
            }
        }
        match &result {
            Ok(_) => tracing::debug!(
                conn.id = reply.conn,
                request.id = id,
                method,
                "request applied"
            ),
            Err(error) => {
                tracing::debug!(conn.id = reply.conn, request.id = id, method, %error, "request refused")
            }
        }
        self.collect_finishes();
        self.batch.push_reply(&reply, id, result);
    }

    fn on_command(&mut self, command: Command) {
        let result = match command {
            Command::Deliver(jobs) => {
                jobs.into_iter().for_each(|job| self.peers.deliver(job));
                Ok(())
            }
            Command::FinishAcked { txn, slots, commit } => {
                let mut result = Ok(());
                for slot in slots {
                    let acknowledged = self.state.acknowledge(txn, slot, commit, &mut self.batch);
                    self.peers.acknowledged(txn, slot, commit);
                    result = result.and(acknowledged);
                }
                result
            }
            Command::Outcome { txn, committed } => {
                self.peers.resolved(txn);
                self.state.apply_outcome(txn, committed, &mut self.batch)
            }
            Command::Reroute(retry) => {
                self.peers.reroute(retry);
                Ok(())
            }
            Command::MapsGathered(answers) => {
                for retry in self.peers.adopt(answers, self.state.map()) {
                    match retry {
                        Retry::Finish(job) => self.peers.redeliver(job),
                        Retry::Resolve(due) => {
                            self.peers.resolved(due.txn);
                            self.peers.resolve(due);
                        }
                    }
                }
                Ok(())
            }
            Command::MovePaused(move_id) => {
                self.send_copy(move_id);
                Ok(())
            }
            Command::TargetImported(move_id) => self.hand_off(move_id),
        };
        if let Err(error) = result {
            tracing::warn!(shard.id = self.state.shard_id(), %error, "peer report not applied");
        }
        self.collect_finishes();
    }

    /// Runs the timers that are due.
    fn tick(&mut self) {
        let now = now_unix_millis();
        let Some(next) = self.state.next_timer() else {
            return;
        };
        if next > now {
            return;
        }
        match self.state.tick(now, &mut self.batch) {
            Ok(due) => due.into_iter().for_each(|d| self.peers.resolve(d)),
            Err(error) => tracing::error!(shard.id = self.state.shard_id(), %error, "timer failed"),
        }
        self.collect_finishes();
    }

    /// Moves newly queued finishes into the batch: they go out only after
    /// the journal thread made their records durable.
    fn collect_finishes(&mut self) {
        let finishes = self.state.take_finishes();
        self.batch.finishes.extend(finishes);
    }

    fn next_wake(&self) -> Option<Instant> {
        let at = self.state.next_timer()?;
        let wait = u64::try_from(at - now_unix_millis()).unwrap_or(0);
        Some(Instant::now() + Duration::from_millis(wait))
    }

    /// Hands the batch to the journal thread, waiting while it is behind:
    /// requests queue up meanwhile and the next batch grows.
    async fn flush(&mut self) -> Result<(), JournalStopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let next = self.recycled.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut self.batch, next);
        self.journal.send(full).await.map_err(|_| JournalStopped)
    }
}

fn sleep_until(wake: Option<Instant>) -> impl Future<Output = ()> {
    tokio::time::sleep_until(wake.unwrap_or_else(Instant::now))
}

/// Returns the operation's name for logs.
fn op_name(op: &ShardOp) -> &'static str {
    match op {
        ShardOp::Ping => "ping",
        ShardOp::Status => "status",
        ShardOp::ClusterMap => "cluster_map",
        ShardOp::Search { .. } => "search",
        ShardOp::GetSegment { .. } => "get_segment",
        ShardOp::Seats { .. } => "seats",
        ShardOp::Book { .. } => "book",
        ShardOp::Prepare { .. } => "prepare",
        ShardOp::Decide { .. } => "decide",
        ShardOp::Finish { .. } => "finish",
        ShardOp::Resolve { .. } => "resolve",
        ShardOp::Confirm { .. } => "confirm",
        ShardOp::Cancel { .. } => "cancel",
        ShardOp::GetBooking { .. } => "get_booking",
        ShardOp::ListBookings { .. } => "list_bookings",
        ShardOp::Audit => "audit",
        ShardOp::MoveSlots { .. } => "move_slots",
        ShardOp::ImportSlots(_) => "import_slots",
    }
}
