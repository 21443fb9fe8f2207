//! What every request handler shares: the shard map, one link per shard, the
//! schedule and its route index.
//!
//! The shards own the map. The router routes with the map it has, and
//! refreshes it from the shards when one of them rejects a request for a
//! slot it does not own (see [`Cluster::refresh`]). Lookups read one
//! atomic per slot, so requests take no lock.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use trecho_common::error::Error;
use trecho_common::hashing::{slot, SLOT_COUNT};
use trecho_common::internal::{ShardOp, ShardReply};
use trecho_common::link::{LinkOptions, ShardLink};
use trecho_common::protocol::methods::{AirportView, AirportsResult};
use trecho_common::schedule::Schedule;
use trecho_common::shardmap::ShardMap;

use crate::config::RouterConfig;
use crate::routes::RouteIndex;

/// The router's view of the cluster, shared by handlers through an `Arc`.
pub(crate) struct Cluster {
    /// The map in use, for `cluster.status`; requests route by
    /// `slot_owner`.
    map: Mutex<ShardMap>,
    /// Version of `map`, shared with the links, which write it into every
    /// request.
    map_version: Arc<AtomicU64>,
    /// One link per shard of the map the router started with.
    links: Vec<ShardLink>,
    /// Index into `links` of the owner of every slot.
    slot_owner: Vec<AtomicU16>,
    /// Held by the refresh in progress, so that many refusals at once
    /// cause one refresh.
    refreshing: tokio::sync::Mutex<()>,
    schedule: Schedule,
    routes: RouteIndex,
    /// The `airports.list` result, encoded once.
    airports: Arc<RawValue>,
    prepare_timeout_ms: u64,
    /// One permit per request that asks every shard, across all clients.
    /// Their answers can be large (a search of up to 1,000 segments from
    /// each shard), so this bounds the memory they take.
    fanouts: Arc<Semaphore>,
}

impl Cluster {
    /// Starts a link to every shard of `map`. Must be called inside a Tokio
    /// runtime.
    pub(crate) fn start(map: ShardMap, schedule: Schedule, config: &RouterConfig) -> Self {
        let map_version = Arc::new(AtomicU64::new(map.version));
        let options = LinkOptions {
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            map_version: map_version.clone(),
            ..LinkOptions::default()
        };
        let links: Vec<ShardLink> = map
            .shards
            .iter()
            .map(|shard| ShardLink::spawn(shard.id, shard.address.clone(), options.clone()))
            .collect();
        let slot_owner = (0..SLOT_COUNT).map(|_| AtomicU16::new(0)).collect();
        let cluster = Cluster {
            links,
            slot_owner,
            refreshing: tokio::sync::Mutex::new(()),
            map_version,
            routes: RouteIndex::new(&schedule),
            airports: encode_airports(&schedule),
            schedule,
            map: Mutex::new(map.clone()),
            prepare_timeout_ms: config.prepare_timeout_ms,
            fanouts: Arc::new(Semaphore::new(config.max_fanouts)),
        };
        // Every shard of the map has a link, so the map applies in full.
        let _ = cluster.route_by(&map);
        cluster
    }

    /// Points every slot at its owner under `map`. Returns false, changing
    /// nothing, when `map` names a shard this router has no link to.
    fn route_by(&self, map: &ShardMap) -> bool {
        let mut owners = Vec::with_capacity(usize::from(SLOT_COUNT));
        for slot in 0..SLOT_COUNT {
            let owner = map.owner_of_slot(slot);
            let Some(index) = self.links.iter().position(|l| l.shard() == owner.id) else {
                tracing::error!(
                    shard.id = owner.id,
                    shard.address = %owner.address,
                    map_version = map.version,
                    "shards' map names a shard the router has no link to; keeping the old map, \
                     restart the router with --seeds to reach every shard"
                );
                return false;
            };
            owners.push(index as u16);
        }
        for (slot, owner) in self.slot_owner.iter().zip(owners) {
            slot.store(owner, Ordering::Relaxed);
        }
        self.map_version.store(map.version, Ordering::Relaxed);
        if let Ok(mut current) = self.map.lock() {
            *current = map.clone();
        }
        true
    }

    /// Requests the map of every shard and routes by the newest one when it
    /// differs from the map in use, even when its version is lower, because
    /// a map that no shard uses is wrong. Callers that find a slot owned
    /// elsewhere call this before they retry. While one refresh runs, the
    /// others wait for it and then return without a request of their own.
    pub(crate) async fn refresh(&self) {
        let seen = self.map_version();
        let _guard = self.refreshing.lock().await;
        if self.map_version() != seen {
            return;
        }
        let calls = self
            .links
            .iter()
            .map(|link| link.call(&ShardOp::ClusterMap));
        let newest = futures::future::join_all(calls)
            .await
            .into_iter()
            .filter_map(|answer| match answer {
                Ok(ShardReply::ClusterMap { map }) => Some(map),
                _ => None,
            })
            .max_by_key(|map| map.version);
        let Some(newest) = newest else {
            tracing::warn!("no shard returned its shard map; keeping the map in use");
            return;
        };
        if newest.version == seen && newest.shards == self.map().shards {
            return;
        }
        if newest.version <= seen {
            // The shards own the map, so a router map that no shard uses is
            // wrong however high its version. Route by the shards' map.
            tracing::error!(
                router.map_version = seen,
                shards.map_version = newest.version,
                "router's shard map differs from every shard's; using the shards' map, start \
                 routers with --seeds to take it from the shards"
            );
        }
        let newest = match ShardMap::new(newest.version, newest.shards) {
            Ok(map) => map,
            Err(error) => {
                tracing::warn!(%error, "a shard returned an invalid shard map; keeping the map in use");
                return;
            }
        };
        if self.route_by(&newest) {
            tracing::info!(
                from = seen,
                to = newest.version,
                "shard map refreshed from the shards"
            );
        }
    }

    /// Returns the version of the map in use.
    pub(crate) fn map_version(&self) -> u64 {
        self.map_version.load(Ordering::Relaxed)
    }

    /// Takes a permit for a request that asks every shard, or returns
    /// `overloaded` when `max_fanouts` of them are in progress.
    pub(crate) fn fanout_permit(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.fanouts
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded {
                message: "the router's limit of searches and listings in progress across all \
                      clients (max_fanouts) is reached; retry in a moment"
                    .to_owned(),
            })
    }

    /// Returns a copy of the map in use.
    pub(crate) fn map(&self) -> ShardMap {
        match self.map.lock() {
            Ok(map) => map.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Returns every link, in the order of the map's shards.
    pub(crate) fn links(&self) -> &[ShardLink] {
        &self.links
    }

    /// Returns the link at `index` of [`Cluster::links`].
    pub(crate) fn link(&self, index: usize) -> &ShardLink {
        &self.links[index]
    }

    /// Returns the index of the link to the shard that owns `slot`.
    pub(crate) fn owner_of_slot(&self, slot: u16) -> usize {
        usize::from(self.slot_owner[usize::from(slot % SLOT_COUNT)].load(Ordering::Relaxed))
    }

    /// Returns the index of the link to the shard that owns segment `id`.
    pub(crate) fn owner_of_segment(&self, id: &str) -> usize {
        self.owner_of_slot(slot(id))
    }

    pub(crate) fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub(crate) fn routes(&self) -> &RouteIndex {
        &self.routes
    }

    /// Returns the encoded `airports.list` result.
    pub(crate) fn airports(&self) -> Arc<RawValue> {
        self.airports.clone()
    }

    /// Returns how long participants keep prepared seats, in milliseconds.
    pub(crate) fn prepare_timeout_ms(&self) -> u64 {
        self.prepare_timeout_ms
    }
}

/// Encodes every airport of the schedule, by code.
fn encode_airports(schedule: &Schedule) -> Arc<RawValue> {
    let mut airports: Vec<AirportView> = schedule
        .airports
        .iter()
        .map(|a| AirportView {
            code: a.code.clone(),
            name: a.name.clone(),
            city: a.city.clone(),
        })
        .collect();
    airports.sort_by(|a, b| a.code.cmp(&b.code));
    let result = AirportsResult { airports };
    let text = serde_json::to_string(&result).expect("strings and vectors always encode as JSON");
    Arc::from(RawValue::from_string(text).expect("serde_json output is valid JSON"))
}
