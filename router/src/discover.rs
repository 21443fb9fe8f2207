//! Discovery of the shard map from the shards, for a router started with
//! `seeds` instead of a map, and single requests to shards the router has
//! no link to.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use trecho_common::internal::{
    InternalRequest, InternalResponse, InternalResult, ShardOp, ShardReply,
};
use trecho_common::protocol::framing::{Frame, LineReader};
use trecho_common::shardmap::ShardMap;

/// Time allowed to connect to a seed and read its response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait between rounds when no seed returned a map.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// Maximum response line: a map lists every shard and its slot ranges.
const MAX_RESPONSE_LINE: usize = 1 << 20;

/// Requests the shard map of every seed until at least one returns it,
/// and returns the map with the highest version. Shards that start after the
/// router are waited for, so the order in which containers start does not
/// matter.
pub(crate) async fn shard_map(seeds: &[String]) -> ShardMap {
    let mut rounds: u64 = 0;
    loop {
        let answers = futures::future::join_all(seeds.iter().map(|seed| request_map(seed))).await;
        let mut newest: Option<ShardMap> = None;
        for (seed, answer) in seeds.iter().zip(answers) {
            match answer {
                Ok(map) => {
                    tracing::debug!(seed, map_version = map.version, "seed gave its shard map");
                    if newest.as_ref().is_none_or(|n| map.version > n.version) {
                        newest = Some(map);
                    }
                }
                Err(error) if rounds == 0 || rounds.is_power_of_two() => {
                    tracing::warn!(
                        seed,
                        %error,
                        "seed did not return a shard map; retrying, start the shards or check \
                         that the seed is a shard's internal HOST:PORT"
                    );
                }
                Err(_) => {}
            }
        }
        if let Some(map) = newest {
            return map;
        }
        rounds += 1;
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// Requests the map of one shard.
async fn request_map(seed: &str) -> Result<ShardMap, String> {
    match ask_once(seed, &ShardOp::ClusterMap, REQUEST_TIMEOUT).await? {
        ShardReply::ClusterMap { map } => {
            ShardMap::new(map.version, map.shards).map_err(|error| error.to_string())
        }
        _ => Err("the shard answered with something else".to_owned()),
    }
}

/// Sends `op` to the shard at `address` over a connection of its own and
/// returns the answer, all within `limit`. For shards the router has no
/// link to yet.
///
/// # Errors
///
/// Returns a message saying what failed: the connection, the exchange,
/// an answer that is not the internal protocol, or the shard's refusal.
pub(crate) async fn ask_once(
    address: &str,
    op: &ShardOp,
    limit: Duration,
) -> Result<ShardReply, String> {
    let request = InternalRequest {
        id: 1,
        map_version: 0,
        op: op.clone(),
    };
    let mut line = serde_json::to_vec(&request)
        .map_err(|error| format!("cannot encode the request: {error}"))?;
    line.push(b'\n');
    let exchange = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|error| format!("cannot connect: {error}"))?;
        stream
            .write_all(&line)
            .await
            .map_err(|error| format!("cannot send: {error}"))?;
        let mut lines = LineReader::new(stream, MAX_RESPONSE_LINE);
        let line = match lines.next_frame().await {
            Ok(Some(Frame::Line(line))) => line.to_vec(),
            Ok(Some(Frame::TooLong)) => return Err("the answer is too long".to_owned()),
            Ok(None) => return Err("the shard closed the connection".to_owned()),
            Err(error) => return Err(format!("cannot read: {error}")),
        };
        let response: InternalResponse = serde_json::from_slice(&line).map_err(|_| {
            "the response is not in the shards' internal protocol; is this a router's \
             address rather than a shard's?"
                .to_owned()
        })?;
        match response.result {
            InternalResult::Ok(reply) => Ok(reply),
            InternalResult::Err(error) => Err(error.to_string()),
        }
    };
    timeout(limit, exchange)
        .await
        .map_err(|_| format!("no answer within {} ms", limit.as_millis()))?
}
