//! `admin.add_shard`: adds a running shard that owns no slots to the
//! router's map, so that slots can move to it.
//!
//! The other shards learn of the new shard when slots move to it, and
//! until then only this router's map lists it. Other routers need their own
//! `admin.add_shard`.

use trecho_common::error::Error;
use trecho_common::internal::{ShardOp, ShardReply};
use trecho_common::protocol::methods::AddShardResult;

use super::Admin;
use crate::cluster::Cluster;
use crate::config::is_host_port;
use crate::discover::ask_once;
use crate::shard_error::reply_type;

/// Adds the shard at `address` and returns its id and slots. A shard
/// already in the map at that address is returned unchanged.
///
/// # Errors
///
/// Returns `invalid_params` when `address` is not `HOST:PORT`, no shard
/// responds there, or the shard there cannot join because its id is taken
/// or it owns slots.
pub(super) async fn run(cluster: &Cluster, address: String) -> Result<AddShardResult, Error> {
    if !is_host_port(&address) {
        return Err(Error::invalid_params(format!(
            "address {address:?} is not HOST:PORT; give the new shard's internal address, such \
             as shard-3:7001 or 127.0.0.1:7004"
        )));
    }
    cluster.refresh().await;
    let map = cluster.map();
    if let Some(known) = map.shards.iter().find(|s| s.address == address) {
        tracing::info!(
            shard.id = known.id,
            address,
            "admin.add_shard: shard already in the map"
        );
        return Ok(AddShardResult {
            id: known.id,
            slots: known.slots.clone(),
        });
    }
    let id = probe(cluster.admin(), &address).await?;
    if let Ok(known) = map.shard(id) {
        return Err(Error::invalid_params(format!(
            "the shard at {address} has id {id}, and shard {id} is in the map already at {}; \
             give the new shard an id no other shard has",
            known.address
        )));
    }
    cluster.add_empty_shard(id, &address).await?;
    tracing::info!(
        shard.id = id,
        address,
        "shard added to the router's map with no slots"
    );
    Ok(AddShardResult {
        id,
        slots: Vec::new(),
    })
}

/// Requests the status of the process at `address` and returns its shard
/// id.
///
/// # Errors
///
/// Returns `invalid_params` when nothing responds, the reply is not a
/// shard's status, or the shard owns slots.
async fn probe(admin: &Admin, address: &str) -> Result<u32, Error> {
    let status = match ask_once(address, &ShardOp::Status, admin.request_timeout).await {
        Ok(ShardReply::Status(status)) => status,
        Ok(other) => {
            return Err(Error::invalid_params(format!(
                "the process at {address} replied to a status request with {}; give the new \
                 shard's internal HOST:PORT",
                reply_type(&other)
            )));
        }
        Err(reason) => {
            tracing::warn!(address, error = %reason, "admin.add_shard: no shard responded");
            return Err(Error::invalid_params(format!(
                "no shard responded at {address} ({reason}); start the new shard there with no \
                 slots, then send admin.add_shard again"
            )));
        }
    };
    if !status.slots.is_empty() {
        let ranges: Vec<String> = status
            .slots
            .iter()
            .map(|[first, last]| format!("{first}-{last}"))
            .collect();
        return Err(Error::invalid_params(format!(
            "the shard at {address} (id {}) owns slots {}, which the map gives to other \
             shards; a shard joins with no slots and gets them with admin.move_slots",
            status.shard_id,
            ranges.join(",")
        )));
    }
    Ok(status.shard_id)
}
