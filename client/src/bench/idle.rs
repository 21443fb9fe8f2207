//! Idle connections, and the server memory they take.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use tokio::net::TcpStream;

/// Connections opened at once.
const OPEN_CONCURRENCY: usize = 64;
/// Time the server gets to accept the last connections before its memory
/// is read.
const SETTLE_TIME: Duration = Duration::from_millis(500);

/// The server memory that idle connections take.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IdleCost {
    pub(crate) connections: u32,
    /// Resident memory of the server process, in KiB, before and after the
    /// idle connections opened; `None` without `--server-pid`.
    pub(crate) server_rss_before_kib: Option<u64>,
    pub(crate) server_rss_after_kib: Option<u64>,
}

impl IdleCost {
    /// Returns the server's extra resident memory per idle connection, in
    /// KiB.
    pub(crate) fn per_connection_kib(&self) -> Option<f64> {
        let before = self.server_rss_before_kib?;
        let after = self.server_rss_after_kib?;
        let added = after.saturating_sub(before) as f64;
        Some(added / f64::from(self.connections.max(1)))
    }
}

/// Opens `count` connections to `address` that send nothing, and reads the
/// memory of process `server_pid` before and after. The caller keeps the
/// returned streams open for as long as they should count.
pub(crate) async fn open(
    address: &str,
    count: u32,
    server_pid: Option<u32>,
) -> anyhow::Result<(Vec<TcpStream>, IdleCost)> {
    let before = server_pid.map(resident_kib).transpose()?;
    let opens = (0..count).map(|_| TcpStream::connect(address));
    let streams: Vec<TcpStream> = futures::stream::iter(opens)
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect::<Vec<std::io::Result<TcpStream>>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "opening {count} idle connections to {address} failed; raise the open file \
                 limit (ulimit -n) of the bench and the server, or lower --idle"
            )
        })?;
    tokio::time::sleep(SETTLE_TIME).await;
    let after = server_pid.map(resident_kib).transpose()?;
    let cost = IdleCost {
        connections: count,
        server_rss_before_kib: before,
        server_rss_after_kib: after,
    };
    Ok((streams, cost))
}

/// Reads `VmRSS` of process `pid` from `/proc`, in KiB.
fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path}; give the PID of a running server"))?;
    parse_rss(&status).with_context(|| format!("{path} has no VmRSS line"))
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rss_reads_kib() {
        let status = "Name:\ttrecho\nVmPeak:\t  9000 kB\nVmRSS:\t  123456 kB\nThreads:\t3\n";
        assert_eq!(parse_rss(status), Some(123_456));
        assert_eq!(parse_rss("Name:\ttrecho\n"), None);
    }

    #[test]
    fn cost_per_connection_divides_growth() {
        let cost = IdleCost {
            connections: 1000,
            server_rss_before_kib: Some(10_000),
            server_rss_after_kib: Some(30_000),
        };
        assert_eq!(cost.per_connection_kib(), Some(20.0));
        let unknown = IdleCost {
            server_rss_after_kib: None,
            ..cost
        };
        assert_eq!(unknown.per_connection_kib(), None);
    }
}
