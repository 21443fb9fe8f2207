//! Requests to a trecho router, and the seat totals read from every shard.

use std::time::Duration;

use anyhow::Context;
use trecho_client::audit::{self, ExpectedBooking};
use trecho_client::{
    BookParams, Client, ClientError, ClientOptions, Passenger, RoutesParams, SearchParams,
};
use trecho_common::internal::{ShardOp, ShardReply};
use trecho_common::link::{LinkOptions, ShardLink};
use trecho_common::types::BookingStatus;

/// Time allowed for one shard's audit dump, which lists every booking.
const DUMP_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to the router with `timeout` for each response.
pub(crate) async fn connect(address: &str, timeout: Duration) -> anyhow::Result<Client> {
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Some(timeout),
    };
    Client::connect_with(address, options)
        .await
        .context("the bench could not connect")
}

/// Books `seats` on `segments`, confirmed, and returns the locator.
pub(crate) async fn book(
    client: &Client,
    segments: Vec<String>,
    seats: u32,
    document: &str,
) -> Result<String, String> {
    let params = BookParams {
        passenger: Passenger {
            name: "Bench Passenger".to_owned(),
            document: document.to_owned(),
        },
        segments,
        seats: Some(seats),
        request_id: None,
        hold_seconds: None,
    };
    client
        .create(params)
        .await
        .map(|booking| booking.id)
        .map_err(|error| error_kind(&error))
}

/// Sends `segments.search`.
pub(crate) async fn search(client: &Client, params: SearchParams) -> Result<(), String> {
    client
        .search(params)
        .await
        .map(drop)
        .map_err(|e| error_kind(&e))
}

/// Sends `routes.find`.
pub(crate) async fn routes(client: &Client, params: RoutesParams) -> Result<(), String> {
    client
        .routes(params)
        .await
        .map(drop)
        .map_err(|e| error_kind(&e))
}

/// Sends `bookings.get`.
pub(crate) async fn get(client: &Client, locator: &str, document: &str) -> Result<(), String> {
    client
        .booking(locator, document)
        .await
        .map(drop)
        .map_err(|e| error_kind(&e))
}

/// Names a failure: the error's `data.kind`, or what went wrong on the
/// connection.
fn error_kind(error: &ClientError) -> String {
    if let Some(kind) = error.kind() {
        return kind.to_owned();
    }
    match error {
        ClientError::Connect { .. } => "connect".to_owned(),
        ClientError::Io { .. } => "io".to_owned(),
        ClientError::ConnectionLost { .. } => "connection_lost".to_owned(),
        ClientError::Timeout { .. } => "timeout".to_owned(),
        ClientError::Rpc(rpc) => format!("rpc_{}", rpc.code),
        ClientError::Protocol { .. } => "protocol".to_owned(),
    }
}

/// Returns the seats taken over every segment and the number of booking
/// records, summed over every shard's audit dump.
pub(crate) async fn totals(router: &str) -> anyhow::Result<(u64, u64)> {
    let status = Client::connect(router)
        .await?
        .status()
        .await
        .with_context(|| format!("cannot read the shard map from the router at {router}"))?;
    let options = LinkOptions {
        request_timeout: DUMP_TIMEOUT,
        ..LinkOptions::default()
    };
    let mut taken = 0u64;
    let mut bookings = 0u64;
    for shard in status.shards {
        let link = ShardLink::spawn(shard.id, shard.address.clone(), options.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !link.is_healthy() {
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "shard {} at {} did not accept a connection within 5 s; start it, or \
                     run the bench with --no-check",
                    shard.id,
                    shard.address
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let report = match link.call(&ShardOp::Audit).await {
            Ok(ShardReply::Audit(report)) => report,
            other => anyhow::bail!("shard {} failed the audit request: {other:?}", shard.id),
        };
        taken += report
            .segments
            .iter()
            .map(|s| u64::from(s.taken))
            .sum::<u64>();
        bookings += report.bookings.len() as u64;
    }
    Ok((taken, bookings))
}

/// Runs the cluster's invariant audit, expecting every locator in
/// `confirmed` to be confirmed, and returns each violation as text.
pub(crate) async fn audit(router: &str, confirmed: Vec<String>) -> anyhow::Result<Vec<String>> {
    let expected = confirmed
        .into_iter()
        .map(|locator| ExpectedBooking {
            locator,
            status: BookingStatus::Confirmed,
        })
        .collect();
    let options = audit::Options {
        expected,
        ..audit::Options::default()
    };
    let report = audit::check(router, &options)
        .await
        .context("the audit could not read the cluster")?;
    Ok(report.violations.iter().map(ToString::to_string).collect())
}
