//! The layout of a local cluster: each process's address, data folder and
//! command line.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::Context;
use trecho_common::shardmap::ShardMap;
use trecho_common::time::Date;

use crate::cli::args::ClusterArgs;

/// One shard of the plan.
struct ShardPlan {
    id: u32,
    address: String,
    data_dir: PathBuf,
}

/// A child process to run: its log prefix and its arguments after the
/// executable.
pub(super) struct ChildSpec {
    /// `shard-0`, ..., `router`.
    pub(super) name: String,
    /// Arguments, starting with the `shard` or `router` subcommand.
    pub(super) args: Vec<OsString>,
}

/// Addresses, folders and the shared shard map of a local cluster.
pub(super) struct Plan {
    /// The router's client address.
    pub(super) router: String,
    shards: Vec<ShardPlan>,
    /// The shard map as a `--shards` spec.
    spec: String,
    schedule: Option<PathBuf>,
    days: Option<u32>,
    start_date: Option<Date>,
}

impl Plan {
    /// Picks the addresses and creates the data folders.
    ///
    /// # Errors
    ///
    /// Fails when the router's address is invalid or taken, no free port is
    /// left for a shard, a data folder cannot be created, or the schedule
    /// file does not exist.
    pub(super) fn new(args: &ClusterArgs) -> anyhow::Result<Plan> {
        let router = reserve_router_address(&args.listen)?;
        let addresses = pick_shard_addresses(router.port(), args.shards)?;
        let map = ShardMap::even(&addresses).context("cannot split the slots over the shards")?;
        // Checked before any folder is created, so a typo leaves nothing behind.
        let schedule = match &args.schedule {
            Some(path) => Some(
                std::fs::canonicalize(path)
                    .with_context(|| format!("cannot find the schedule file {}", path.display()))?,
            ),
            None => None,
        };
        check_shard_count(&args.data_dir, args.shards)?;
        let mut shards = Vec::new();
        for (id, address) in (0..).zip(addresses) {
            let data_dir = create_data_dir(&args.data_dir, id)?;
            shards.push(ShardPlan {
                id,
                address,
                data_dir,
            });
        }
        Ok(Plan {
            router: router.to_string(),
            shards,
            spec: spec_of(&map),
            schedule,
            days: args.days,
            start_date: args.start_date,
        })
    }

    /// Returns the shards' and then the router's command lines.
    pub(super) fn children(&self) -> Vec<ChildSpec> {
        let mut children: Vec<ChildSpec> =
            self.shards.iter().map(|s| self.shard_child(s)).collect();
        let mut args = vec![
            "router".into(),
            "--listen".into(),
            self.router.clone().into(),
        ];
        args.extend(["--shards".into(), self.spec.clone().into()]);
        if let Some(schedule) = &self.schedule {
            args.extend(["--schedule".into(), schedule.clone().into()]);
        }
        children.push(ChildSpec {
            name: "router".to_owned(),
            args,
        });
        children
    }

    fn shard_child(&self, shard: &ShardPlan) -> ChildSpec {
        let mut args: Vec<OsString> = vec![
            "shard".into(),
            "--id".into(),
            shard.id.to_string().into(),
            "--listen".into(),
            shard.address.clone().into(),
            "--data-dir".into(),
            shard.data_dir.clone().into(),
            "--shards".into(),
            self.spec.clone().into(),
        ];
        if let Some(schedule) = &self.schedule {
            args.extend(["--schedule".into(), schedule.clone().into()]);
        }
        if let Some(days) = self.days {
            args.extend(["--days".into(), days.to_string().into()]);
        }
        if let Some(date) = self.start_date {
            args.extend(["--start-date".into(), date.to_string().into()]);
        }
        ChildSpec {
            name: format!("shard-{}", shard.id),
            args,
        }
    }

    /// Returns the text printed once the cluster is ready: where everything
    /// is and commands to try.
    pub(super) fn banner(&self) -> String {
        let mut out = format!(
            "\ntrecho cluster ready: router on {}, {} shards\n",
            self.router,
            self.shards.len()
        );
        for shard in &self.shards {
            let _ = writeln!(
                out,
                "  shard {}  {}  data in {}",
                shard.id,
                shard.address,
                shard.data_dir.display()
            );
        }
        let router_flag = if self.router == trecho_common::protocol::DEFAULT_ROUTER_ADDR {
            String::new()
        } else {
            format!(" --router {}", self.router)
        };
        let date = self.start_date.unwrap_or_else(Date::today_utc).add_days(1);
        out.push_str("\ntry, in another terminal:\n");
        for command in [
            "status".to_owned(),
            format!("search GRU --date {date}"),
            format!("trip GRU SSA --date {date} --name \"Ana Souza\" --document X1234567"),
            "bookings X1234567".to_owned(),
        ] {
            let _ = writeln!(out, "  trecho {command}{router_flag}");
        }
        out.push_str("\nCtrl-C stops the cluster.\n");
        out
    }
}

/// Checks that the router's address is free, and resolves port 0 to a
/// free port.
fn reserve_router_address(listen: &str) -> anyhow::Result<SocketAddr> {
    let address: SocketAddr = listen.parse().with_context(|| {
        format!("invalid --listen {listen:?}: expected IP:PORT such as 127.0.0.1:7878")
    })?;
    let listener = TcpListener::bind(address).with_context(|| {
        format!(
            "cannot listen on {address}; if a cluster is already running there, stop it, \
             or choose another address with --listen 127.0.0.1:PORT"
        )
    })?;
    listener
        .local_addr()
        .context("cannot read the router's address")
}

/// Picks a loopback address for each shard: the port after the router's
/// plus the shard's index, or any free port when that one is taken.
fn pick_shard_addresses(router_port: u16, count: u32) -> anyhow::Result<Vec<String>> {
    // Every chosen port stays bound until all are chosen, so no two shards
    // get the same one.
    let mut held = Vec::new();
    for index in 0..count {
        let preferred = u32::from(router_port) + 1 + index;
        let listener = u16::try_from(preferred)
            .ok()
            .and_then(|port| TcpListener::bind(("127.0.0.1", port)).ok());
        let listener = match listener {
            Some(listener) => listener,
            None => TcpListener::bind("127.0.0.1:0")
                .with_context(|| format!("cannot find a free loopback port for shard {index}"))?,
        };
        held.push(listener);
    }
    held.iter()
        .map(|listener| {
            let address = listener
                .local_addr()
                .context("cannot read a shard's address")?;
            Ok(address.to_string())
        })
        .collect()
}

/// Rejects a data folder that contains a cluster with another number of
/// shards. Each shard keeps the slots it was seeded with, so the old shards
/// would reject the new split after the new shards were already seeded.
fn check_shard_count(root: &Path, shards: u32) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(());
    };
    let seeded = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("meta.json").is_file())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_prefix("shard-")?.parse::<u32>().ok()
        })
        .max()
        .map(|last| last + 1);
    match seeded {
        Some(count) if count != shards => anyhow::bail!(
            "the data folder {} holds a cluster of {count} shards; start it with --shards \
             {count}, or give another --data-dir for a cluster of {shards} shards",
            root.display()
        ),
        _ => Ok(()),
    }
}

fn create_data_dir(root: &Path, id: u32) -> anyhow::Result<PathBuf> {
    let dir = root.join(format!("shard-{id}"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
    std::fs::canonicalize(&dir)
        .with_context(|| format!("cannot resolve the data folder {}", dir.display()))
}

/// Formats a shard map as a `--shards` spec:
/// `ID=HOST:PORT@FIRST-LAST[,FIRST-LAST]` entries separated by `;`.
fn spec_of(map: &ShardMap) -> String {
    let entries: Vec<String> = map
        .shards
        .iter()
        .map(|shard| {
            let ranges: Vec<String> = shard
                .slots
                .iter()
                .map(|[first, last]| format!("{first}-{last}"))
                .collect();
            format!("{}={}@{}", shard.id, shard.address, ranges.join(","))
        })
        .collect();
    entries.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_the_parser() {
        let addresses = ["127.0.0.1:7879", "127.0.0.1:7880", "127.0.0.1:7881"].map(String::from);
        let map = ShardMap::even(&addresses).unwrap();
        let spec = spec_of(&map);
        assert_eq!(
            spec,
            "0=127.0.0.1:7879@0-5460;1=127.0.0.1:7880@5461-10921;2=127.0.0.1:7881@10922-16383"
        );
        assert_eq!(ShardMap::parse_spec(1, &spec).unwrap(), map);
    }

    #[test]
    fn shard_ports_skip_taken_ones() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        // The first shard's preferred port is `port`, which is taken.
        let addresses = pick_shard_addresses(port - 1, 2).unwrap();
        assert_eq!(addresses.len(), 2);
        assert_ne!(addresses[0], format!("127.0.0.1:{port}"));
        assert_ne!(addresses[0], addresses[1]);
    }

    #[test]
    fn children_share_the_spec() {
        let dir = std::env::temp_dir().join(format!("trecho-plan-{}", std::process::id()));
        let args = ClusterArgs {
            shards: 2,
            listen: "127.0.0.1:0".into(),
            data_dir: dir.clone(),
            schedule: None,
            days: Some(3),
            start_date: Date::from_ymd(2026, 12, 20),
            ready_timeout: 30,
        };
        let plan = Plan::new(&args).unwrap();
        let children = plan.children();
        let names: Vec<&str> = children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["shard-0", "shard-1", "router"]);
        let text = |child: &ChildSpec| -> Vec<String> {
            child
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let shard = text(&children[1]);
        assert_eq!(&shard[..3], ["shard", "--id", "1"]);
        assert!(shard.windows(2).any(|w| w == ["--days", "3"]), "{shard:?}");
        assert!(
            shard
                .windows(2)
                .any(|w| w == ["--start-date", "2026-12-20"]),
            "{shard:?}"
        );
        let router = text(&children[2]);
        let spec_at = router.iter().position(|a| a == "--shards").unwrap() + 1;
        let shard_spec_at = shard.iter().position(|a| a == "--shards").unwrap() + 1;
        assert_eq!(router[spec_at], shard[shard_spec_at]);
        assert!(dir.join("shard-1").is_dir());
        assert!(plan
            .banner()
            .contains("trecho trip GRU SSA --date 2026-12-21"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn data_folder_of_another_size_is_rejected() {
        let dir = std::env::temp_dir().join(format!("trecho-count-{}", std::process::id()));
        for id in 0..3 {
            let shard = dir.join(format!("shard-{id}"));
            std::fs::create_dir_all(&shard).unwrap();
            std::fs::write(shard.join("meta.json"), "{}").unwrap();
        }

        let error = check_shard_count(&dir, 4).unwrap_err().to_string();

        assert!(error.contains("holds a cluster of 3 shards"), "{error}");
        assert!(check_shard_count(&dir, 3).is_ok());
        assert!(!dir.join("shard-3").exists());
        assert!(check_shard_count(&dir.join("missing"), 4).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
