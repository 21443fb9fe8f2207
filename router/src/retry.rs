//! When the router sends a request again after a shard refused it for a
//! slot it does not serve right now.
//!
//! - `not_owner`: the slot belongs to another shard. The router refreshes
//!   its map and sends the request once more.
//! - `slot_moving`: the slot is being handed to another shard, which pauses
//!   its requests for normally well under half a second. The router waits
//!   the time the shard asked for (at most [`MAX_WAIT`] at a time),
//!   refreshes its map, and sends the request again, to whichever shard owns
//!   the slot then, until [`MOVE_BUDGET`] has passed since the first such
//!   refusal. Each wait also allows one more `not_owner` retry, because the
//!   move's end turns the old owner's refusals into `not_owner`.
//!
//! A shard that sends either refusal has changed nothing, so sending the
//! request again is safe. When the retries run out the client gets
//! `map_changed`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use trecho_common::internal::{ShardError, ShardReply};
use trecho_common::link::LinkError;

use crate::cluster::Cluster;

/// Longest wait after one `slot_moving` refusal, whatever the shard asks.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(100);
/// Shortest wait, so that a shard asking for 0 ms is not asked again in a
/// tight loop.
const MIN_WAIT: Duration = Duration::from_millis(5);
/// Time after the first `slot_moving` refusal of a request past which the
/// router stops waiting and the client gets `map_changed`.
pub(crate) const MOVE_BUDGET: Duration = Duration::from_secs(2);

/// Requests that ran out of time waiting for a moving slot, for rate-limited
/// logging.
static GAVE_UP: AtomicU64 = AtomicU64::new(0);

/// A refusal after which the router may send the request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The shard does not own the slot.
    NotOwner,
    /// The slot is moving; the shard asks to retry after this many
    /// milliseconds.
    Moving {
        /// The shard's suggested wait.
        retry_after_ms: u64,
    },
}

impl Refusal {
    /// Returns the refusal in `answer`, if it is one the router retries.
    pub(crate) fn of(answer: &Result<ShardReply, LinkError>) -> Option<Refusal> {
        answer.as_ref().err().and_then(Refusal::of_error)
    }

    /// Returns the refusal `error` is, if it is one the router retries.
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

    /// Returns the refusal that decides the next step when several shards
    /// refused at once: `slot_moving` with the longest wait, else
    /// `not_owner`.
    pub(crate) fn worst(refusals: impl IntoIterator<Item = Refusal>) -> Option<Refusal> {
        refusals.into_iter().max_by_key(|refusal| match refusal {
            Refusal::NotOwner => None,
            Refusal::Moving { retry_after_ms } => Some(*retry_after_ms),
        })
    }
}

/// The retries left to one request.
#[derive(Debug)]
pub(crate) struct Retries {
    /// Whether a `not_owner` refusal may still be retried.
    not_owner_left: bool,
    /// When waiting for moving slots ends; set by the first wait.
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
    /// for it: the caller then gives the client the refusal's error.
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
            "slot is moving to another shard; waiting before a retry"
        );
        tokio::time::sleep(wait).await;
        true
    }
}

/// Logs a request that waited for a moving slot for the whole budget:
/// the first time and then at every power of two, since a stuck move
/// fails every request for its slots.
fn log_gave_up(retry_after_ms: u64) {
    let count = GAVE_UP.fetch_add(1, Ordering::Relaxed) + 1;
    if count.is_power_of_two() {
        tracing::warn!(
            budget_ms = MOVE_BUDGET.as_millis() as u64,
            retry_after_ms,
            gave_up_total = count,
            "slot still moving after the retry budget; the request fails with map_changed, or \
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
    fn refusals_are_read_from_answers() {
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
    fn worst_refusal_is_the_longest_move_wait() {
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
    async fn move_waits_are_bounded_and_stop_at_the_budget() {
        let mut retries = Retries::default();
        let start = Instant::now();
        assert!(retries.wait(10_000).await);
        assert_eq!(start.elapsed(), MAX_WAIT, "a long ask is cut to MAX_WAIT");
        let before = Instant::now();
        assert!(retries.wait(0).await);
        assert_eq!(before.elapsed(), MIN_WAIT, "a zero ask waits MIN_WAIT");
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
