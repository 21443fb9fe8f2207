//! What every request handler shares: the shard map, one link per shard, the
//! schedule and its route index.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use trecho_common::error::Error;
use trecho_common::hashing::{slot, SLOT_COUNT};
use trecho_common::link::{LinkOptions, ShardLink};
use trecho_common::protocol::methods::{AirportView, AirportsResult};
use trecho_common::schedule::Schedule;
use trecho_common::shardmap::ShardMap;

use crate::config::RouterConfig;
use crate::routes::RouteIndex;

/// The cluster as the router sees it. Immutable after start, so handlers
/// share it through an `Arc` without locks.
pub(crate) struct Cluster {
    map: ShardMap,
    /// One link per shard, in the order of `map.shards`.
    links: Vec<ShardLink>,
    /// Index into `links` of the owner of every slot.
    slot_owner: Vec<u16>,
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
        let options = LinkOptions {
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            ..LinkOptions::default()
        };
        let links = map
            .shards
            .iter()
            .map(|shard| ShardLink::spawn(shard.id, shard.address.clone(), options.clone()))
            .collect();
        let slot_owner = (0..SLOT_COUNT)
            .map(|slot| {
                let owner = map.owner_of_slot(slot).id;
                let index = map.shards.iter().position(|s| s.id == owner);
                // The map was validated, so every owner id is in the list.
                index.unwrap_or(0) as u16
            })
            .collect();
        Cluster {
            links,
            slot_owner,
            routes: RouteIndex::new(&schedule),
            airports: encode_airports(&schedule),
            schedule,
            map,
            prepare_timeout_ms: config.prepare_timeout_ms,
            fanouts: Arc::new(Semaphore::new(config.max_fanouts)),
        }
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

    /// Returns the shard map.
    pub(crate) fn map(&self) -> &ShardMap {
        &self.map
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
        usize::from(self.slot_owner[usize::from(slot % SLOT_COUNT)])
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
