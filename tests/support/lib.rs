//! Shared helpers for trecho's integration tests.
//!
//! [`start_cluster`] starts real shard and router processes (the
//! `trecho-node` binary) on free loopback ports with their data in a
//! temporary folder, so that a test can SIGKILL and restart any of them.
//! Each process writes its log to `<temp>/<name>.log`, which
//! [`Cluster::log`] reads; `name` is `shard-0`, `shard-1`, ... or `router`.
//! Dropping the [`Cluster`] kills every process and removes the folder.

#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;
use trecho_client::{Client, ClientOptions};

/// Time allowed for the processes to start and the router to reach every
/// shard.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts a cluster of `shards` shards and one router with default
/// settings, and waits until the router reaches every shard.
///
/// # Panics
///
/// Panics, with the processes' logs, when the cluster is not ready within
/// 30 seconds.
pub async fn start_cluster(shards: usize) -> Cluster {
    Cluster::builder(shards).start().await
}

/// Settings of a cluster before it starts.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    shards: usize,
    shard_env: Vec<Vec<(String, String)>>,
    router_env: Vec<(String, String)>,
    shard_args: Vec<String>,
    router_args: Vec<String>,
}

impl ClusterBuilder {
    /// Sets an environment variable of shard `index`, such as
    /// `TRECHO_FAILPOINTS`.
    pub fn shard_env(mut self, index: usize, key: &str, value: &str) -> Self {
        self.shard_env[index].push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets an environment variable of the router.
    pub fn router_env(mut self, key: &str, value: &str) -> Self {
        self.router_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds flags to every shard's command line, such as
    /// `["--prepare-timeout-ms", "1000"]`.
    pub fn shard_args(mut self, args: &[&str]) -> Self {
        self.shard_args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Adds flags to the router's command line.
    pub fn router_args(mut self, args: &[&str]) -> Self {
        self.router_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Starts every process and waits until the router reaches every shard.
    ///
    /// # Panics
    ///
    /// Panics, with the processes' logs, when a process cannot start or the
    /// cluster is not ready within 30 seconds.
    pub async fn start(self) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("trecho-test-")
            .tempdir()
            .expect("cannot create a temporary folder for the cluster");
        let ports = free_ports(self.shards + 1);
        let router_addr = format!("127.0.0.1:{}", ports[0]);
        let shard_addrs: Vec<String> = ports[1..]
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let spec = shard_spec(&shard_addrs);
        let shards = (0..self.shards)
            .map(|index| {
                let data_dir = dir.path().join(format!("shard-{index}"));
                let mut args = vec![
                    "shard".to_owned(),
                    "--id".to_owned(),
                    index.to_string(),
                    "--listen".to_owned(),
                    shard_addrs[index].clone(),
                    "--data-dir".to_owned(),
                    data_dir.display().to_string(),
                    "--shards".to_owned(),
                    spec.clone(),
                ];
                args.extend(self.shard_args.iter().cloned());
                Process::new(
                    dir.path(),
                    &format!("shard-{index}"),
                    args,
                    self.shard_env[index].clone(),
                )
            })
            .collect();
        let mut router_args = vec![
            "router".to_owned(),
            "--listen".to_owned(),
            router_addr.clone(),
            "--shards".to_owned(),
            spec,
        ];
        router_args.extend(self.router_args.iter().cloned());
        let router = Process::new(dir.path(), "router", router_args, self.router_env.clone());
        let mut cluster = Cluster {
            binary: node_binary(),
            router_addr,
            shard_addrs,
            shards,
            router,
            dir,
        };
        for index in 0..cluster.shards.len() {
            cluster.shards[index].spawn(&cluster.binary);
        }
        cluster.router.spawn(&cluster.binary);
        cluster.wait_ready().await;
        cluster
    }
}

/// Real shard and router processes of one test. Dropping it kills them and
/// removes their data.
pub struct Cluster {
    binary: PathBuf,
    router_addr: String,
    shard_addrs: Vec<String>,
    shards: Vec<Process>,
    router: Process,
    // Dropped last, after the processes are killed.
    dir: TempDir,
}

impl Cluster {
    /// Returns settings for a cluster of `shards` shards.
    pub fn builder(shards: usize) -> ClusterBuilder {
        assert!(shards > 0, "a cluster needs at least one shard");
        ClusterBuilder {
            shards,
            shard_env: vec![Vec::new(); shards],
            router_env: Vec::new(),
            shard_args: Vec::new(),
            router_args: Vec::new(),
        }
    }

    /// Returns the router's client address.
    pub fn router_addr(&self) -> &str {
        &self.router_addr
    }

    /// Returns shard `index`'s internal address.
    pub fn shard_addr(&self, index: usize) -> &str {
        &self.shard_addrs[index]
    }

    /// Returns shard `index`'s data folder.
    pub fn data_dir(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("shard-{index}"))
    }

    /// Returns shard `index`'s process id, or `None` while it is killed.
    pub fn shard_pid(&self, index: usize) -> Option<u32> {
        self.shards[index].child.as_ref().map(Child::id)
    }

    /// Connects a new client to the router.
    ///
    /// # Panics
    ///
    /// Panics when the router does not accept the connection.
    pub async fn client(&self) -> Client {
        Client::connect(&self.router_addr)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Kills shard `index` with SIGKILL and waits until it is gone.
    pub fn kill_shard(&mut self, index: usize) {
        self.shards[index].kill();
    }

    /// Starts shard `index` again on the same address and data, and waits
    /// until the router reaches every shard.
    pub async fn restart_shard(&mut self, index: usize) {
        self.shards[index].kill();
        self.shards[index].spawn(&self.binary);
        self.wait_ready().await;
    }

    /// Kills the router with SIGKILL and waits until it is gone.
    pub fn kill_router(&mut self) {
        self.router.kill();
    }

    /// Starts the router again on the same address, and waits until it
    /// reaches every shard.
    pub async fn restart_router(&mut self) {
        self.router.kill();
        self.router.spawn(&self.binary);
        self.wait_ready().await;
    }

    /// Sets an environment variable of shard `index` for its next start.
    pub fn set_shard_env(&mut self, index: usize, key: &str, value: &str) {
        self.shards[index].set_env(key, Some(value));
    }

    /// Removes an environment variable of shard `index` for its next start.
    pub fn remove_shard_env(&mut self, index: usize, key: &str) {
        self.shards[index].set_env(key, None);
    }

    /// Sets an environment variable of the router for its next start.
    pub fn set_router_env(&mut self, key: &str, value: &str) {
        self.router.set_env(key, Some(value));
    }

    /// Removes an environment variable of the router for its next start.
    pub fn remove_router_env(&mut self, key: &str) {
        self.router.set_env(key, None);
    }

    /// Returns the log of `name` (`shard-0`, ..., `router`) so far, across
    /// restarts.
    pub fn log(&self, name: &str) -> String {
        let path = self.dir.path().join(format!("{name}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Waits until the log of `name` contains `needle`, such as `failpoint
    /// shard.after_prepare reached`; returns whether it did within
    /// `timeout`.
    pub async fn wait_for_log(&self, name: &str, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log(name).contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the router's `cluster.status` shows every shard healthy.
    ///
    /// # Panics
    ///
    /// Panics, with every process's log, when a process exits or the
    /// cluster is not ready within 30 seconds.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("the router did not accept connections");
        while Instant::now() < deadline {
            self.check_running();
            match self.unhealthy_shards().await {
                Ok(unhealthy) if unhealthy.is_empty() => return,
                Ok(unhealthy) => last = format!("the router cannot reach shards {unhealthy:?}"),
                Err(error) => last = error,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the cluster was not ready within {READY_TIMEOUT:?}: {last}\n{}",
            self.logs()
        );
    }

    async fn unhealthy_shards(&self) -> Result<Vec<u32>, String> {
        let options = ClientOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Some(Duration::from_secs(2)),
        };
        let client = Client::connect_with(&self.router_addr, options)
            .await
            .map_err(|e| e.to_string())?;
        let status = client.status().await.map_err(|e| e.to_string())?;
        let unhealthy = status.shards.iter().filter(|s| !s.healthy).map(|s| s.id);
        Ok(unhealthy.collect())
    }

    /// Panics with the logs when a process that should run has exited.
    fn check_running(&mut self) {
        let exited = self
            .shards
            .iter_mut()
            .chain(std::iter::once(&mut self.router))
            .find_map(|process| process.exit_status().map(|s| (process.name.clone(), s)));
        if let Some((name, status)) = exited {
            panic!("{name} exited with {status}\n{}", self.logs());
        }
    }

    /// Returns every process's log, each under its name.
    pub fn logs(&self) -> String {
        let names = self
            .shards
            .iter()
            .chain(std::iter::once(&self.router))
            .map(|p| p.name.as_str());
        names
            .map(|name| format!("----- {name} log -----\n{}", self.log(name)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.router.kill();
        for shard in &mut self.shards {
            shard.kill();
        }
    }
}

/// One process, killed and started again as the test requests.
struct Process {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn new(dir: &Path, name: &str, args: Vec<String>, env: Vec<(String, String)>) -> Self {
        Process {
            name: name.to_owned(),
            args,
            env,
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    fn spawn(&mut self, binary: &Path) {
        let log = open_log(&self.log);
        let err_log = log.try_clone().expect("cannot share the log file");
        let mut command = Command::new(binary);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        // Settings come from flags and `env` only, never from the
        // environment the tests run in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TRECHO_") {
                command.env_remove(key);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} from {}: {e}; build it with `cargo build --bins`",
                self.name,
                binary.display()
            )
        });
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_owned(), value.to_owned()));
        }
    }
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open the log {}: {e}", path.display()))
}

/// Returns `count` loopback ports that were free a moment ago. All are
/// held until all are chosen, so they differ.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("a bound listener has an address")
                .port()
        })
        .collect()
}

/// Splits the slots evenly over `addresses` as a `--shards` spec.
fn shard_spec(addresses: &[String]) -> String {
    let map =
        trecho_common::shardmap::ShardMap::even(addresses).expect("at least one shard address");
    let entries: Vec<String> = map
        .shards
        .iter()
        .map(|shard| {
            let [first, last] = shard.slots[0];
            format!("{}={}@{first}-{last}", shard.id, shard.address)
        })
        .collect();
    entries.join(";")
}

/// Returns the path of the `trecho-node` binary: `TRECHO_NODE_BIN` when
/// set, or else next to the test executable's `deps` folder, where Cargo
/// puts the package's binaries.
pub fn node_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TRECHO_NODE_BIN") {
        return PathBuf::from(path);
    }
    let test_binary = std::env::current_exe().expect("the test binary has a path");
    let mut dir = test_binary
        .parent()
        .expect("the test binary is in a folder")
        .to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(format!("trecho-node{}", std::env::consts::EXE_SUFFIX))
}
