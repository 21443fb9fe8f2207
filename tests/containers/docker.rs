//! The docker commands that break and repair the compose cluster.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use anyhow::Context;
use tokio::process::Command;

/// Time allowed for one docker command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The containers and network of one compose project.
pub(crate) struct Docker {
    project: String,
    network: String,
    image: String,
}

/// How a process in a one-off container ended.
pub(crate) struct Exit {
    /// Exit code, `None` when it was still running at the timeout.
    pub(crate) code: Option<i32>,
    pub(crate) output: String,
}

impl Docker {
    /// Uses the compose project `project`, whose network is
    /// `<project>_cluster`.
    pub(crate) fn new(project: &str, image: &str) -> Docker {
        Docker {
            project: project.to_owned(),
            network: format!("{project}_cluster"),
            image: image.to_owned(),
        }
    }

    /// Returns the id of the container of compose service `service`.
    pub(crate) async fn container(&self, service: &str) -> anyhow::Result<String> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let service_label = format!("label=com.docker.compose.service={service}");
        let output = run(&[
            "ps",
            "-aq",
            "--filter",
            &project,
            "--filter",
            &service_label,
        ])
        .await?;
        let id = output.lines().next().unwrap_or_default().trim().to_owned();
        anyhow::ensure!(
            !id.is_empty(),
            "no container of service {service} in compose project {}; is the cluster up?",
            self.project
        );
        Ok(id)
    }

    /// Cuts `service` off the cluster network: its peers' packets to it are
    /// dropped, not refused.
    pub(crate) async fn disconnect(&self, service: &str) -> anyhow::Result<()> {
        let id = self.container(service).await?;
        run(&["network", "disconnect", &self.network, &id]).await?;
        Ok(())
    }

    /// Joins `service` to the cluster network again under its service
    /// name, which is the address in the shard map.
    pub(crate) async fn reconnect(&self, service: &str) -> anyhow::Result<()> {
        let id = self.container(service).await?;
        run(&["network", "connect", "--alias", service, &self.network, &id]).await?;
        Ok(())
    }

    /// Sends SIGKILL to the container of `service`.
    pub(crate) async fn kill(&self, service: &str) -> anyhow::Result<()> {
        let id = self.container(service).await?;
        run(&["kill", "--signal", "KILL", &id]).await?;
        Ok(())
    }

    /// Starts the container of `service`. Starting a running container
    /// changes nothing.
    pub(crate) async fn start(&self, service: &str) -> anyhow::Result<()> {
        let id = self.container(service).await?;
        run(&["start", &id]).await?;
        Ok(())
    }

    /// Sends SIGTERM to the container of `service` and waits until it
    /// stops.
    pub(crate) async fn stop(&self, service: &str) -> anyhow::Result<()> {
        let id = self.container(service).await?;
        run(&["stop", "--time", "10", &id]).await?;
        Ok(())
    }

    /// Runs `trecho admin ARGS` inside the router's container, which has
    /// the admin token in its environment and reaches the shards by name.
    /// Returns its exit code and output once it ends, or after `limit`.
    pub(crate) async fn admin(&self, args: &[&str], limit: Duration) -> anyhow::Result<Exit> {
        let id = self.container("router").await?;
        let mut command = vec!["exec", "-e", "RUST_LOG=warn", &id, "trecho", "admin"];
        command.extend(args);
        let output = output_of(&command, limit).await?;
        Ok(Exit {
            code: output.status.code(),
            output: text_of(&output),
        })
    }

    /// Runs `trecho audit` inside the router's container, where the shard
    /// names of the shard map resolve. Returns its exit code and output.
    pub(crate) async fn audit(&self, in_doubt_after: Duration) -> anyhow::Result<Exit> {
        let id = self.container("router").await?;
        let seconds = in_doubt_after.as_secs().to_string();
        let args = [
            "exec",
            "-e",
            "RUST_LOG=warn",
            &id,
            "trecho",
            "audit",
            "--router",
            "127.0.0.1:7878",
            "--in-doubt-after",
            &seconds,
        ];
        let output = output_of(&args, COMMAND_TIMEOUT).await?;
        Ok(Exit {
            code: output.status.code(),
            output: text_of(&output),
        })
    }

    /// Runs `command` in a one-off container of the image with no network
    /// and `config_dir` mounted at /etc/trecho, and waits up to `limit` for
    /// it to exit. A process still running at the limit is removed.
    pub(crate) async fn run_once(
        &self,
        name: &str,
        config_dir: &Path,
        env: &[&str],
        command: &[&str],
        limit: Duration,
    ) -> anyhow::Result<Exit> {
        let container = format!("{}-{name}", self.project);
        let mount = format!("{}:/etc/trecho:ro", config_dir.display());
        let label = format!("trecho.failure-tests={}", self.project);
        let mut args = vec![
            "run",
            "--rm",
            "--name",
            &container,
            "--label",
            &label,
            "--network",
            "none",
            "-v",
            &mount,
        ];
        for variable in env {
            args.extend(["-e", variable]);
        }
        args.push(&self.image);
        args.extend(command);
        match output_of(&args, limit).await {
            Ok(output) => Ok(Exit {
                code: output.status.code(),
                output: text_of(&output),
            }),
            Err(error) => {
                let _ = run(&["rm", "-f", &container]).await;
                if error.is::<tokio::time::error::Elapsed>() {
                    Ok(Exit {
                        code: None,
                        output: format!("still running after {limit:?}"),
                    })
                } else {
                    Err(error)
                }
            }
        }
    }
}

/// Runs `docker ARGS` and returns its standard output, failing on a
/// non-zero exit.
async fn run(args: &[&str]) -> anyhow::Result<String> {
    let output = output_of(args, COMMAND_TIMEOUT).await?;
    anyhow::ensure!(
        output.status.success(),
        "`docker {}` failed with {}: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn output_of(args: &[&str], limit: Duration) -> anyhow::Result<Output> {
    let command = Command::new("docker")
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, command).await?;
    output.with_context(|| format!("cannot run `docker {}`", args.join(" ")))
}

fn text_of(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text.trim().to_owned()
}
