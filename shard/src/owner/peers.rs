//! Messages from this shard to other shards: finishes sent by a home shard
//! to the participants of its transactions, and resolves sent by a
//! participant whose reservation outlived its deadline.
//!
//! Each message is sent by a task of its own that retries with backoff
//! until the peer answers; the answer goes back to the owner task as a
//! [`Command`], which journals it. Sending twice is harmless: both
//! messages are idempotent on the receiving shard.
//!
//! A finish names participant slots. It goes to the shard that owns them
//! under this shard's map, one message per owner for the slots it owns.
//! A peer that does not own a slot any more rejects the message. This
//! shard then requests every peer's map, merges their claims of their own
//! slots as a router does, and sends the message again by the merged map.
//! A peer that is moving the slot rejects the message with `slot_moving`,
//! and the task retries it with backoff.
//!
//! Fault-injection point, for crash tests (see `trecho_common::failpoint`):
//! `shard.mid_finish` stops a home shard half-way through telling the
//! participants: with it enabled, a finish for two or more participant
//! shards goes to the first one alone, and the shard stops once that one
//! acknowledged, before the others hear anything.

use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::mpsc;
use trecho_common::error::Error;
use trecho_common::failpoint;
use trecho_common::internal::{ShardError, ShardOp, ShardReply, TxnId};
use trecho_common::link::{LinkError, LinkOptions, ShardLink};
use trecho_common::shardmap::{merge_claims, ShardInfo, ShardMap};

use super::{Command, Retry};
use crate::state::{DueResolve, FinishJob};

/// First wait after a failed attempt; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

const MID_FINISH: &str = "shard.mid_finish";
/// Timeout for one peer's `cluster_map` reply during a map refresh.
const MAP_TIMEOUT: Duration = Duration::from_secs(2);

/// Links to the other shards and the messages in flight on them.
pub(super) struct Peers {
    shard_id: u32,
    map: ShardMap,
    links: FxHashMap<u32, ShardLink>,
    commands: mpsc::UnboundedSender<Command>,
    /// Finishes being sent, by transaction and participant slot.
    finishing: FxHashSet<(TxnId, u16, bool)>,
    /// Resolves being sent.
    resolving: FxHashSet<TxnId>,
    /// Messages rejected by a peer that does not own their slot, waiting
    /// for the map refresh in progress.
    waiting: Vec<Retry>,
    /// Whether a map refresh is in progress.
    refreshing: bool,
}

impl Peers {
    pub fn new(shard_id: u32, map: ShardMap, commands: mpsc::UnboundedSender<Command>) -> Self {
        Peers {
            shard_id,
            map,
            links: FxHashMap::default(),
            commands,
            finishing: FxHashSet::default(),
            resolving: FxHashSet::default(),
            waiting: Vec::new(),
            refreshing: false,
        }
    }

    /// Adds the shards that `map` names and the routing map lacks, with
    /// their addresses but without their slots, and raises the version to
    /// `map`'s. `own` is this shard's own map, which is authoritative for
    /// this shard's slots.
    pub fn learn(&mut self, map: &ShardMap, own: &ShardMap) {
        let mut next = self.map.clone();
        for shard in &map.shards {
            if next.shard(shard.id).is_err() {
                next.shards.push(ShardInfo {
                    id: shard.id,
                    address: shard.address.clone(),
                    slots: Vec::new(),
                });
            }
        }
        next.version = next.version.max(map.version);
        self.take_own_slots(next, own);
    }

    /// Routes slots `first..=last` to shard `to` at `address` after this
    /// shard handed them off to it.
    pub fn handed_off(&mut self, first: u16, last: u16, to: u32, address: &str, version: u64) {
        let _ = self.map.assign(first, last, to, address, version);
    }

    /// Sets this shard's slots in `next` from `own`, and routes by `next`
    /// if the result is a valid map. Drops the links whose peer's address
    /// changed.
    fn take_own_slots(&mut self, mut next: ShardMap, own: &ShardMap) {
        if let Ok(me) = own.shard(self.shard_id) {
            for &[first, last] in &me.slots {
                let _ = next.assign(first, last, self.shard_id, &me.address, own.version);
            }
        }
        if let Err(error) = next.validate() {
            tracing::warn!(shard.id = self.shard_id, %error, "new peer map is invalid, keeping the map in use");
            return;
        }
        tracing::debug!(
            shard.id = self.shard_id,
            map_version = next.version,
            "peers use a new shard map"
        );
        self.map = next;
        let map = &self.map;
        self.links
            .retain(|id, link| map.shard(*id).is_ok_and(|s| s.address == link.address()));
    }

    /// Queues a message that a peer rejected for a slot it does not own,
    /// and requests every peer's map unless a request is in progress. The
    /// message is sent again once the maps have arrived.
    pub fn reroute(&mut self, retry: Retry) {
        self.waiting.push(retry);
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let ids: Vec<u32> = self
            .map
            .shards
            .iter()
            .map(|s| s.id)
            .filter(|&id| id != self.shard_id)
            .collect();
        let links: Vec<ShardLink> = ids.into_iter().filter_map(|id| self.link(id)).collect();
        let commands = self.commands.clone();
        tokio::spawn(async move {
            let calls = links.iter().map(|link| async move {
                let answer =
                    tokio::time::timeout(MAP_TIMEOUT, link.call(&ShardOp::ClusterMap)).await;
                match answer {
                    Ok(Ok(ShardReply::ClusterMap { map })) => Some((link.shard(), map)),
                    _ => None,
                }
            });
            let answers = futures::future::join_all(calls).await;
            let answers = answers.into_iter().flatten().collect();
            let _ = commands.send(Command::MapsGathered(answers));
        });
    }

    /// Routes by the merge of the peers' maps in `answers` and this shard's
    /// `own` map, and returns the messages that waited for the refresh.
    pub fn adopt(&mut self, mut answers: Vec<(u32, ShardMap)>, own: &ShardMap) -> Vec<Retry> {
        self.refreshing = false;
        answers.push((self.shard_id, own.clone()));
        match merge_claims(&answers) {
            Some(Ok(merged)) => {
                let mut next = merged;
                // Keep the addresses of shards that no reply named.
                for shard in &self.map.shards {
                    if next.shard(shard.id).is_err() {
                        next.shards.push(ShardInfo {
                            id: shard.id,
                            address: shard.address.clone(),
                            slots: Vec::new(),
                        });
                    }
                }
                self.take_own_slots(next, own);
            }
            Some(Err(error)) => {
                tracing::warn!(
                    shard.id = self.shard_id,
                    %error,
                    "failed to merge peers' maps, keeping the current map"
                );
            }
            None => {}
        }
        std::mem::take(&mut self.waiting)
    }

    /// Resends a finish that a peer rejected because it does not own the
    /// finish's slots.
    pub fn redeliver(&mut self, job: FinishJob) {
        for &slot in &job.slots {
            self.finishing.remove(&(job.txn, slot, job.commit));
        }
        self.deliver(job);
    }

    /// Sends the finish of `job` to the owner of each of its slots.
    pub fn deliver(&mut self, job: FinishJob) {
        let (txn, commit) = (job.txn, job.commit);
        let slots: Vec<u16> = job
            .slots
            .into_iter()
            .filter(|&slot| self.finishing.insert((txn, slot, commit)))
            .collect();
        let by_owner = self.group_by_owner(&slots);
        if by_owner.len() > 1 && failpoint::is_enabled(MID_FINISH) {
            self.deliver_then_stop(txn, commit, by_owner);
            return;
        }
        for (owner, slots) in by_owner {
            let Some(link) = self.link(owner) else {
                continue;
            };
            let commands = self.commands.clone();
            let op = ShardOp::Finish {
                txn,
                commit,
                slots: slots.clone(),
            };
            tokio::spawn(async move {
                let acked = send_until_answered(&link, &op, |reply| {
                    matches!(reply, ShardReply::Ack).then_some(())
                })
                .await;
                match acked {
                    Sent::Answered(()) => {
                        let _ = commands.send(Command::FinishAcked { txn, slots, commit });
                    }
                    Sent::Moved => {
                        let job = FinishJob { txn, commit, slots };
                        let retry = Retry::Finish(job);
                        let _ = commands.send(Command::Reroute(retry));
                    }
                    Sent::GaveUp => {}
                }
            });
        }
    }

    /// Groups `slots` by the shard that owns each, in order of first
    /// appearance.
    fn group_by_owner(&self, slots: &[u16]) -> Vec<(u32, Vec<u16>)> {
        let mut groups: Vec<(u32, Vec<u16>)> = Vec::new();
        for &slot in slots {
            let owner = self.map.owner_of_slot(slot).id;
            match groups.iter_mut().find(|(id, _)| *id == owner) {
                Some((_, group)) => group.push(slot),
                None => groups.push((owner, vec![slot])),
            }
        }
        groups
    }

    /// Sends the finish to the first participant shard alone and stops the
    /// process at `shard.mid_finish` once it is acknowledged.
    fn deliver_then_stop(&mut self, txn: TxnId, commit: bool, by_owner: Vec<(u32, Vec<u16>)>) {
        let Some((owner, slots)) = by_owner.into_iter().next() else {
            return;
        };
        let Some(link) = self.link(owner) else {
            return;
        };
        let op = ShardOp::Finish { txn, commit, slots };
        tokio::spawn(async move {
            let acked = send_until_answered(&link, &op, |reply| {
                matches!(reply, ShardReply::Ack).then_some(())
            })
            .await;
            if matches!(acked, Sent::Answered(())) {
                failpoint::hit(MID_FINISH);
            }
        });
    }

    /// Forgets a finish once its acknowledgement is journaled.
    pub fn acknowledged(&mut self, txn: TxnId, slot: u16, commit: bool) {
        self.finishing.remove(&(txn, slot, commit));
    }

    /// Asks the home shard of `due` for its outcome.
    pub fn resolve(&mut self, due: DueResolve) {
        if !self.resolving.insert(due.txn) {
            return;
        }
        let home = self.map.owner_of_slot(due.home_slot).id;
        let Some(link) = self.link(home) else {
            return;
        };
        let commands = self.commands.clone();
        let op = ShardOp::Resolve {
            txn: due.txn,
            home_slot: due.home_slot,
        };
        let txn = due.txn;
        tokio::spawn(async move {
            let outcome = send_until_answered(&link, &op, |reply| match reply {
                ShardReply::Outcome { committed } => Some(*committed),
                _ => None,
            })
            .await;
            match outcome {
                Sent::Answered(committed) => {
                    let _ = commands.send(Command::Outcome { txn, committed });
                }
                Sent::Moved => {
                    let retry = Retry::Resolve(due);
                    let _ = commands.send(Command::Reroute(retry));
                }
                Sent::GaveUp => {}
            }
        });
    }

    /// Forgets a resolve once its outcome is applied.
    pub fn resolved(&mut self, txn: TxnId) {
        self.resolving.remove(&txn);
    }

    fn link(&mut self, shard: u32) -> Option<ShardLink> {
        if let Some(link) = self.links.get(&shard) {
            return Some(link.clone());
        }
        let Ok(info) = self.map.shard(shard) else {
            tracing::error!(
                shard.id = self.shard_id,
                peer.id = shard,
                "peer is not in the shard map; message dropped"
            );
            return None;
        };
        let link = ShardLink::spawn(shard, info.address.clone(), LinkOptions::default());
        self.links.insert(shard, link.clone());
        Some(link)
    }
}

/// Result of sending a message to a peer.
enum Sent<T> {
    /// The peer sent a reply that the caller accepts.
    Answered(T),
    /// The peer does not own the slot.
    Moved,
    /// The peer sent an unexpected reply, or rejected the message for a
    /// reason that a retry would not change.
    GaveUp,
}

/// Sends `op` until the peer sends a reply that `accept` takes, waiting
/// longer after each failure. A `not_owner` rejection returns
/// [`Sent::Moved`] after one backoff delay, so that the caller reroutes the
/// message. Gives up on an unexpected reply or on a rejection that a retry
/// would not change, and the message is then sent again only after a
/// restart.
async fn send_until_answered<T>(
    link: &ShardLink,
    op: &ShardOp,
    accept: impl Fn(&ShardReply) -> Option<T>,
) -> Sent<T> {
    let mut backoff = MIN_BACKOFF;
    loop {
        match link.call(op).await {
            Ok(reply) => {
                if let Some(value) = accept(&reply) {
                    return Sent::Answered(value);
                }
                // The reply is not logged: it may hold a passenger's details.
                tracing::error!(
                    peer.id = link.shard(),
                    "unexpected answer from peer shard; the shards may run different versions"
                );
                return Sent::GaveUp;
            }
            Err(LinkError::Remote(ShardError::NotOwner { slot, owner, .. })) => {
                tracing::debug!(peer.id = link.shard(), slot, owner = ?owner, "peer shard no longer owns a slot");
                // The delay prevents a tight resend loop while the peers'
                // maps lag behind a move.
                tokio::time::sleep(backoff).await;
                return Sent::Moved;
            }
            Err(LinkError::Remote(refusal)) if !is_transient(&refusal) => {
                tracing::error!(peer.id = link.shard(), %refusal, "peer shard refused a transaction message");
                return Sent::GaveUp;
            }
            Err(error) => {
                tracing::debug!(peer.id = link.shard(), %error, "peer shard unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Returns whether a rejection is temporary: the peer's request queue is
/// full, the peer is stopping, or the peer is moving the slot. Giving up on
/// those would leave a finish undelivered, or a prepared reservation
/// unresolved, until a restart.
fn is_transient(refusal: &ShardError) -> bool {
    matches!(
        refusal,
        ShardError::Client {
            error: Error::Overloaded { .. } | Error::ShardUnavailable { .. },
        } | ShardError::SlotMoving { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_busy_or_stopping_peers_are_retried() {
        let overloaded = Error::Overloaded {
            message: "queue full".to_owned(),
        };
        let stopping = Error::ShardUnavailable {
            shard: 1,
            retry_after_ms: 1000,
        };
        assert!(is_transient(&overloaded.into()));
        assert!(is_transient(&stopping.into()));
        let moving = ShardError::SlotMoving {
            slot: 3,
            shard: 1,
            retry_after_ms: 50,
        };
        assert!(is_transient(&moving));

        let not_owner = ShardError::NotOwner {
            slot: 3,
            shard: 1,
            map_version: 1,
            owner: Some(0),
        };
        let bad_request = ShardError::BadRequest {
            message: "no reservation".to_owned(),
        };
        let internal = Error::internal("aborted".to_owned());
        assert!(!is_transient(&not_owner));
        assert!(!is_transient(&bad_request));
        assert!(!is_transient(&internal.into()));
    }
}
