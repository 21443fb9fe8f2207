//! `trecho health`: a liveness probe for container health checks.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use trecho_client::{Client, ClientOptions};
use trecho_common::internal::{InternalResponse, InternalResult, ShardReply};

use super::args::HealthArgs;

/// Pings the router, or a shard with `--internal`, and fails unless a pong
/// arrives within the timeout.
pub(crate) async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let limit = Duration::from_millis(args.timeout_ms);
    let address = args.address.as_deref().unwrap_or(&args.router);
    let probe = async {
        if args.internal {
            ping_shard(address).await
        } else {
            ping_router(address, limit).await
        }
    };
    tokio::time::timeout(limit, probe)
        .await
        .with_context(|| format!("{address} did not answer a ping within {limit:?}"))??;
    println!("{address} is healthy");
    Ok(())
}

async fn ping_router(address: &str, limit: Duration) -> anyhow::Result<()> {
    let options = ClientOptions {
        connect_timeout: limit,
        request_timeout: Some(limit),
    };
    let pong = Client::connect_with(address, options).await?.ping().await?;
    anyhow::ensure!(
        pong.pong,
        "the router at {address} returned pong false to a ping"
    );
    Ok(())
}

/// Sends one `ping` over the shards' internal protocol.
async fn ping_shard(address: &str) -> anyhow::Result<()> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to the shard at {address}"))?;
    let (read_half, mut write_half) = stream.into_split();
    write_half
        .write_all(b"{\"id\":1,\"op\":{\"type\":\"ping\"}}\n")
        .await
        .with_context(|| format!("cannot send a ping to the shard at {address}"))?;
    let mut line = String::new();
    BufReader::new(read_half)
        .read_line(&mut line)
        .await
        .with_context(|| format!("cannot read the ping answer of the shard at {address}"))?;
    let response: InternalResponse = serde_json::from_str(&line)
        .with_context(|| format!("the shard at {address} sent an unreadable answer {line:?}"))?;
    match response.result {
        InternalResult::Ok(ShardReply::Pong) => Ok(()),
        other => anyhow::bail!("the shard at {address} returned {other:?} to a ping"),
    }
}
