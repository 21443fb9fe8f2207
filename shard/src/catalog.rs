//! The segments a shard owns, kept compact: a few million fit in memory.
//!
//! Each segment is one fixed-size [`SegmentEntry`] in a `Vec` sorted by
//! departure, then id, so an index into it is also a sort key. Airport codes
//! and flight numbers are interned, and ids are looked up through a hash map
//! from (flight, local date) to the entry's index, so no segment owns a
//! string.

use rustc_hash::FxHashMap;
use trecho_common::hashing::slot;
use trecho_common::schedule::SegmentSpec;
use trecho_common::time::{format_rfc3339, Date};
use trecho_common::types::Segment;

/// Index of a segment in the [`Catalog`].
pub(crate) type SegmentIndex = u32;

/// One segment in 40 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentEntry {
    /// Departure, Unix seconds.
    pub departure: i64,
    /// Interned flight number.
    pub flight: u32,
    /// Local departure date at the origin, days since 1970-01-01.
    pub date: i32,
    /// Block time, in seconds.
    pub duration: u32,
    /// Seats on the aircraft.
    pub capacity: u32,
    /// Seats counted by prepared or committed reservations.
    pub taken: u32,
    /// Interned origin code.
    pub origin: u16,
    /// Interned destination code.
    pub destination: u16,
    /// Origin's UTC offset, minutes east.
    pub departure_offset: i16,
    /// Destination's UTC offset, minutes east.
    pub arrival_offset: i16,
    /// `slot(id)`, kept so ownership checks need no hashing.
    pub slot: u16,
}

impl SegmentEntry {
    /// Returns the seats not taken.
    pub fn seats_left(&self) -> u32 {
        self.capacity.saturating_sub(self.taken)
    }

    /// Returns the arrival, Unix seconds.
    pub fn arrival(&self) -> i64 {
        self.departure + i64::from(self.duration)
    }
}

/// Errors while building a catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A segment id is not its flight number followed by `-YYYY-MM-DD`.
    #[error("segment id {id:?} is not flight {flight} followed by -YYYY-MM-DD")]
    MalformedId {
        /// The id.
        id: String,
        /// The flight number given with it.
        flight: String,
    },
    /// A field does not fit the compact form.
    #[error("segment {id}: {reason}")]
    OutOfRange {
        /// The segment id.
        id: String,
        /// What did not fit.
        reason: &'static str,
    },
    /// Two segments share an id.
    #[error("segment {0} is listed twice")]
    Duplicate(String),
    /// More distinct airports than the compact form can number.
    #[error("more than 65535 distinct airports")]
    TooManyAirports,
}

/// Strings numbered in the order first seen.
#[derive(Debug, Default)]
struct Interner {
    names: Vec<Box<str>>,
    numbers: FxHashMap<Box<str>, u32>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&number) = self.numbers.get(name) {
            return number;
        }
        let number = self.names.len() as u32;
        self.names.push(name.into());
        self.numbers.insert(name.into(), number);
        number
    }

    fn number(&self, name: &str) -> Option<u32> {
        self.numbers.get(name).copied()
    }

    fn name(&self, number: u32) -> &str {
        self.names.get(number as usize).map_or("", |name| name)
    }
}

/// Every segment of the shard, with its seat counts and search indexes.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    entries: Vec<SegmentEntry>,
    flights: Interner,
    airports: Interner,
    /// `key(flight, date)` to index.
    by_key: FxHashMap<u64, SegmentIndex>,
    /// Per origin airport, indexes in departure order.
    by_origin: Vec<Vec<SegmentIndex>>,
    /// Per destination airport, indexes in departure order.
    by_destination: Vec<Vec<SegmentIndex>>,
}

fn key(flight: u32, date: i32) -> u64 {
    (u64::from(flight) << 32) | u64::from(date as u32)
}

/// Splits `AD4521-2026-12-20` into `AD4521` and its date.
fn split_id(id: &str) -> Option<(&str, Date)> {
    if id.len() < 12 || !id.is_char_boundary(id.len() - 11) {
        return None;
    }
    let (flight, date) = id.split_at(id.len() - 11);
    let date = date.strip_prefix('-')?;
    Some((flight, Date::parse(date).ok()?))
}

/// Filters of a search.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SearchFilter<'a> {
    pub origin: Option<&'a str>,
    pub destination: Option<&'a str>,
    pub date: Option<Date>,
}

/// Earliest and latest UTC offsets in use, in minutes (UTC-12 to UTC+14).
const MIN_OFFSET_MINUTES: i32 = -12 * 60;
const MAX_OFFSET_MINUTES: i32 = 14 * 60;

impl Catalog {
    /// Builds a catalog from `specs`, in any order.
    pub fn build(specs: impl IntoIterator<Item = SegmentSpec>) -> Result<Self, Error> {
        let mut catalog = Catalog::default();
        for spec in specs {
            catalog.push(&spec)?;
        }
        catalog.finish()
    }

    /// Adds one segment; [`Catalog::finish`] must follow the last one.
    pub fn push(&mut self, spec: &SegmentSpec) -> Result<(), Error> {
        let entry = self.compact(spec)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Sorts the segments and builds the lookups.
    pub fn finish(mut self) -> Result<Self, Error> {
        self.index()?;
        self.entries.shrink_to_fit();
        Ok(self)
    }

    fn compact(&mut self, spec: &SegmentSpec) -> Result<SegmentEntry, Error> {
        let malformed = || Error::MalformedId {
            id: spec.id.clone(),
            flight: spec.flight.clone(),
        };
        let (flight, date) = split_id(&spec.id).ok_or_else(malformed)?;
        if flight != spec.flight {
            return Err(malformed());
        }
        let out_of_range = |reason| Error::OutOfRange {
            id: spec.id.clone(),
            reason,
        };
        let duration = u32::try_from(spec.arrival - spec.departure)
            .map_err(|_| out_of_range("arrival is before departure"))?;
        let offset = |minutes: i32| {
            i16::try_from(minutes).map_err(|_| out_of_range("UTC offset out of range"))
        };
        let origin = self.airport(&spec.origin)?;
        let destination = self.airport(&spec.destination)?;
        Ok(SegmentEntry {
            departure: spec.departure,
            flight: self.flights.intern(flight),
            date: date.days(),
            duration,
            capacity: spec.capacity,
            taken: 0,
            origin,
            destination,
            departure_offset: offset(spec.departure_offset_minutes)?,
            arrival_offset: offset(spec.arrival_offset_minutes)?,
            slot: slot(&spec.id),
        })
    }

    fn airport(&mut self, code: &str) -> Result<u16, Error> {
        u16::try_from(self.airports.intern(code)).map_err(|_| Error::TooManyAirports)
    }

    /// Sorts the entries by departure then id, and builds the lookups.
    /// Returns, for every entry, its index after the sort.
    fn index(&mut self) -> Result<Vec<SegmentIndex>, Error> {
        let flights = &self.flights;
        let entries = &self.entries;
        let mut order: Vec<SegmentIndex> = (0..entries.len() as SegmentIndex).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&entries[a as usize], &entries[b as usize]);
            (a.departure, flights.name(a.flight), a.date).cmp(&(
                b.departure,
                flights.name(b.flight),
                b.date,
            ))
        });
        let mut moved_to = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            moved_to[old as usize] = new as SegmentIndex;
        }
        self.entries = order.iter().map(|&old| entries[old as usize]).collect();
        let airports = self.airports.names.len();
        self.by_origin = vec![Vec::new(); airports];
        self.by_destination = vec![Vec::new(); airports];
        self.by_key.clear();
        self.by_key.reserve(self.entries.len());
        for (index, entry) in self.entries.iter().enumerate() {
            let index = index as SegmentIndex;
            if self
                .by_key
                .insert(key(entry.flight, entry.date), index)
                .is_some()
            {
                return Err(Error::Duplicate(self.id_of(entry)));
            }
            self.by_origin[usize::from(entry.origin)].push(index);
            self.by_destination[usize::from(entry.destination)].push(index);
        }
        Ok(moved_to)
    }

    /// Adds the segments of `specs` that the catalog lacks, keeping the
    /// order by departure. Returns the new index of every entry that was
    /// there before, or `None` when no segment was new and nothing moved.
    /// Segments already present keep their entry, seat counts included.
    pub fn add(&mut self, specs: &[SegmentSpec]) -> Result<Option<Vec<SegmentIndex>>, Error> {
        let before = self.entries.len();
        for spec in specs {
            if self.find(&spec.id).is_none() {
                let entry = self.compact(spec)?;
                self.entries.push(entry);
            }
        }
        if self.entries.len() == before {
            return Ok(None);
        }
        let mut moved_to = self.index()?;
        moved_to.truncate(before);
        Ok(Some(moved_to))
    }

    /// Returns the number of segments.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns the index of segment `id`.
    pub fn find(&self, id: &str) -> Option<SegmentIndex> {
        let (flight, date) = split_id(id)?;
        let flight = self.flights.number(flight)?;
        self.by_key.get(&key(flight, date.days())).copied()
    }

    /// Returns the entry at `index`.
    pub fn entry(&self, index: SegmentIndex) -> &SegmentEntry {
        &self.entries[index as usize]
    }

    /// Returns the entry at `index` for a seat change.
    pub fn entry_mut(&mut self, index: SegmentIndex) -> &mut SegmentEntry {
        &mut self.entries[index as usize]
    }

    /// Iterates over every entry in departure order.
    pub fn entries(&self) -> impl Iterator<Item = (SegmentIndex, &SegmentEntry)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(index, entry)| (index as SegmentIndex, entry))
    }

    /// Returns the id text of `entry`.
    pub fn id_of(&self, entry: &SegmentEntry) -> String {
        format!(
            "{}-{}",
            self.flights.name(entry.flight),
            Date::from_days(entry.date)
        )
    }

    /// Returns the id text of the segment at `index`.
    pub fn id(&self, index: SegmentIndex) -> String {
        self.id_of(self.entry(index))
    }

    /// Returns the departure of `index` as RFC 3339 at the origin's offset.
    pub fn departure_rfc3339(&self, index: SegmentIndex) -> String {
        let entry = self.entry(index);
        format_rfc3339(entry.departure, i32::from(entry.departure_offset))
    }

    /// Builds the client view of the segment at `index`.
    pub fn view(&self, index: SegmentIndex) -> Segment {
        let entry = self.entry(index);
        Segment {
            id: self.id_of(entry),
            flight: self.flights.name(entry.flight).to_owned(),
            origin: self.airports.name(entry.origin.into()).to_owned(),
            destination: self.airports.name(entry.destination.into()).to_owned(),
            departure: format_rfc3339(entry.departure, entry.departure_offset.into()),
            arrival: format_rfc3339(entry.arrival(), entry.arrival_offset.into()),
            capacity: entry.capacity,
            seats_left: entry.seats_left(),
        }
    }

    /// Rebuilds the full description of the segment at `index`.
    pub fn spec(&self, index: SegmentIndex) -> SegmentSpec {
        let entry = self.entry(index);
        SegmentSpec {
            id: self.id_of(entry),
            flight: self.flights.name(entry.flight).to_owned(),
            origin: self.airports.name(entry.origin.into()).to_owned(),
            destination: self.airports.name(entry.destination.into()).to_owned(),
            departure: entry.departure,
            arrival: entry.arrival(),
            departure_offset_minutes: entry.departure_offset.into(),
            arrival_offset_minutes: entry.arrival_offset.into(),
            capacity: entry.capacity,
        }
    }

    /// Returns the indexes of segments matching `filter` for which
    /// `keep` holds, in departure then id order, at most `limit`.
    ///
    /// Uses the origin or destination index, whichever lists fewer
    /// segments, and narrows it to the date by binary search on departure.
    pub fn search(
        &self,
        filter: SearchFilter<'_>,
        limit: usize,
        keep: impl Fn(&SegmentEntry) -> bool,
    ) -> Vec<SegmentIndex> {
        let origin = filter
            .origin
            .map(|code| self.airport_list(&self.by_origin, code));
        let destination = filter
            .destination
            .map(|code| self.airport_list(&self.by_destination, code));
        let candidates: Box<dyn Iterator<Item = SegmentIndex> + '_> = match (origin, destination) {
            (Some(a), Some(b)) if b.len() < a.len() => Box::new(self.in_date(b, filter.date)),
            (Some(list), _) | (None, Some(list)) => Box::new(self.in_date(list, filter.date)),
            (None, None) => Box::new(0..self.entries.len() as SegmentIndex),
        };
        let origin = filter.origin.map(|code| self.airports.number(code));
        let destination = filter.destination.map(|code| self.airports.number(code));
        candidates
            .filter(|&index| {
                let entry = self.entry(index);
                passes(origin, Some(entry.origin.into()))
                    && passes(destination, Some(entry.destination.into()))
                    && passes(filter.date.map(Date::days), entry.date)
                    && keep(entry)
            })
            .take(limit)
            .collect()
    }

    fn airport_list<'a>(
        &'a self,
        lists: &'a [Vec<SegmentIndex>],
        code: &str,
    ) -> &'a [SegmentIndex] {
        self.airports
            .number(code)
            .and_then(|number| lists.get(number as usize))
            .map_or(&[], Vec::as_slice)
    }

    /// Narrows a departure-ordered list to the departures that can fall on
    /// local `date` at any UTC offset; the caller checks the exact date.
    fn in_date<'a>(
        &'a self,
        list: &'a [SegmentIndex],
        date: Option<Date>,
    ) -> impl Iterator<Item = SegmentIndex> + 'a {
        let range = match date {
            Some(date) => {
                let first = date.midnight_unix(MAX_OFFSET_MINUTES);
                let end = date.add_days(1).midnight_unix(MIN_OFFSET_MINUTES);
                let start = list.partition_point(|&i| self.entry(i).departure < first);
                let stop = list.partition_point(|&i| self.entry(i).departure < end);
                start..stop.max(start)
            }
            None => 0..list.len(),
        };
        list[range].iter().copied()
    }
}

/// Returns whether `actual` passes a search filter: an absent filter
/// passes everything.
///
/// Written out rather than as `Option::is_none_or`, which needs Rust 1.82
/// while the workspace supports 1.80.
fn passes<T: PartialEq>(expected: Option<T>, actual: T) -> bool {
    match expected {
        Some(expected) => expected == actual,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec(id: &str, origin: &str, destination: &str, departure: i64) -> SegmentSpec {
        let flight = &id[..id.len() - 11];
        SegmentSpec {
            id: id.into(),
            flight: flight.into(),
            origin: origin.into(),
            destination: destination.into(),
            departure,
            arrival: departure + 3600,
            departure_offset_minutes: -180,
            arrival_offset_minutes: -180,
            capacity: 10,
        }
    }

    fn sample() -> Catalog {
        let day = Date::from_ymd(2026, 12, 20).unwrap().midnight_unix(-180);
        Catalog::build([
            spec("AD2-2026-12-20", "GRU", "SSA", day + 7200),
            spec("AD1-2026-12-20", "GRU", "SSA", day + 7200),
            spec("AD3-2026-12-20", "GRU", "REC", day + 3600),
            spec("AD4-2026-12-20", "SSA", "GRU", day + 60),
            spec("AD1-2026-12-21", "GRU", "SSA", day + 86_400 + 7200),
        ])
        .unwrap()
    }

    fn ids(catalog: &Catalog, indexes: &[SegmentIndex]) -> Vec<String> {
        indexes.iter().map(|&i| catalog.id(i)).collect()
    }

    #[test]
    fn segment_entry_stays_forty_bytes() {
        assert_eq!(std::mem::size_of::<SegmentEntry>(), 40);
    }

    #[test]
    fn find_and_view_round_trip_ids() {
        let catalog = sample();
        let index = catalog.find("AD3-2026-12-20").unwrap();
        let view = catalog.view(index);
        assert_eq!(view.id, "AD3-2026-12-20");
        assert_eq!(view.flight, "AD3");
        assert_eq!(view.origin, "GRU");
        assert_eq!(view.departure, "2026-12-20T01:00:00-03:00");
        assert_eq!(view.seats_left, 10);
        assert!(catalog.find("AD3-2026-12-21").is_none());
        assert!(catalog.find("nonsense").is_none());
    }

    #[test]
    fn search_sorts_by_departure_then_id_and_filters_date() {
        let catalog = sample();
        let date = Date::from_ymd(2026, 12, 20);
        let filter = SearchFilter {
            origin: Some("GRU"),
            destination: None,
            date,
        };
        let found = catalog.search(filter, 10, |_| true);
        assert_eq!(
            ids(&catalog, &found),
            ["AD3-2026-12-20", "AD1-2026-12-20", "AD2-2026-12-20"]
        );
        let filter = SearchFilter {
            origin: Some("GRU"),
            destination: Some("SSA"),
            date: None,
        };
        let found = catalog.search(filter, 2, |_| true);
        assert_eq!(ids(&catalog, &found), ["AD1-2026-12-20", "AD2-2026-12-20"]);
        let filter = SearchFilter {
            origin: None,
            destination: Some("GRU"),
            date,
        };
        assert_eq!(
            ids(&catalog, &catalog.search(filter, 10, |_| true)),
            ["AD4-2026-12-20"]
        );
    }

    #[test]
    fn added_segments_keep_departure_order_and_report_moved_indexes() {
        let mut catalog = sample();
        let before: Vec<String> = (0..catalog.len() as SegmentIndex)
            .map(|i| catalog.id(i))
            .collect();
        let first = catalog.find("AD4-2026-12-20").unwrap();
        catalog.entry_mut(first).taken = 3;
        let day = Date::from_ymd(2026, 12, 20).unwrap().midnight_unix(-180);
        let added = [
            spec("AD9-2026-12-20", "GRU", "SSA", day),
            spec("AD4-2026-12-20", "SSA", "GRU", day + 60),
        ];
        let moved_to = catalog.add(&added).unwrap().expect("one segment was new");
        assert_eq!(catalog.len(), 6);
        for (old, id) in before.iter().enumerate() {
            assert_eq!(&catalog.id(moved_to[old]), id);
        }
        assert_eq!(
            catalog.entry(catalog.find("AD4-2026-12-20").unwrap()).taken,
            3
        );
        let filter = SearchFilter {
            origin: Some("GRU"),
            destination: None,
            date: Date::from_ymd(2026, 12, 20),
        };
        let found = catalog.search(filter, 10, |_| true);
        assert_eq!(
            ids(&catalog, &found),
            [
                "AD9-2026-12-20",
                "AD3-2026-12-20",
                "AD1-2026-12-20",
                "AD2-2026-12-20"
            ]
        );
        assert!(catalog.add(&added).unwrap().is_none());
    }

    #[test]
    fn duplicate_and_malformed_ids_are_rejected() {
        let day = 1_800_000_000;
        let twice = Catalog::build([
            spec("AD1-2026-12-20", "GRU", "SSA", day),
            spec("AD1-2026-12-20", "GRU", "SSA", day),
        ]);
        assert!(matches!(twice, Err(Error::Duplicate(_))));
        let mut bad = spec("AD1-2026-12-20", "GRU", "SSA", day);
        bad.flight = "AD2".into();
        assert!(matches!(
            Catalog::build([bad]),
            Err(Error::MalformedId { .. })
        ));
    }
}
