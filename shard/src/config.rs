//! Shard configuration: defaults, a TOML file, `TRECHO_*` variables and
//! command line flags, in rising precedence.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use trecho_common::shardmap::{ShardInfo, ShardMap};
use trecho_common::time::Date;

/// Everything a shard needs to start.
#[derive(Debug, Clone, Deserialize)]
pub struct ShardConfig {
    /// This shard's id in the shard map.
    pub id: u32,
    /// Address of the internal protocol listener, `host:port`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Directory of `meta.json`, `segments.json` and `journal.log`. Empty
    /// means `./data/shard-<id>`.
    #[serde(default)]
    pub data_dir: PathBuf,
    /// Shard map as a spec string, `ID=HOST:PORT@FIRST-LAST;...`.
    #[serde(default)]
    pub shards: Option<String>,
    /// Shard map as `[[shard_map]]` tables of a config file.
    #[serde(default)]
    pub shard_map: Option<Vec<ShardInfo>>,
    /// Version of the shard map.
    #[serde(default = "default_map_version")]
    pub map_version: u64,
    /// Schedule file written by the importer; `None` uses the built-in
    /// schedule.
    #[serde(default)]
    pub schedule: Option<PathBuf>,
    /// First day seeded on the first start; `None` is today in UTC.
    #[serde(default)]
    pub start_date: Option<Date>,
    /// Number of days seeded on the first start.
    #[serde(default = "default_days")]
    pub days: u32,
    /// Longest time, in milliseconds, that a prepared reservation waits for
    /// the outcome before its shard asks the home shard. Deadlines sent by
    /// the router are capped at this.
    #[serde(default = "default_prepare_timeout_ms")]
    pub prepare_timeout_ms: u64,
    /// Most client connections served at once; more are closed on accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_listen() -> String {
    "127.0.0.1:7001".to_owned()
}

fn default_map_version() -> u64 {
    1
}

fn default_days() -> u32 {
    30
}

fn default_prepare_timeout_ms() -> u64 {
    5000
}

fn default_max_connections() -> usize {
    1024
}

impl ShardConfig {
    /// Builds a configuration with every default, for shard `id` keeping
    /// its data in `data_dir`. The shard map must still be set.
    pub fn new(id: u32, data_dir: PathBuf) -> Self {
        ShardConfig {
            id,
            listen: default_listen(),
            data_dir,
            shards: None,
            shard_map: None,
            map_version: default_map_version(),
            schedule: None,
            start_date: None,
            days: default_days(),
            prepare_timeout_ms: default_prepare_timeout_ms(),
            max_connections: default_max_connections(),
        }
    }

    /// Loads the configuration from `args.config`, `TRECHO_*` variables
    /// and the flags in `args`.
    ///
    /// # Errors
    ///
    /// Returns an error when a source cannot be read or a value is invalid.
    pub fn load(args: &Args) -> Result<Self, trecho_common::config::Error> {
        let overrides = args.overrides();
        let mut config: ShardConfig =
            trecho_common::config::load(args.config.as_deref(), &overrides)?;
        if config.data_dir.as_os_str().is_empty() {
            config.data_dir = config.default_data_dir();
        }
        Ok(config)
    }

    /// Builds and checks the shard map from `shards` or `shard_map`.
    ///
    /// # Errors
    ///
    /// Returns an error when neither is set or the map does not cover every
    /// slot exactly once.
    pub fn shard_map(&self) -> Result<ShardMap, trecho_common::config::Error> {
        trecho_common::config::shard_map(
            self.map_version,
            self.shards.as_deref(),
            self.shard_map.as_deref(),
        )
    }

    /// Returns the data directory, `./data/shard-<id>` when none is set.
    pub fn data_dir(&self) -> PathBuf {
        if self.data_dir.as_os_str().is_empty() {
            self.default_data_dir()
        } else {
            self.data_dir.clone()
        }
    }

    /// Returns the first seeded day.
    pub fn start_date(&self) -> Date {
        self.start_date.unwrap_or_else(Date::today_utc)
    }

    fn default_data_dir(&self) -> PathBuf {
        Path::new("data").join(format!("shard-{}", self.id))
    }
}

/// Command line flags of `trecho-shard`; each overrides the same key of the
/// config file and of `TRECHO_<KEY>`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This shard's id in the shard map.
    #[arg(long)]
    pub id: Option<u32>,
    /// Internal protocol address to listen on, HOST:PORT [default: 127.0.0.1:7001].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory [default: ./data/shard-<ID>].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Shard map, ID=HOST:PORT@FIRST-LAST[,FIRST-LAST] entries separated by ';'.
    #[arg(long, value_name = "SPEC")]
    pub shards: Option<String>,
    /// Version of the shard map [default: 1].
    #[arg(long, value_name = "N")]
    pub map_version: Option<u64>,
    /// Schedule JSON file [default: the built-in schedule].
    #[arg(long, value_name = "FILE")]
    pub schedule: Option<PathBuf>,
    /// First day seeded on the first start, YYYY-MM-DD [default: today in UTC].
    #[arg(long, value_name = "DATE")]
    pub start_date: Option<String>,
    /// Number of days seeded on the first start [default: 30].
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,
    /// Longest wait of a prepared reservation for its outcome, in milliseconds [default: 5000].
    #[arg(long, value_name = "MS")]
    pub prepare_timeout_ms: Option<u64>,
    /// Most connections served at once [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
}

impl Args {
    fn overrides(&self) -> Vec<(&'static str, Option<String>)> {
        let text = |path: &Option<PathBuf>| path.as_ref().map(|p| p.display().to_string());
        vec![
            ("id", self.id.map(|v| v.to_string())),
            ("listen", self.listen.clone()),
            ("data_dir", text(&self.data_dir)),
            ("shards", self.shards.clone()),
            ("map_version", self.map_version.map(|v| v.to_string())),
            ("schedule", text(&self.schedule)),
            ("start_date", self.start_date.clone()),
            ("days", self.days.map(|v| v.to_string())),
            (
                "prepare_timeout_ms",
                self.prepare_timeout_ms.map(|v| v.to_string()),
            ),
            (
                "max_connections",
                self.max_connections.map(|v| v.to_string()),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_fill_every_key_and_defaults_apply() {
        let args = Args {
            id: Some(2),
            shards: Some("2=127.0.0.1:1@0-16383".into()),
            start_date: Some("2026-12-20".into()),
            ..Args::default()
        };
        let config = ShardConfig::load(&args).unwrap();
        assert_eq!(config.id, 2);
        assert_eq!(config.listen, "127.0.0.1:7001");
        assert_eq!(config.data_dir, Path::new("data").join("shard-2"));
        assert_eq!(config.days, 30);
        assert_eq!(config.prepare_timeout_ms, 5000);
        assert_eq!(config.start_date, Date::from_ymd(2026, 12, 20));
        assert_eq!(config.shard_map().unwrap().shards.len(), 1);
    }
}
