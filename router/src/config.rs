//! Router settings: [`RouterConfig`] and the command line flags in [`Args`].
//!
//! Values come from, in rising precedence: defaults, the TOML file given
//! with `--config`, `TRECHO_<KEY>` environment variables (for example
//! `TRECHO_MAX_IN_FLIGHT`), and flags. The shard map comes from the shards
//! themselves when `seeds` lists their addresses. Otherwise it is a
//! `shards` spec string or `[[shard_map]]` tables in the file, and the spec
//! wins.
//!
//! The admin token is kept in an [`AdminToken`], whose `Debug` form hides
//! it, so neither [`RouterConfig`] nor [`Args`] shows it when printed.

use std::path::PathBuf;

use serde::Deserialize;
use trecho_common::config::{self as common_config, Error};
use trecho_common::protocol::methods::AdminToken;
use trecho_common::protocol::{DEFAULT_MAX_LINE, DEFAULT_ROUTER_ADDR};
use trecho_common::shardmap::{ShardInfo, ShardMap};

/// Smallest `max_line` accepted: room for any valid single request.
const MIN_MAX_LINE: usize = 1024;
/// The environment variable of the admin token, read as exact text.
pub(crate) const ADMIN_TOKEN_VARIABLE: &str = "TRECHO_ADMIN_TOKEN";

/// Everything the router reads from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RouterConfig {
    /// Client address, `host:port`.
    pub listen: String,
    /// Shard map as `ID=HOST:PORT@FIRST-LAST[,FIRST-LAST...]` entries
    /// separated by `;`.
    pub shards: Option<String>,
    /// Shard map entries, from `[[shard_map]]` tables.
    pub shard_map: Option<Vec<ShardInfo>>,
    /// Addresses of shards to ask for the shard map, `HOST:PORT` entries
    /// separated by `,`; used instead of `shards` and `shard_map`.
    pub seeds: Option<String>,
    /// Version of the shard map.
    pub map_version: u64,
    /// Schedule file; the built-in schedule when absent. Shards must use the
    /// same schedule, or `routes.find` offers segments they do not have.
    pub schedule: Option<PathBuf>,
    /// Longest request line, in bytes, before the newline.
    pub max_line: usize,
    /// Client connections served at once; more get one `overloaded` error
    /// and are closed.
    pub max_connections: usize,
    /// Requests of one connection in progress at once; the router stops
    /// reading that connection until one finishes.
    pub max_in_flight: usize,
    /// Requests that ask every shard (searches, route searches, booking
    /// lists) in progress at once across all connections; more get
    /// `overloaded`.
    pub max_fanouts: usize,
    /// Time allowed for each shard request, in milliseconds.
    pub request_timeout_ms: u64,
    /// A client connection that sends nothing and waits for nothing this
    /// long is closed, in milliseconds; 0 keeps idle connections open.
    pub idle_timeout_ms: u64,
    /// Time a participant keeps prepared seats before it asks the home
    /// shard for the outcome, in milliseconds.
    pub prepare_timeout_ms: u64,
    /// Interval in milliseconds between periodic refreshes of the shard map
    /// from the shards, besides the refreshes that rejections trigger. 0
    /// turns the periodic refreshes off.
    pub map_refresh_ms: u64,
    /// Secret that requests to the `admin.*` methods must carry. Without
    /// it the methods are off.
    pub admin_token: Option<AdminToken>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            listen: DEFAULT_ROUTER_ADDR.to_owned(),
            shards: None,
            shard_map: None,
            seeds: None,
            map_version: 1,
            schedule: None,
            max_line: DEFAULT_MAX_LINE,
            max_connections: 10_000,
            max_in_flight: 1024,
            max_fanouts: 256,
            request_timeout_ms: 1000,
            idle_timeout_ms: 300_000,
            prepare_timeout_ms: 5000,
            map_refresh_ms: 5000,
            admin_token: None,
        }
    }
}

/// Command line flags of the router; each overrides the same key from the
/// environment and the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// TOML configuration file; TRECHO_* environment variables override it,
    /// and flags override both.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to accept clients on [default: 127.0.0.1:7878].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Shard map: ID=HOST:PORT@FIRST-LAST[,FIRST-LAST...] entries separated
    /// by ';', covering slots 0-16383 exactly once.
    #[arg(long, value_name = "SPEC", conflicts_with = "seeds")]
    pub shards: Option<String>,
    /// Shards to request the shard map from, as HOST:PORT entries separated
    /// by ','. One that responds is enough. Use instead of --shards.
    #[arg(long, value_name = "ADDRESSES")]
    pub seeds: Option<String>,
    /// Version of the shard map [default: 1].
    #[arg(long, value_name = "N")]
    pub map_version: Option<u64>,
    /// Schedule file, the same one the shards use [default: built-in].
    #[arg(long, value_name = "FILE")]
    pub schedule: Option<PathBuf>,
    /// Longest request line in bytes [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub max_line: Option<usize>,
    /// Client connections served at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Requests in progress per connection [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Searches and booking lists in progress across all connections
    /// [default: 256].
    #[arg(long, value_name = "N")]
    pub max_fanouts: Option<usize>,
    /// Time allowed for each shard request, in milliseconds [default: 1000].
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// Close client connections idle this long, in milliseconds; 0 never
    /// closes them [default: 300000].
    #[arg(long, value_name = "MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Time prepared seats wait for the decision, in milliseconds
    /// [default: 5000].
    #[arg(long, value_name = "MS")]
    pub prepare_timeout_ms: Option<u64>,
    /// Interval in milliseconds between refreshes of the shard map from the
    /// shards, so that searches reach shards that got slots from moves that
    /// other routers ran. 0 refreshes only when a shard rejects a request
    /// [default: 5000].
    #[arg(long, value_name = "MS")]
    pub map_refresh_ms: Option<u64>,
    /// Secret that turns the admin.* methods on and that they must carry.
    /// Other users of the machine can read command lines, so prefer
    /// TRECHO_ADMIN_TOKEN or admin_token in the config file [default: none,
    /// admin methods off].
    #[arg(long, value_name = "TOKEN", value_parser = parse_admin_token)]
    pub admin_token: Option<AdminToken>,
}

/// Wraps the `--admin-token` text.
fn parse_admin_token(text: &str) -> Result<AdminToken, String> {
    Ok(AdminToken(text.to_owned()))
}

impl RouterConfig {
    /// Loads the configuration from defaults, the `--config` file,
    /// `TRECHO_*` variables and the flags in `args`.
    ///
    /// # Errors
    ///
    /// Returns an error when a source cannot be read or a value has the
    /// wrong type.
    pub fn load(args: &Args) -> Result<Self, Error> {
        let overrides = [
            ("listen", args.listen.clone()),
            ("shards", args.shards.clone()),
            ("seeds", args.seeds.clone()),
            ("map_version", text(args.map_version)),
            (
                "schedule",
                args.schedule.as_ref().map(|p| p.display().to_string()),
            ),
            ("max_line", text(args.max_line)),
            ("max_connections", text(args.max_connections)),
            ("max_in_flight", text(args.max_in_flight)),
            ("max_fanouts", text(args.max_fanouts)),
            ("request_timeout_ms", text(args.request_timeout_ms)),
            ("idle_timeout_ms", text(args.idle_timeout_ms)),
            ("prepare_timeout_ms", text(args.prepare_timeout_ms)),
            ("map_refresh_ms", text(args.map_refresh_ms)),
            ("admin_token", admin_token(args)),
        ];
        common_config::load(args.config.as_deref(), &overrides)
    }

    /// Returns the addresses listed in `seeds`, or `None` when the map comes
    /// from `shards` or `shard_map`.
    ///
    /// # Errors
    ///
    /// Returns a message when `seeds` is given with a map, or lists nothing.
    pub fn seed_addresses(&self) -> Result<Option<Vec<String>>, String> {
        let Some(seeds) = &self.seeds else {
            return Ok(None);
        };
        if self.shards.is_some() || self.shard_map.is_some() {
            return Err(
                "give either seeds (the router asks those shards for the map) or a \
                 shard map (shards or [[shard_map]]), not both"
                    .to_owned(),
            );
        }
        let addresses: Vec<String> = seeds
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(str::to_owned)
            .collect();
        if addresses.is_empty() {
            return Err("seeds lists no address; give HOST:PORT of at least one shard".to_owned());
        }
        if let Some(bad) = addresses.iter().find(|address| !is_host_port(address)) {
            return Err(format!(
                "seed {bad:?} is not HOST:PORT; give each shard's internal address, such as \
                 shard-0:7001 or 127.0.0.1:7001"
            ));
        }
        if self.map_version != RouterConfig::default().map_version {
            return Err(
                "map_version applies to a map given with shards or [[shard_map]]; with seeds \
                 the router takes the version from the shards, so leave it out"
                    .to_owned(),
            );
        }
        Ok(Some(addresses))
    }

    /// Builds and checks the shard map.
    ///
    /// # Errors
    ///
    /// Returns an error when no map is given or it does not cover every slot
    /// exactly once.
    pub fn shard_map(&self) -> Result<ShardMap, Error> {
        common_config::shard_map(
            self.map_version,
            self.shards.as_deref(),
            self.shard_map.as_deref(),
        )
    }

    /// Checks that limits and timeouts are usable.
    ///
    /// # Errors
    ///
    /// Returns a message naming the key and its allowed range.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_line < MIN_MAX_LINE {
            return Err(format!(
                "max_line must be at least {MIN_MAX_LINE} bytes, got {}",
                self.max_line
            ));
        }
        let positive = [
            ("max_connections", self.max_connections as u64),
            ("max_in_flight", self.max_in_flight as u64),
            ("max_fanouts", self.max_fanouts as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("prepare_timeout_ms", self.prepare_timeout_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{key} must be at least 1, got 0"));
        }
        if let Some(token) = &self.admin_token {
            if token.0.trim().is_empty() {
                return Err(
                    "admin_token is empty; set it to a long random string, or leave it out to \
                     turn the admin methods off"
                        .to_owned(),
                );
            }
        }
        if u32::try_from(self.max_connections).is_err() {
            return Err(format!(
                "max_connections must be at most {}, got {}",
                u32::MAX,
                self.max_connections
            ));
        }
        Ok(())
    }
}

/// Returns whether `address` is a non-empty host, a colon and a port from
/// 1 to 65535.
pub(crate) fn is_host_port(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

/// Returns the admin token from `--admin-token`, else from the
/// environment, as exact text.
///
/// The loader's environment source parses numbers, which would turn a
/// token such as `007` into `7`. An override keeps the text as given.
fn admin_token(args: &Args) -> Option<String> {
    match &args.admin_token {
        Some(token) => Some(token.0.clone()),
        None => std::env::var(ADMIN_TOKEN_VARIABLE)
            .ok()
            .filter(|token| !token.is_empty()),
    }
}

fn text<T: ToString>(value: Option<T>) -> Option<String> {
    value.map(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_protocol() {
        let config = RouterConfig::default();
        assert_eq!(config.listen, "127.0.0.1:7878");
        assert_eq!(config.max_line, 65_536);
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.max_in_flight, 1024);
        assert_eq!(config.request_timeout_ms, 1000);
        assert_eq!(config.prepare_timeout_ms, 5000);
        assert_eq!(config.map_version, 1);
        assert_eq!(config.map_refresh_ms, 5000);
        assert_eq!(config.admin_token, None);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("router.toml");
        std::fs::write(
            &file,
            "max_in_flight = 7\nmap_version = 3\n[[shard_map]]\nid = 0\naddress = \"127.0.0.1:1\"\nslots = [[0, 16383]]\n",
        )
        .unwrap();
        let args = Args {
            config: Some(file),
            max_line: Some(4096),
            ..Args::default()
        };
        let config = RouterConfig::load(&args).unwrap();
        assert_eq!(config.max_in_flight, 7);
        assert_eq!(config.max_line, 4096);
        let map = config.shard_map().unwrap();
        assert_eq!(map.version, 3);
        assert_eq!(map.owner_of_slot(16383).address, "127.0.0.1:1");
    }

    #[test]
    fn invalid_map_and_limits_are_rejected() {
        let config = RouterConfig {
            shards: Some("0=127.0.0.1:1@0-100".into()),
            ..RouterConfig::default()
        };
        assert!(config.shard_map().is_err());
        assert!(RouterConfig::default().shard_map().is_err());
        let config = RouterConfig {
            max_in_flight: 0,
            ..RouterConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("max_in_flight"));
        let config = RouterConfig {
            max_line: 10,
            ..RouterConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("max_line"));
    }

    #[test]
    fn admin_token_flag_stays_text_and_hidden() {
        let args = Args {
            admin_token: Some(AdminToken("007-secret".into())),
            ..Args::default()
        };
        let config = RouterConfig::load(&args).unwrap();
        assert_eq!(config.admin_token, Some(AdminToken("007-secret".into())));
        assert!(!format!("{config:?}").contains("007-secret"));
        assert!(!format!("{args:?}").contains("007-secret"));
        let numeric = Args {
            admin_token: Some(AdminToken("007".into())),
            ..Args::default()
        };
        let config = RouterConfig::load(&numeric).unwrap();
        assert_eq!(config.admin_token, Some(AdminToken("007".into())));
    }

    #[test]
    fn command_line_sets_admin_token_and_refresh() {
        use clap::Parser;

        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = Cli::try_parse_from([
            "trecho-router",
            "--admin-token",
            "007",
            "--map-refresh-ms",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.args.admin_token, Some(AdminToken("007".into())));
        let config = RouterConfig::load(&cli.args).unwrap();
        assert_eq!(config.map_refresh_ms, 0);
        assert_eq!(config.admin_token, Some(AdminToken("007".into())));
    }

    #[test]
    fn admin_token_from_file_and_empty_token_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("router.toml");
        std::fs::write(&file, "admin_token = \"from-file\"\n").unwrap();
        let args = Args {
            config: Some(file),
            ..Args::default()
        };
        let config = RouterConfig::load(&args).unwrap();
        if std::env::var_os(ADMIN_TOKEN_VARIABLE).is_none() {
            assert_eq!(config.admin_token, Some(AdminToken("from-file".into())));
        }
        let empty = RouterConfig {
            admin_token: Some(AdminToken(" ".into())),
            ..RouterConfig::default()
        };
        assert!(empty
            .validate()
            .unwrap_err()
            .contains("admin_token is empty"));
        assert_eq!(RouterConfig::default().admin_token, None);
    }

    #[test]
    fn seeds_parse_and_exclude_map() {
        let config = RouterConfig {
            seeds: Some("shard-0:7001, shard-1:7001,".into()),
            ..RouterConfig::default()
        };
        assert_eq!(
            config.seed_addresses().unwrap(),
            Some(vec!["shard-0:7001".to_owned(), "shard-1:7001".to_owned()])
        );
        let both = RouterConfig {
            shards: Some("0=127.0.0.1:1@0-16383".into()),
            ..config
        };
        assert!(both.seed_addresses().unwrap_err().contains("not both"));
        let empty = RouterConfig {
            seeds: Some(" , ".into()),
            ..RouterConfig::default()
        };
        assert!(empty.seed_addresses().unwrap_err().contains("no address"));
        for bad in [
            "127.0.0.1",
            "http://x:y",
            "shard-0:0",
            ":7001",
            "shard-0:70000",
        ] {
            let config = RouterConfig {
                seeds: Some(bad.into()),
                ..RouterConfig::default()
            };
            let error = config.seed_addresses().unwrap_err();
            assert!(error.contains("not HOST:PORT"), "{bad}: {error}");
        }
        let versioned = RouterConfig {
            seeds: Some("shard-0:7001".into()),
            map_version: 4,
            ..RouterConfig::default()
        };
        assert!(versioned
            .seed_addresses()
            .unwrap_err()
            .contains("map_version"));
        assert_eq!(RouterConfig::default().seed_addresses().unwrap(), None);
    }
}
