//! `trecho cluster`: a local cluster of shard and router child processes.
//!
//! The children run this same executable with the `shard` and `router`
//! subcommands, share one shard map with the slots split evenly, and listen
//! on loopback. A child that exits on its own is started again after a
//! short backoff, as a container's restart policy would. Ctrl-C, SIGTERM or
//! SIGHUP stops them all.

mod plan;
mod supervisor;

use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::time::Instant;
use trecho_client::{Client, ClientOptions};

use super::args::ClusterArgs;
use plan::Plan;
use supervisor::Supervisor;

/// Time a child gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts the cluster, waits until it is ready, and supervises it until a
/// stop signal.
pub(crate) async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let plan = Plan::new(&args)?;
    let mut signals = StopSignals::register()?;
    let executable = std::env::current_exe().context("cannot find the trecho executable")?;
    let supervisor = Supervisor::start(&executable, plan.children());
    let ready_timeout = Duration::from_secs(args.ready_timeout);
    tokio::select! {
        ready = wait_ready(&plan, ready_timeout, supervisor.failures()) => {
            if let Err(error) = ready {
                supervisor.stop(STOP_GRACE).await;
                return Err(error);
            }
        }
        signal = signals.recv() => {
            tracing::info!(signal, "stop requested before the cluster was ready");
            supervisor.stop(STOP_GRACE).await;
            return Ok(());
        }
    }
    print!("{}", plan.banner());
    let signal = signals.recv().await;
    tracing::info!(signal, "stopping the cluster");
    supervisor.stop(STOP_GRACE).await;
    Ok(())
}

/// Waits until the router's `cluster.status` shows every shard healthy.
/// Fails at once when a child exits with an error code meanwhile: a
/// refusal to start, which a restart would only repeat.
async fn wait_ready(
    plan: &Plan,
    limit: Duration,
    failures: watch::Receiver<Option<String>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut last_state = "the router did not accept connections".to_owned();
    while Instant::now() < deadline {
        if let Some(child) = failures.borrow().clone() {
            anyhow::bail!(
                "{child} exited with an error while the cluster was starting; its message is in \
                 the log above"
            );
        }
        match cluster_state(&plan.router).await {
            Ok(None) => {
                tracing::info!(router = %plan.router, "cluster ready");
                return Ok(());
            }
            Ok(Some(state)) | Err(state) => last_state = state,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!(
        "the cluster was not ready within {limit:?}: {last_state}; read the shard and router \
         logs above, or allow more time with --ready-timeout"
    )
}

/// Returns `None` when every shard is healthy, or what is still missing.
async fn cluster_state(router: &str) -> Result<Option<String>, String> {
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Some(Duration::from_secs(2)),
    };
    let client = Client::connect_with(router, options)
        .await
        .map_err(|_| "the router did not accept connections".to_owned())?;
    let status = client.status().await.map_err(|e| e.to_string())?;
    let unhealthy: Vec<String> = status
        .shards
        .iter()
        .filter(|shard| !shard.healthy)
        .map(|shard| shard.id.to_string())
        .collect();
    if unhealthy.is_empty() {
        Ok(None)
    } else {
        Ok(Some(format!(
            "the router cannot reach shards {}",
            unhealthy.join(", ")
        )))
    }
}

/// Listeners for the signals that stop the cluster, registered once so that
/// none is missed between two waits.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    fn register() -> anyhow::Result<Self> {
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot listen for {name}"))
        };
        Ok(StopSignals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT")?,
            terminate: listen(SignalKind::terminate(), "SIGTERM")?,
            hangup: listen(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// Waits for Ctrl-C, SIGTERM or SIGHUP and returns the signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}
