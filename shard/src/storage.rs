//! The data directory: `LOCK` (held by the shard process that serves it,
//! see [`lock`]), `meta.json` (whose directory it is), `segments.json` (the
//! seeded segments) and `journal.log` (see [`crate::journal`]).
//!
//! `meta.json` and `segments.json` are written once, each to a temporary
//! file that is synced, renamed into place, and made durable by syncing the
//! directory, so a crash leaves either the whole file or none.

use std::borrow::Cow;
use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use trecho_common::schedule::{Schedule, SegmentSpec};
use trecho_common::shardmap::{merged, ShardMap};
use trecho_common::time::Date;

use crate::catalog::{self, Catalog};

mod lock;

pub(crate) use lock::DataDirLock;

/// Name of the segments file in the data directory.
pub(crate) const SEGMENTS_FILE: &str = "segments.json";
/// Name of the identity file in the data directory.
pub(crate) const META_FILE: &str = "meta.json";
/// Name of the journal in the data directory.
pub(crate) const JOURNAL_FILE: &str = "journal.log";

/// Errors while opening the data directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not what trecho wrote.
    #[error("{path} is corrupt: {reason}; restore it from a backup or remove the data directory to seed a new shard")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The directory belongs to another shard.
    #[error("data directory {path} belongs to shard {found}, not shard {expected}; give each shard its own --data-dir")]
    WrongShard {
        /// The directory.
        path: PathBuf,
        /// The id in its `meta.json`.
        found: u32,
        /// This shard's id.
        expected: u32,
    },
    /// Another shard process holds the directory's lock.
    #[error(
        "data directory {} is in use by another shard process{}; stop that process before starting this shard",
        path.display(),
        holder_pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The process id written by the holder, when it could be read.
        holder_pid: Option<u32>,
    },
    /// The shard map gives this shard other slots than those it was seeded
    /// with.
    #[error(
        "data directory {} of shard {shard_id} was seeded with slots {} but the shard map gives it slots {}; start the shard with the shard map it was first started with: slots change shards only through `trecho admin` moves, which the journal records",
        path.display(),
        slot_list(seeded),
        slot_list(configured)
    )]
    SlotsChanged {
        /// The directory.
        path: PathBuf,
        /// This shard's id.
        shard_id: u32,
        /// The inclusive slot ranges in its `meta.json`.
        seeded: Vec<[u16; 2]>,
        /// The inclusive slot ranges the shard map gives this shard.
        configured: Vec<[u16; 2]>,
    },
    /// The schedule could not be loaded.
    #[error(transparent)]
    Schedule(#[from] trecho_common::schedule::Error),
    /// The schedule's segments do not fit the catalog.
    #[error("invalid segments: {0}")]
    Catalog(#[from] catalog::Error),
}

/// Formats slot ranges as a `--shards` spec writes them: `0-99,200-299`.
fn slot_list(ranges: &[[u16; 2]]) -> String {
    if ranges.is_empty() {
        return "none".to_owned();
    }
    let ranges: Vec<String> = ranges
        .iter()
        .map(|[first, last]| format!("{first}-{last}"))
        .collect();
    ranges.join(",")
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Identity of a data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    shard_id: u32,
    map_version: u64,
    slots: Vec<[u16; 2]>,
}

/// Where to seed segments from on the first start.
#[derive(Debug, Clone)]
pub(crate) struct SeedSource {
    /// Schedule file, or `None` for the built-in schedule.
    pub schedule: Option<PathBuf>,
    /// First day.
    pub start: Date,
    /// Number of days.
    pub days: u32,
}

/// Opens the data directory of shard `shard_id`: locks it, checks or writes
/// its identity, then loads the segments or seeds them from `seed`.
///
/// The returned lock keeps other shard processes out of `dir`, so the
/// caller holds it for as long as it serves the directory.
///
/// # Errors
///
/// Returns [`Error::Locked`] when another shard process serves `dir`,
/// [`Error::WrongShard`] or [`Error::SlotsChanged`] when `meta.json` does
/// not match `shard_id` and `map`, and other variants when a file or the
/// schedule cannot be read or written.
pub(crate) fn open(
    dir: &Path,
    shard_id: u32,
    map: &ShardMap,
    seed: &SeedSource,
) -> Result<(DataDirLock, Catalog), Error> {
    let path = dir.join(SEGMENTS_FILE);
    // A directory without segments is about to be seeded, so the schedule
    // is loaded first and an invalid one leaves no directory behind.
    // Whether segments exist is checked again once the lock is held.
    let mut schedule = if path.exists() {
        None
    } else {
        Some(load_schedule(seed)?)
    };
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let lock = DataDirLock::acquire(dir)?;
    let seeded = path.exists();
    check_meta(dir, shard_id, map, seeded)?;
    if seeded {
        let started = std::time::Instant::now();
        let catalog = load_segments(&path)?;
        tracing::info!(
            shard.id = shard_id,
            segments = catalog.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "segments loaded"
        );
        return Ok((lock, catalog));
    }
    let started = std::time::Instant::now();
    let schedule = match schedule.take() {
        Some(schedule) => schedule,
        None => load_schedule(seed)?,
    };
    let catalog = seed_catalog(shard_id, map, &schedule, seed)?;
    write_atomically(dir, SEGMENTS_FILE, |out| write_segments(&catalog, out))?;
    tracing::info!(
        shard.id = shard_id,
        segments = catalog.len(),
        start_date = %seed.start,
        days = seed.days,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "segments seeded"
    );
    Ok((lock, catalog))
}

/// Checks `meta.json` against this shard, or writes it for a directory
/// that is not `seeded` yet. A directory whose first seeding never finished
/// contains no data for an older `meta.json` to protect.
fn check_meta(dir: &Path, shard_id: u32, map: &ShardMap, seeded: bool) -> Result<(), Error> {
    let slots = map
        .shards
        .iter()
        .find(|shard| shard.id == shard_id)
        .map(|shard| shard.slots.clone())
        .unwrap_or_default();
    let path = dir.join(META_FILE);
    if !seeded || !path.exists() {
        let meta = Meta {
            shard_id,
            map_version: map.version,
            slots,
        };
        return write_atomically(dir, META_FILE, |out| {
            serde_json::to_writer_pretty(&mut *out, &meta).map_err(std::io::Error::from)?;
            out.write_all(b"\n")
        });
    }
    let text = fs::read(&path).map_err(io_error(&path))?;
    let meta: Meta = serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if meta.shard_id != shard_id {
        return Err(Error::WrongShard {
            path: dir.to_owned(),
            found: meta.shard_id,
            expected: shard_id,
        });
    }
    // Moves change a shard's slots through its journal, never through the
    // configured map: a map giving this directory other seeded slots would
    // report segments it lacks as not found and hide the ones it has. A new
    // map version with the same slots is accepted.
    if merged(&meta.slots) != merged(&slots) {
        return Err(Error::SlotsChanged {
            path: dir.to_owned(),
            shard_id,
            seeded: meta.slots,
            configured: slots,
        });
    }
    Ok(())
}

/// Builds the catalog of the segments whose slots `shard_id` owns, one day
/// at a time so the whole schedule's segments never sit in memory at once.
fn seed_catalog(
    shard_id: u32,
    map: &ShardMap,
    schedule: &Schedule,
    seed: &SeedSource,
) -> Result<Catalog, Error> {
    let owned = (0..seed.days)
        .flat_map(|day| schedule.segments(seed.start.add_days(day as i32), 1))
        .filter(|spec| map.owns(shard_id, trecho_common::hashing::slot(&spec.id)));
    Ok(Catalog::build(owned)?)
}

fn load_schedule(seed: &SeedSource) -> Result<Schedule, Error> {
    match &seed.schedule {
        Some(path) => Ok(Schedule::load(path)?),
        None => Ok(Schedule::builtin()),
    }
}

/// One segment as `segments.json` stores it.
#[derive(Debug, Serialize, Deserialize)]
struct Row<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    flight: Cow<'a, str>,
    #[serde(borrow)]
    origin: Cow<'a, str>,
    #[serde(borrow)]
    destination: Cow<'a, str>,
    departure: i64,
    arrival: i64,
    departure_offset_minutes: i32,
    arrival_offset_minutes: i32,
    capacity: u32,
}

impl Row<'_> {
    fn to_spec(&self) -> SegmentSpec {
        SegmentSpec {
            id: self.id.to_string(),
            flight: self.flight.to_string(),
            origin: self.origin.to_string(),
            destination: self.destination.to_string(),
            departure: self.departure,
            arrival: self.arrival,
            departure_offset_minutes: self.departure_offset_minutes,
            arrival_offset_minutes: self.arrival_offset_minutes,
            capacity: self.capacity,
        }
    }
}

/// Writes the catalog as a JSON array, one segment per line.
fn write_segments(catalog: &Catalog, out: &mut BufWriter<File>) -> std::io::Result<()> {
    out.write_all(b"[")?;
    for (position, (index, _)) in catalog.entries().enumerate() {
        out.write_all(if position == 0 { b"\n" } else { b",\n" })?;
        let spec = catalog.spec(index);
        let row = Row {
            id: Cow::Borrowed(&spec.id),
            flight: Cow::Borrowed(&spec.flight),
            origin: Cow::Borrowed(&spec.origin),
            destination: Cow::Borrowed(&spec.destination),
            departure: spec.departure,
            arrival: spec.arrival,
            departure_offset_minutes: spec.departure_offset_minutes,
            arrival_offset_minutes: spec.arrival_offset_minutes,
            capacity: spec.capacity,
        };
        serde_json::to_writer(&mut *out, &row).map_err(std::io::Error::from)?;
    }
    out.write_all(b"\n]\n")
}

/// Reads `segments.json` row by row straight into a catalog.
fn load_segments(path: &Path) -> Result<Catalog, Error> {
    let bytes = fs::read(path).map_err(io_error(path))?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let catalog = serde::Deserializer::deserialize_seq(&mut deserializer, CatalogVisitor)
        .map_err(|e| corrupt(e.to_string()))?;
    deserializer.end().map_err(|e| corrupt(e.to_string()))?;
    catalog.finish().map_err(|e| corrupt(e.to_string()))
}

struct CatalogVisitor;

impl<'de> Visitor<'de> for CatalogVisitor {
    type Value = Catalog;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an array of segments")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Catalog, A::Error> {
        let mut catalog = Catalog::default();
        while let Some(row) = seq.next_element::<Row<'de>>()? {
            catalog
                .push(&row.to_spec())
                .map_err(serde::de::Error::custom)?;
        }
        Ok(catalog)
    }
}

/// Writes `name` in `dir` through a synced temporary file and a rename,
/// then syncs the directory so the rename itself is durable.
fn write_atomically(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let final_path = dir.join(name);
    let temporary = dir.join(format!("{name}.tmp"));
    let file = File::create(&temporary).map_err(io_error(&temporary))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write(&mut out).map_err(io_error(&temporary))?;
    let file = out
        .into_inner()
        .map_err(|e| io_error(&temporary)(e.into_error()))?;
    file.sync_all().map_err(io_error(&temporary))?;
    drop(file);
    fs::rename(&temporary, &final_path).map_err(io_error(&final_path))?;
    sync_dir(dir)
}

/// Makes renames and file creations in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests;
