//! Retries of a request that a shard rejected because it does not serve
//! the request's slot at the moment.
//!
//! - `not_owner`: the slot belongs to another shard. The router refreshes
//!   its map and sends the request once more.
//! - `slot_moving`: the owner is handing the slot to another shard and
//!   pauses requests for it meanwhile. The pauses reported in
//!   docs/performance.md are under 0.1 s per move. The router waits the
//!   delay that the shard suggests (at most [`MAX_WAIT`] at a time),
//!   refreshes its map, and sends the request again to whichever shard
//!   owns the slot then. It stops once
//!   [`MOVE_BUDGET`] has passed since the first such rejection. Each wait
//!   also allows one more `not_owner` retry, because once the move ends,
//!   the old owner rejects the request with `not_owner` instead.
//!
//! A shard that sends either rejection has changed nothing, so sending the
//! request again is safe. When the retries run out the client gets
//! `map_changed`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use trecho_common::internal::{ShardError, ShardReply};
use trecho_common::link::LinkError;

use crate::cluster::Cluster;

/// Maximum wait after one `slot_moving` rejection, whatever delay the shard
/// suggests.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(100);
/// Minimum wait, so that a shard that suggests 0 ms does not get the
/// request again in a tight loop.
const MIN_WAIT: Duration = Duration::from_millis(5);
/// Maximum time, from a request's first `slot_moving` rejection, that the
/// router waits for moving slots. The client then gets `map_changed`, or a
/// merged result without the shard.
pub(crate) const MOVE_BUDGET: Duration = Duration::from_secs(2);

/// Count of requests that ran out of time waiting for a moving slot, which
/// rate-limits the warning.
static GAVE_UP: AtomicU64 = AtomicU64::new(0);

/// A shard's rejection after which the router may send the request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The shard does not own the slot.
    NotOwner,
    /// The slot is moving, and the shard suggests a retry after
    /// `retry_after_ms`.
    Moving {
        /// Delay suggested by the shard, in milliseconds.
        retry_after_ms: u64,
    },
}

impl Refusal {
    /// Returns the rejection in `answer`, if the router retries that kind.
    pub(crate) fn of(answer: &Result<ShardReply, LinkError>) -> Option<Refusal> {
        answer.as_ref().err().and_then(Refusal::of_error)
    }

    /// Converts `error` to a rejection, if the router retries that kind.
    pub(crate) fn of_error(error: &LinkError) -> Option<Refusal> {
        match error {
            LinkError::Remote(ShardError::NotOwner { .. }) => Some(Refusal::NotOwner),
            LinkError::Remote(ShardError::SlotMoving { retry_after_ms, .. }) => {
                Some(Refusal::Moving {
                    retry_after_ms: *retry_after_ms,
                })
            }
            _ => None,
        }
    }

    /// Returns the rejection that decides the next step when several shards
    /// rejected a request at once: the `slot_moving` with the longest wait,
    /// or else `not_owner`.
    pub(crate) fn worst(refusals: impl IntoIterator<Item = Refusal>) -> Option<Refusal> {
        refusals.into_iter().max_by_key(|refusal| match refusal {
            Refusal::NotOwner => None,
            Refusal::Moving { retry_after_ms } => Some(*retry_after_ms),
        })
    }
}

/// Retries left to one request.
#[derive(Debug)]
pub(crate) struct Retries {
    /// Whether a `not_owner` rejection may still be retried.
    not_owner_left: bool,
    /// Deadline for waiting on moving slots, set by the first wait.
    move_deadline: Option<Instant>,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            not_owner_left: true,
            move_deadline: None,
        }
    }
}

impl Retries {
    /// Waits as `refusal` requires and refreshes the map of `cluster`.
    /// Returns false, without waiting, when the request has no retry left
    /// for this kind of rejection. The caller then returns the rejection's
    /// error to the client.
    pub(crate) async fn again(&mut self, cluster: &Cluster, refusal: Refusal) -> bool {
        match refusal {
            Refusal::NotOwner if self.not_owner_left => self.not_owner_left = false,
            Refusal::NotOwner => return false,
            Refusal::Moving { retry_after_ms } => {
                if !self.wait(retry_after_ms).await {
                    log_gave_up(retry_after_ms);
                    return false;
                }
                self.not_owner_left = true;
            }
        }
        cluster.refresh().await;
        true
    }

    /// Sleeps for `retry_after_ms`, bounded by [`MIN_WAIT`], [`MAX_WAIT`]
    /// and what is left of [`MOVE_BUDGET`]. Returns false, without
    /// sleeping, once the budget is spent.
    async fn wait(&mut self, retry_after_ms: u64) -> bool {
        let now = Instant::now();
        let deadline = *self.move_deadline.get_or_insert(now + MOVE_BUDGET);
        if now >= deadline {
            return false;
        }
        let asked = Duration::from_millis(retry_after_ms).clamp(MIN_WAIT, MAX_WAIT);
        let wait = asked.min(deadline - now);
        tracing::debug!(
            wait_ms = wait.as_millis() as u64,
            "slot moving to another shard, waiting before a retry"
        );
        tokio::time::sleep(wait).await;
        true
    }
}

/// Logs a request that waited for a moving slot for the whole budget. Only
/// the first such request and every power of two are logged, because a
/// stuck move fails every request for its slots.
fn log_gave_up(retry_after_ms: u64) {
    let count = GAVE_UP.fetch_add(1, Ordering::Relaxed) + 1;
    if count.is_power_of_two() {
        tracing::warn!(
            budget_ms = MOVE_BUDGET.as_millis() as u64,
            retry_after_ms,
            gave_up_total = count,
            "slot still moving after the retry budget, the request fails with map_changed or \
             leaves the shard out of a merged result"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moving(retry_after_ms: u64) -> Result<ShardReply, LinkError> {
        Err(LinkError::Remote(ShardError::SlotMoving {
            slot: 3,
            shard: 1,
            retry_after_ms,
        }))
    }

    #[test]
    fn rejections_are_read_from_replies() {
        assert_eq!(
            Refusal::of(&moving(40)),
            Some(Refusal::Moving { retry_after_ms: 40 })
        );
        let not_owner = Err(LinkError::Remote(ShardError::NotOwner {
            slot: 3,
            shard: 1,
            map_version: 2,
            owner: None,
        }));
        assert_eq!(Refusal::of(&not_owner), Some(Refusal::NotOwner));
        assert_eq!(Refusal::of(&Ok(ShardReply::Pong)), None);
        assert_eq!(Refusal::of(&Err(LinkError::Lost { shard: 1 })), None);
    }

    #[test]
    fn worst_rejection_is_longest_move_wait() {
        let refusals = [
            Refusal::NotOwner,
            Refusal::Moving { retry_after_ms: 20 },
            Refusal::Moving { retry_after_ms: 70 },
        ];
        assert_eq!(
            Refusal::worst(refusals),
            Some(Refusal::Moving { retry_after_ms: 70 })
        );
        assert_eq!(Refusal::worst([Refusal::NotOwner]), Some(Refusal::NotOwner));
        assert_eq!(Refusal::worst([]), None);
    }

    #[tokio::test(start_paused = true)]
    async fn move_waits_are_bounded_by_budget() {
        let mut retries = Retries::default();
        let start = Instant::now();
        assert!(retries.wait(10_000).await);
        assert_eq!(start.elapsed(), MAX_WAIT, "a long delay is cut to MAX_WAIT");
        let before = Instant::now();
        assert!(retries.wait(0).await);
        assert_eq!(before.elapsed(), MIN_WAIT, "a zero delay waits MIN_WAIT");
        let mut waits = 2;
        while retries.wait(100).await {
            waits += 1;
        }
        assert_eq!(
            start.elapsed(),
            MOVE_BUDGET,
            "the last wait ends at the budget"
        );
        assert_eq!(waits, 21, "{waits} waits");
    }
}
