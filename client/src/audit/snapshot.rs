//! Reading every shard's audit dump.

use std::time::Duration;

use rustc_hash::FxHashSet;
use trecho_common::internal::{AuditReport, ReservationState, ShardOp, ShardReply, TxnId};
use trecho_common::link::{LinkOptions, ShardLink};
use trecho_common::shardmap::{ShardInfo, ShardMap};

use super::Error;
use crate::client::Client;

/// Time allowed for a shard to accept the audit's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for one shard's dump, which lists every booking it holds.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The shard map and a link to every shard.
pub(crate) struct Cluster {
    map: ShardMap,
    links: Vec<ShardLink>,
}

/// Every shard's dump, read at about the same time.
pub(crate) struct Snapshot {
    pub(crate) map: ShardMap,
    pub(crate) reports: Vec<AuditReport>,
}

/// Something still waiting for the outcome of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Unsettled {
    /// A participant's reservation is prepared.
    Prepared {
        /// The participant.
        shard: u32,
        /// The transaction.
        txn: TxnId,
    },
    /// The home shard has not decided.
    Pending {
        /// The home shard.
        shard: u32,
        /// The transaction.
        txn: TxnId,
    },
    /// The home shard has not heard that a participant applied the outcome.
    Unacknowledged {
        /// The home shard.
        home: u32,
        /// The transaction.
        txn: TxnId,
        /// The participant.
        participant: u32,
    },
}

impl Cluster {
    /// Reads the shard map from the router and connects to every shard.
    pub(crate) async fn connect(router: &str) -> Result<Cluster, Error> {
        let status = Client::connect(router).await?.status().await?;
        let shards = status.shards.into_iter().map(|shard| ShardInfo {
            id: shard.id,
            address: shard.address,
            slots: shard.slots,
        });
        let map = ShardMap::new(status.map_version, shards.collect())?;
        let options = LinkOptions {
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: AUDIT_TIMEOUT,
            ..LinkOptions::default()
        };
        // A shard without slots has nothing to check: everything it had
        // moved with its slots, and it may already be stopped.
        let links: Vec<ShardLink> = map
            .shards
            .iter()
            .filter(|shard| !shard.slots.is_empty())
            .map(|shard| ShardLink::spawn(shard.id, shard.address.clone(), options.clone()))
            .collect();
        for link in &links {
            wait_connected(link).await?;
        }
        Ok(Cluster { map, links })
    }

    /// Fetches every shard's dump at once.
    pub(crate) async fn snapshot(&self) -> Result<Snapshot, Error> {
        let reads = self.links.iter().map(fetch_report);
        let reports = futures::future::try_join_all(reads).await?;
        Ok(Snapshot {
            map: self.map.clone(),
            reports,
        })
    }
}

/// Waits until `link` is connected, because a link refuses calls until its
/// first connection succeeds.
async fn wait_connected(link: &ShardLink) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    while !link.is_healthy() {
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::ShardUnreachable {
                shard: link.shard(),
                address: link.address().to_owned(),
                timeout: CONNECT_TIMEOUT,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn fetch_report(link: &ShardLink) -> Result<AuditReport, Error> {
    let reply = link.call(&ShardOp::Audit).await;
    match reply {
        Ok(ShardReply::Audit(report)) => Ok(report),
        Ok(other) => Err(Error::UnexpectedReply {
            shard: link.shard(),
            reply: format!("{other:?}"),
        }),
        Err(error) => Err(Error::Shard {
            shard: link.shard(),
            address: link.address().to_owned(),
            error,
        }),
    }
}

impl Snapshot {
    /// Returns everything that waits for a transaction's outcome.
    pub(crate) fn unsettled(&self) -> FxHashSet<Unsettled> {
        let mut items = FxHashSet::default();
        for report in &self.reports {
            let shard = report.shard_id;
            for reservation in &report.reservations {
                if reservation.state == ReservationState::Prepared {
                    let txn = reservation.txn;
                    items.insert(Unsettled::Prepared { shard, txn });
                }
            }
            for &txn in &report.pending {
                items.insert(Unsettled::Pending { shard, txn });
            }
            for &(txn, slot) in &report.unacknowledged {
                items.insert(Unsettled::Unacknowledged {
                    home: shard,
                    txn,
                    participant: self.map.owner_of_slot(slot).id,
                });
            }
        }
        items
    }
}
