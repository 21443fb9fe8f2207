//! Configuration loading shared by the router and the shard.
//!
//! Values come from, in rising precedence: defaults, a TOML file given with
//! `--config`, environment variables `TRECHO_<KEY>` (upper case), and command
//! line flags.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::shardmap::{ShardInfo, ShardMap};

/// Errors while loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file, an environment variable or a flag could not be read.
    #[error("invalid configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// The shard map is missing or invalid.
    #[error("invalid shard map: {0}")]
    ShardMap(#[from] crate::shardmap::Error),
    /// The shard map was given neither as `shards` nor as `shard_map`.
    #[error("no shard map: set `shards` (for example TRECHO_SHARDS=\"0=127.0.0.1:7001@0-16383\") or a [[shard_map]] table in the config file; a router can take `seeds` instead, the addresses of shards to ask for the map")]
    NoShardMap,
}

/// Loads `T` from defaults, `file`, `TRECHO_*` variables and `overrides`
/// (key, value) pairs taken from command line flags.
///
/// # Errors
///
/// Returns an error when a source cannot be read or a value has the wrong
/// type.
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    overrides: &[(&str, Option<String>)],
) -> Result<T, Error> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml));
    }
    builder = builder.add_source(
        config::Environment::with_prefix("TRECHO")
            .try_parsing(true)
            .ignore_empty(true),
    );
    for (key, value) in overrides {
        if let Some(value) = value {
            builder = builder.set_override(*key, value.as_str())?;
        }
    }
    Ok(builder.build()?.try_deserialize()?)
}

/// Builds the shard map from a `shards` spec string or a list of entries
/// from a config file; the spec wins when both are given.
///
/// # Errors
///
/// Returns [`Error::NoShardMap`] when neither is given, or the map's own
/// error when it does not cover every slot exactly once.
pub fn shard_map(
    version: u64,
    spec: Option<&str>,
    entries: Option<&[ShardInfo]>,
) -> Result<ShardMap, Error> {
    match (spec, entries) {
        (Some(spec), _) => Ok(ShardMap::parse_spec(version, spec)?),
        (None, Some(entries)) => Ok(ShardMap::new(version, entries.to_vec())?),
        (None, None) => Err(Error::NoShardMap),
    }
}
