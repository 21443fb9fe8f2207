//! The router's part of a multi-shard booking: prepare on every participant,
//! then send the decision to the home shard, which records it (the commit
//! point) and finishes the other participants itself.
//!
//! Fault-injection points, for crash tests (see `trecho_common::failpoint`):
//! - `router.after_prepare_some`: the first participant (the home shard)
//!   prepared, the others were not asked yet. With this point enabled the
//!   router sends the first prepare alone and waits for its answer.
//! - `router.after_prepare_all`: every participant prepared, no decision
//!   sent.
//! - `router.after_decide`: the home shard answered a commit decision, the
//!   client has no answer yet.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::join_all;
use trecho_common::error::Error;
use trecho_common::failpoint;
use trecho_common::hashing::{distinct_slots, slot};
use trecho_common::internal::{Claim, ShardError, ShardOp, ShardReply, TxnId};
use trecho_common::link::{LinkError, ShardLink};
use trecho_common::protocol::methods::BookRequest;
use trecho_common::time::now_unix_millis;
use trecho_common::types::Booking;

use super::{first_in_request_order, Group};
use crate::cluster::Cluster;
use crate::forward::send_to_owner;
use crate::retry::Refusal;
use crate::shard_error::{client_error, reply_type, unexpected_reply};

const AFTER_PREPARE_SOME: &str = "router.after_prepare_some";
const AFTER_PREPARE_ALL: &str = "router.after_prepare_all";
const AFTER_DECIDE: &str = "router.after_decide";

/// One transaction in progress.
struct Transaction {
    cluster: Arc<Cluster>,
    txn: TxnId,
    home_slot: u16,
    /// Shard ids of the participants, home first.
    participants: Vec<u32>,
    /// Link index of each participant, in the same order.
    links: Vec<usize>,
    /// The participant slots of each participant, in the same order: the
    /// slots of its segments, or the document's slot for a participant
    /// that only claims the request id.
    slots: Vec<Vec<u16>>,
    /// The booking's segments, in request order.
    segments: Vec<String>,
}

/// The cause of a failed two-phase booking.
pub(super) struct Failure {
    /// The client's error.
    pub(super) error: Error,
    /// Set when the error is `map_changed` because a participant rejected a
    /// slot that it does not own or is moving. The transaction was aborted, so
    /// booking again on a refreshed map is safe.
    pub(super) refusal: Option<Refusal>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            refusal: None,
        }
    }
}

/// The future of a two-phase booking.
pub(super) type Booked = Pin<Box<dyn Future<Output = Result<Booking, Failure>> + Send>>;

/// Sends the prepares now (or only the first one when
/// `router.after_prepare_some` is enabled) and returns the future of the
/// booking.
pub(super) fn start(
    cluster: Arc<Cluster>,
    request: BookRequest,
    groups: Vec<Group>,
    claim_at: Option<usize>,
) -> Booked {
    let transaction = Transaction {
        txn: random_txn(),
        home_slot: slot(&request.segments[0]),
        participants: groups
            .iter()
            .map(|g| cluster.link(g.link).shard())
            .collect(),
        links: groups.iter().map(|g| g.link).collect(),
        slots: groups
            .iter()
            .map(|g| {
                let claims = claim_at == Some(g.link);
                participant_slots(g, &request.passenger.document, claims)
            })
            .collect(),
        segments: request.segments.clone(),
        cluster,
    };
    let prepares = transaction.prepares(request, groups, claim_at);
    tracing::debug!(
        txn = transaction.txn,
        participants = ?transaction.participants,
        "two-phase booking started"
    );
    if failpoint::is_enabled(AFTER_PREPARE_SOME) {
        let first = transaction.send(0, &prepares[0]);
        return Box::pin(async move {
            let mut votes = vec![first.await];
            failpoint::hit(AFTER_PREPARE_SOME);
            let rest = prepares
                .iter()
                .enumerate()
                .skip(1)
                .map(|(index, op)| transaction.send(index, op));
            votes.extend(join_all(rest).await);
            transaction.conclude(votes).await
        });
    }
    let answers: Vec<_> = prepares
        .iter()
        .enumerate()
        .map(|(index, op)| transaction.send(index, op))
        .collect();
    Box::pin(async move {
        let votes = join_all(answers).await;
        transaction.conclude(votes).await
    })
}

/// Returns the distinct slots of the group's segments, and the slot of
/// `document` when the group claims the request id there. The home shard
/// checks that the document's slot is among the participant slots unless
/// it owns that slot itself.
fn participant_slots(group: &Group, document: &str, claims: bool) -> Vec<u16> {
    let segments = group.segments.iter().map(String::as_str);
    distinct_slots(segments.chain(claims.then_some(document)))
}

/// Returns a transaction id from the standard library's randomly keyed
/// hasher over a process-wide counter and the clock, so ids differ across
/// calls, threads and router processes.
fn random_txn() -> TxnId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_i64(now_unix_millis());
    hasher.finish()
}

/// What the participants answered to their prepares.
#[derive(Default)]
struct Votes {
    prepared: usize,
    /// The home shard's answer when the request id already made a booking.
    existing: Option<Booking>,
    /// Client errors, in participant order.
    refusals: Vec<Error>,
    /// The first failure that is our bug or a configuration error.
    internal: Option<Error>,
    /// The first participant whose prepare was never sent.
    unavailable: Option<Error>,
    /// The first participant whose prepare was sent but not answered.
    lost: Option<u32>,
    /// The shard that got the home's prepare rejected it because it does
    /// not own or is moving the home slot. No shard then has a pending
    /// record, so the transaction can never commit.
    home_refused: bool,
    /// Rejections of slots that a participant does not own or is moving.
    moved: Vec<Refusal>,
}

impl Transaction {
    /// Builds each participant's prepare; the home shard's carries the
    /// whole booking.
    fn prepares(
        &self,
        request: BookRequest,
        groups: Vec<Group>,
        claim_at: Option<usize>,
    ) -> Vec<ShardOp> {
        let deadline_ms = now_unix_millis()
            .saturating_add(i64::try_from(self.cluster.prepare_timeout_ms()).unwrap_or(i64::MAX));
        let seats = request.seats;
        let claim = request.request_id.as_ref().map(|request_id| Claim {
            document: request.passenger.document.clone(),
            request_id: request_id.clone(),
            fingerprint: request.fingerprint(),
        });
        let mut booking = Some(request);
        groups
            .into_iter()
            .map(|group| ShardOp::Prepare {
                txn: self.txn,
                home_slot: self.home_slot,
                segments: group.segments,
                seats,
                deadline_ms,
                participant_slots: self.all_slots(),
                booking: booking.take(),
                claim: claim.clone().filter(|_| claim_at == Some(group.link)),
            })
            .collect()
    }

    /// Returns every participant slot, home's first.
    fn all_slots(&self) -> Vec<u16> {
        self.slots.iter().flatten().copied().collect()
    }

    /// Queues `op` for participant `index` now.
    fn send(
        &self,
        index: usize,
        op: &ShardOp,
    ) -> impl std::future::Future<Output = Result<ShardReply, LinkError>> + Send + 'static {
        self.cluster.link(self.links[index]).send(op)
    }

    /// Decides from the prepare answers, tells the home shard, and returns
    /// the client's result.
    async fn conclude(
        self,
        answers: Vec<Result<ShardReply, LinkError>>,
    ) -> Result<Booking, Failure> {
        let votes = self.count(answers);
        if let Some(booking) = votes.existing {
            // A retry of a finished booking: the new prepares are released
            // before the client hears back, so a retry takes no seats.
            if self.abort().await {
                self.release_participants().await;
            }
            return Ok(booking);
        }
        if votes.prepared == self.participants.len() {
            failpoint::hit(AFTER_PREPARE_ALL);
            return self.commit().await.map_err(Failure::from);
        }
        // Without a pending record at home the transaction cannot commit:
        // prepared participants are released at once, and those the router
        // cannot reach ask the real home at their deadline and hear abort.
        let acknowledged = votes.home_refused || self.abort().await;
        if acknowledged {
            self.release_participants().await;
        }
        let moved = Refusal::worst(votes.moved.iter().copied());
        let error = self.failure(votes, acknowledged);
        let refusal = moved.filter(|_| matches!(error, Error::MapChanged { .. }));
        Err(Failure { error, refusal })
    }

    /// Tells every participant but the home shard to release its prepared
    /// seats, once the home shard has recorded the abort, and waits for
    /// their answers. The home shard sends the same release from its outbox
    /// too, and a second release changes nothing; sending it here as well
    /// means a client that gets `sold_out` (or its earlier booking, on a
    /// retry) sees every seat of the failed attempt already free.
    async fn release_participants(&self) {
        let answers = (1..self.links.len()).map(|index| {
            let release = ShardOp::Finish {
                txn: self.txn,
                commit: false,
                slots: self.slots[index].clone(),
            };
            self.send(index, &release)
        });
        for answer in join_all(answers).await {
            if let Err(error) = answer {
                tracing::debug!(txn = self.txn, %error, "release left to the home shard");
            }
        }
    }

    fn count(&self, answers: Vec<Result<ShardReply, LinkError>>) -> Votes {
        let mut votes = Votes::default();
        for (index, answer) in answers.into_iter().enumerate() {
            let link = self.cluster.link(self.links[index]);
            match answer {
                Ok(ShardReply::Prepared) => votes.prepared += 1,
                Ok(ShardReply::Booking { booking }) if index == 0 => {
                    votes.existing = Some(booking);
                }
                Ok(other) => {
                    let error = unexpected_reply(link.shard(), "prepared", reply_type(&other));
                    votes.internal.get_or_insert(error);
                }
                Err(LinkError::Lost { shard }) => {
                    votes.lost.get_or_insert(shard);
                }
                Err(error @ LinkError::Unavailable { .. }) => {
                    let error = client_error(link, error, true);
                    votes.unavailable.get_or_insert(error);
                }
                Err(error @ LinkError::Remote(_)) => {
                    votes.moved.extend(Refusal::of_error(&error));
                    self.count_refusal(index, link, error, &mut votes);
                }
            }
        }
        votes
    }

    /// Records a participant's rejection in `votes`.
    fn count_refusal(&self, index: usize, link: &ShardLink, error: LinkError, votes: &mut Votes) {
        match error {
            LinkError::Remote(ShardError::NotOwner { .. } | ShardError::SlotMoving { .. })
                if index == 0 =>
            {
                votes.home_refused = true;
                votes.refusals.push(Error::MapChanged {
                    slot: self.home_slot,
                    shard: link.shard(),
                });
            }
            error => match client_error(link, error, true) {
                error @ Error::Internal { .. } => {
                    votes.internal.get_or_insert(error);
                }
                error => votes.refusals.push(error),
            },
        }
    }

    /// Picks the client's error after an abort. A refusal is certain and
    /// wins. A lost prepare is `outcome_unknown` unless the home shard
    /// acknowledged the abort, because the home shard may have answered
    /// with a booking the router never saw.
    fn failure(&self, votes: Votes, acknowledged: bool) -> Error {
        if let Some(refusal) = first_in_request_order(&self.segments, votes.refusals) {
            return refusal;
        }
        if let Some(shard) = votes.lost {
            if !acknowledged {
                return Error::OutcomeUnknown { shard };
            }
        }
        if let Some(error) = votes.internal {
            return error;
        }
        if let Some(error) = votes.unavailable {
            return error;
        }
        match votes.lost {
            Some(shard) => {
                let index = self.participants.iter().position(|&p| p == shard);
                let link = self.cluster.link(self.links[index.unwrap_or(0)]);
                Error::ShardUnavailable {
                    shard,
                    retry_after_ms: link.retry_after_ms(),
                }
            }
            None => Error::internal("a booking failed without a recorded cause; this is a bug"),
        }
    }

    fn decide(&self, commit: bool) -> ShardOp {
        ShardOp::Decide {
            txn: self.txn,
            home_slot: self.home_slot,
            commit,
            participant_slots: self.all_slots(),
        }
    }

    /// Sends the commit decision to the home shard and returns its booking.
    ///
    /// The decision goes to the owner of the home slot. It is sent again
    /// while that shard rejects it because it does not own or is moving the
    /// slot, because a move carries the pending transaction to the new
    /// owner. A commit
    /// that fails is never followed by a new attempt at the booking, since
    /// the prepared seats stay taken until the participants' deadline.
    async fn commit(&self) -> Result<Booking, Error> {
        let decided = send_to_owner(&self.cluster, self.home_slot, self.decide(true));
        let (home, answer) = decided.await;
        let home = &home;
        match answer {
            Ok(ShardReply::Booking { booking }) => {
                tracing::debug!(txn = self.txn, booking = %booking.id, "two-phase booking committed");
                failpoint::hit(AFTER_DECIDE);
                Ok(booking)
            }
            Ok(other) => Err(unexpected_reply(
                home.shard(),
                "booking",
                reply_type(&other),
            )),
            Err(LinkError::Remote(ShardError::Client {
                error: Error::Internal { message },
            })) => {
                // The home shard rejects a commit when it aborted the
                // transaction first (its deadline passed, or a retry with
                // the same request id replaced it) or failed to record it.
                // Another attempt may have booked under the request id, so
                // only a retry can tell the client what it has.
                tracing::warn!(txn = self.txn, shard.id = home.shard(), error = %message, "commit decision rejected");
                Err(Error::OutcomeUnknown {
                    shard: home.shard(),
                })
            }
            Err(error) => {
                tracing::warn!(txn = self.txn, shard.id = home.shard(), %error, "commit decision failed");
                Err(client_error(home, error, true))
            }
        }
    }

    /// Sends the abort decision to the owner of the home slot, as
    /// [`Transaction::commit`] sends a commit. Returns whether that shard
    /// acknowledged the abort.
    async fn abort(&self) -> bool {
        let decided = send_to_owner(&self.cluster, self.home_slot, self.decide(false));
        let (home, answer) = decided.await;
        match answer {
            Ok(ShardReply::Ack) => {
                tracing::debug!(txn = self.txn, "two-phase booking aborted");
                true
            }
            Ok(other) => {
                let got = reply_type(&other);
                tracing::error!(
                    txn = self.txn,
                    shard.id = home.shard(),
                    got,
                    "unexpected answer to an abort decision"
                );
                false
            }
            Err(error) => {
                // The home shard aborts on its own at the prepare deadline.
                tracing::warn!(txn = self.txn, shard.id = home.shard(), %error, "abort decision failed");
                false
            }
        }
    }
}
