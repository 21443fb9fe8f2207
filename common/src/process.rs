//! Start-up and shutdown shared by the router and shard processes.

/// Installs a `tracing` subscriber that writes to stderr, filtered by
/// `RUST_LOG` (default `info`), with colours only on a terminal. A
/// subscriber installed earlier in this process (a test harness, or a
/// binary that runs the router and a shard together) is kept.
pub fn install_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Completes on SIGTERM or Ctrl-C. `process` names the program in the
/// warnings logged when a signal cannot be listened for.
pub async fn shutdown_signal(process: &str) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the {process}");
            }
        }
    }
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::error!(%error, "cannot listen for Ctrl-C; the {process} runs until killed");
        std::future::pending::<()>().await;
    }
}
