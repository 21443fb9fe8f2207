//! Runs child processes, streams their logs with a name prefix, restarts
//! those that exit, and stops them all on request.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::plan::ChildSpec;

/// First wait before a restart; it doubles after each quick exit.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Maximum wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A child that ran this long before it exited restarts after
/// [`MIN_BACKOFF`] again.
const STABLE_RUN: Duration = Duration::from_secs(30);

/// The running children, each watched by its own task.
pub(super) struct Supervisor {
    stop: watch::Sender<Option<Duration>>,
    tasks: Vec<JoinHandle<()>>,
    /// The latest child that exited with an error code rather than a
    /// signal: a refusal to start, such as a locked data directory.
    failures: watch::Receiver<Option<String>>,
}

impl Supervisor {
    /// Starts every child in `children` as `executable ARGS...`.
    pub(super) fn start(executable: &Path, children: Vec<ChildSpec>) -> Supervisor {
        let (stop, stopped) = watch::channel(None);
        let (failed, failures) = watch::channel(None);
        let executable: Arc<PathBuf> = Arc::new(executable.to_owned());
        let tasks = children
            .into_iter()
            .map(|spec| {
                let watcher = Watcher {
                    executable: executable.clone(),
                    stop: stopped.clone(),
                    failed: failed.clone(),
                };
                tokio::spawn(supervise(watcher, spec))
            })
            .collect();
        Supervisor {
            stop,
            tasks,
            failures,
        }
    }

    /// Returns a receiver of the latest child that exited with an error
    /// code, as `name (status)`.
    pub(super) fn failures(&self) -> watch::Receiver<Option<String>> {
        self.failures.clone()
    }

    /// Sends SIGTERM to every child, kills those still running after
    /// `grace`, and waits until all have exited.
    pub(super) async fn stop(self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a child's supervising task failed");
            }
        }
    }
}

/// What each child's task shares with the supervisor.
struct Watcher {
    executable: Arc<PathBuf>,
    stop: watch::Receiver<Option<Duration>>,
    failed: watch::Sender<Option<String>>,
}

/// Runs one child until a stop is requested, restarting it with backoff
/// whenever it exits.
async fn supervise(watcher: Watcher, spec: ChildSpec) {
    let Watcher {
        executable,
        mut stop,
        failed,
    } = watcher;
    let name = spec.name.as_str();
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        match spawn(&executable, &spec) {
            Ok(mut child) => {
                // `wait` would close the child's stdin, which tells the child
                // that the supervisor is gone; hold it here instead.
                let _stdin = child.stdin.take();
                tokio::select! {
                    status = child.wait() => {
                        if let Ok(status) = &status {
                            if status.code().is_some_and(|code| code != 0) {
                                let _ = failed.send(Some(format!("{name} ({status})")));
                            }
                        }
                        report_exit(name, status, backoff);
                    }
                    _ = stop.changed() => {
                        let grace = (*stop.borrow()).unwrap_or_default();
                        terminate(name, &mut child, grace).await;
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::error!(child = name, %error, ?backoff, "cannot start child, retrying");
            }
        }
        if started.elapsed() >= STABLE_RUN {
            backoff = MIN_BACKOFF;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        tracing::info!(child = name, "restarting child");
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn report_exit(name: &str, status: std::io::Result<ExitStatus>, backoff: Duration) {
    match status {
        Ok(status) => {
            tracing::warn!(child = name, %status, ?backoff, "child exited, restarting after backoff");
        }
        Err(error) => {
            tracing::warn!(child = name, %error, ?backoff, "cannot wait for child, restarting after backoff");
        }
    }
}

/// Starts the child in its own process group, so that Ctrl-C in the
/// terminal reaches only the supervisor, which then stops the children in
/// order. Its environment is this process's, so `RUST_LOG` and
/// `TRECHO_FAILPOINTS` reach it. The child's stdin is a pipe that stays open
/// while the returned `Child` lives: when the supervisor dies, even by
/// SIGKILL, the child reads end of file and exits (see
/// `crate::cli::exit_with_parent`).
fn spawn(executable: &Path, spec: &ChildSpec) -> std::io::Result<Child> {
    let mut child = Command::new(executable)
        .args(&spec.args)
        .stdin(Stdio::piped())
        .env(crate::cli::EXIT_WITH_PARENT, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    tracing::info!(child = spec.name, pid = child.id(), "child started");
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(stream_lines(spec.name.clone(), stdout, false));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(stream_lines(spec.name.clone(), stderr, true));
    }
    Ok(child)
}

/// Copies each line of a child's output to ours, prefixed with its name.
async fn stream_lines(name: String, output: impl AsyncRead + Unpin, to_stderr: bool) {
    let mut lines = BufReader::new(output).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) if to_stderr => eprintln!("{name:>8} | {line}"),
            Ok(Some(line)) => println!("{name:>8} | {line}"),
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(child = name, %error, "cannot read the child's output");
                return;
            }
        }
    }
}

/// Sends SIGTERM, waits up to `grace`, then kills the child.
async fn terminate(name: &str, child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else {
        return;
    };
    if let Err(error) = send_sigterm(pid).await {
        tracing::warn!(child = name, pid, %error, "cannot send SIGTERM, killing the child");
        if let Err(error) = child.kill().await {
            tracing::error!(child = name, pid, %error, "cannot kill child");
        }
        return;
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => tracing::info!(child = name, %status, "child stopped"),
        Ok(Err(error)) => tracing::warn!(child = name, %error, "cannot wait for child"),
        Err(_) => {
            tracing::warn!(
                child = name,
                pid,
                ?grace,
                "child ignored SIGTERM, killing it"
            );
            if let Err(error) = child.kill().await {
                tracing::error!(child = name, pid, %error, "cannot kill child");
            }
        }
    }
}

/// Sends SIGTERM with the system's `kill` command, because the standard
/// library can send only SIGKILL and this crate uses no unsafe code.
async fn send_sigterm(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .await?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "kill -TERM {pid} exited with {status}"
        )))
    }
}
