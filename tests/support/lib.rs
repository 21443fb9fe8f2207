//! Shared helpers for trecho's integration tests.
//!
//! [`start_cluster`] starts real shard and router processes (the
//! `trecho-node` binary) on free loopback ports with their data in a
//! temporary folder, so that a test can SIGKILL and restart any of them.
//! Each process writes its log to `<temp>/<name>.log`, which
//! [`Cluster::log`] reads; `name` is `shard-0`, `shard-1`, ... or `router`.
//! Dropping the [`Cluster`] kills every process and removes the folder.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
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
    /// Slot ranges of each shard in the shards' map, and its version; an
    /// even split at version 1 when unset.
    shard_map: Option<(Vec<[u16; 2]>, u64)>,
    /// Start the router with `--seeds` instead of the shards' map.
    router_from_seeds: bool,
    /// Start the router with this map (ranges per shard, version) instead
    /// of the shards' map.
    router_map: Option<(Vec<[u16; 2]>, u64)>,
}

impl ClusterBuilder {
    /// Gives the shards a map with one slot range per shard, in shard
    /// order, at `version`.
    pub fn shard_map(mut self, ranges: &[[u16; 2]], version: u64) -> Self {
        assert_eq!(ranges.len(), self.shards, "one slot range per shard");
        self.shard_map = Some((ranges.to_vec(), version));
        self
    }

    /// Starts the router with only the shards' addresses (`--seeds`), so
    /// that it requests the map from them.
    pub fn router_from_seeds(mut self) -> Self {
        self.router_from_seeds = true;
        self
    }

    /// Starts the router with its own map, one slot range per shard at
    /// `version`, which may differ from the shards' map.
    pub fn router_map(mut self, ranges: &[[u16; 2]], version: u64) -> Self {
        assert_eq!(ranges.len(), self.shards, "one slot range per shard");
        self.router_map = Some((ranges.to_vec(), version));
        self
    }

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
        let (ranges, version) = self
            .shard_map
            .clone()
            .unwrap_or_else(|| (even_ranges(self.shards), 1));
        let spec = shard_spec(&shard_addrs, &ranges);
        let shard_args = self.shard_args.clone();
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
                    "--map-version".to_owned(),
                    version.to_string(),
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
        ];
        if self.router_from_seeds {
            router_args.extend(["--seeds".to_owned(), shard_addrs.join(",")]);
        } else if let Some((ranges, version)) = &self.router_map {
            router_args.extend([
                "--shards".to_owned(),
                shard_spec(&shard_addrs, ranges),
                "--map-version".to_owned(),
                version.to_string(),
            ]);
        } else {
            router_args.extend([
                "--shards".to_owned(),
                spec.clone(),
                "--map-version".to_owned(),
                version.to_string(),
            ]);
        }
        router_args.extend(self.router_args.iter().cloned());
        let router = Process::new(dir.path(), "router", router_args, self.router_env.clone());
        let mut cluster = Cluster {
            binary: node_binary(),
            router_addr,
            shard_addrs,
            shards,
            router,
            more_routers: Vec::new(),
            spec,
            version,
            shard_args,
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
    /// Routers started by [`Cluster::start_router_from_seeds`], with their
    /// addresses.
    more_routers: Vec<(Process, String)>,
    /// The `--shards` spec and version every shard started with, and the
    /// flags given to every shard, for shards added later.
    spec: String,
    version: u64,
    shard_args: Vec<String>,
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
            shard_map: None,
            router_from_seeds: false,
            router_map: None,
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

    /// Starts one more shard that owns no slots, with the next free id and
    /// the shard map the others started with plus itself, and waits until
    /// it accepts connections. The router learns of it from
    /// `admin.add_shard` or from the first move that gives it slots.
    /// Returns its id.
    ///
    /// # Panics
    ///
    /// Panics, with the logs, when it does not accept connections within
    /// 30 seconds.
    pub async fn add_shard(&mut self) -> u32 {
        let index = self.shards.len();
        let address = format!("127.0.0.1:{}", free_ports(1)[0]);
        let mut args = vec![
            "shard".to_owned(),
            "--id".to_owned(),
            index.to_string(),
            "--listen".to_owned(),
            address.clone(),
            "--data-dir".to_owned(),
            self.data_dir(index).display().to_string(),
            "--shards".to_owned(),
            format!("{};{index}={address}@", self.spec),
            "--map-version".to_owned(),
            self.version.to_string(),
        ];
        args.extend(self.shard_args.iter().cloned());
        let name = format!("shard-{index}");
        let mut shard = Process::new(self.dir.path(), &name, args, Vec::new());
        shard.spawn(&self.binary);
        self.shards.push(shard);
        self.shard_addrs.push(address.clone());
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            self.check_running();
            if tokio::net::TcpStream::connect(&address).await.is_ok() {
                return index as u32;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{name} did not accept connections within {READY_TIMEOUT:?}\n{}",
            self.logs()
        );
    }

    /// Starts shard `index` again on the same address and data without
    /// waiting for the router, which may be down.
    pub fn restart_shard_only(&mut self, index: usize) {
        self.shards[index].kill();
        self.shards[index].spawn(&self.binary);
    }

    /// Kills the router with SIGKILL and waits until it is gone.
    pub fn kill_router(&mut self) {
        self.router.kill();
    }

    /// Starts one more router, given only the shards' addresses
    /// (`--seeds`), waits until it reaches every shard, and returns its
    /// client address. Its log is `router-N`, N counting from 2.
    ///
    /// # Panics
    ///
    /// Panics, with the logs, when it is not ready within 30 seconds.
    pub async fn start_router_from_seeds(&mut self) -> String {
        let address = format!("127.0.0.1:{}", free_ports(1)[0]);
        let name = format!("router-{}", self.more_routers.len() + 2);
        let args = vec![
            "router".to_owned(),
            "--listen".to_owned(),
            address.clone(),
            "--seeds".to_owned(),
            self.shard_addrs.join(","),
        ];
        let mut router = Process::new(self.dir.path(), &name, args, Vec::new());
        router.spawn(&self.binary);
        self.more_routers.push((router, address.clone()));
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            self.check_running();
            if let Ok(unhealthy) = unhealthy_shards(&address).await {
                if unhealthy.is_empty() {
                    return address;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{name} was not ready within {READY_TIMEOUT:?}\n{}",
            self.logs()
        );
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
            match unhealthy_shards(&self.router_addr).await {
                Ok(unhealthy) if unhealthy.is_empty() => {
                    // A process that could not bind its port may exit only
                    // now, after the router found some other listener there.
                    self.check_running();
                    return;
                }
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

    /// Panics with the logs when a process that should run has exited.
    fn check_running(&mut self) {
        let exited = self
            .shards
            .iter_mut()
            .chain(std::iter::once(&mut self.router))
            .chain(self.more_routers.iter_mut().map(|(process, _)| process))
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
            .chain(self.more_routers.iter().map(|(process, _)| process))
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
        for (router, _) in &mut self.more_routers {
            router.kill();
        }
        for shard in &mut self.shards {
            shard.kill();
        }
    }
}

/// Returns the shards that the router at `address` reports unhealthy.
async fn unhealthy_shards(address: &str) -> Result<Vec<u32>, String> {
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Some(Duration::from_secs(2)),
    };
    let client = Client::connect_with(address, options)
        .await
        .map_err(|e| e.to_string())?;
    let status = client.status().await.map_err(|e| e.to_string())?;
    let unhealthy = status.shards.iter().filter(|s| !s.healthy).map(|s| s.id);
    Ok(unhealthy.collect())
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

/// Ports this test binary has handed out. Tests run in parallel threads,
/// and a port that one cluster picked is free again until its process
/// binds it. Without this record two clusters could pick the same port,
/// and one router would talk to the other cluster's shard.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Returns `count` loopback ports that were free a moment ago and that no
/// other cluster of this test binary was given. All are held until all
/// are chosen, so they differ.
fn free_ports(count: usize) -> Vec<u16> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        held.push(listener);
    }
    ports
}

/// Returns the slot ranges of an even split over `shards` shards.
pub fn even_ranges(shards: usize) -> Vec<[u16; 2]> {
    let addresses: Vec<String> = (0..shards).map(|i| format!("shard-{i}:0")).collect();
    let map =
        trecho_common::shardmap::ShardMap::even(&addresses).expect("at least one shard address");
    map.shards.iter().map(|shard| shard.slots[0]).collect()
}

/// Returns a `--shards` spec giving shard `i`, at `addresses[i]`, the slots
/// `ranges[i]`.
fn shard_spec(addresses: &[String], ranges: &[[u16; 2]]) -> String {
    let entries: Vec<String> = addresses
        .iter()
        .zip(ranges)
        .enumerate()
        .map(|(id, (address, [first, last]))| format!("{id}={address}@{first}-{last}"))
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
