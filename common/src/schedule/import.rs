//! Builds a [`Schedule`] from the OpenFlights data files `airports.dat`,
//! `routes.dat` and `planes.dat`.
//!
//! OpenFlights lists which airline flies between which airports and with
//! which aircraft, but not when, how long, or how many times a day. The
//! importer makes one daily flight per route and derives the rest:
//!
//! - The departure is `05:00 + (h mod 217) * 5 min` local time, so it falls
//!   between 05:00 and 23:00 in 5-minute steps. `h` is the 64-bit FNV-1a hash
//!   of `airline|origin|destination`: the airline field as written, `|`, and
//!   the two IATA airport codes.
//! - The block time is the great-circle distance at 780 km/h plus 30 minutes,
//!   rounded to 5 minutes, as in [`Schedule::builtin`].
//! - The seats are those of the first equipment code that the importer's
//!   seat table lists, or 150 when it lists none. `planes.dat` maps
//!   equipment given as ICAO type codes to IATA codes first.
//! - The flight number is the airline code and `1000 + (h >> 32) mod 9000`.
//!   When that number is taken, the next free one is used, wrapping within
//!   four digits, then five, then six. Airline codes that are not two
//!   capital letters or digits become `XX`.
//!
//! Routes are kept or skipped in file order, with the first matching reason:
//! malformed, with stops, naming an unknown airport, outside the country,
//! codeshare, duplicate. Codeshares are skipped because the operating
//! airline's own route carries the same aircraft, and keeping both would
//! count its seats twice. A duplicate is a second route with the same airline
//! field, origin and destination.

use std::fmt;

use rustc_hash::{FxHashMap, FxHashSet};

use super::{aircraft, derive, Error, Flight, Schedule};

mod csv;
mod source;
#[cfg(test)]
mod tests;

use source::{Airports, Planes, RouteLine, SourceAirport};

/// Earliest derived departure, in minutes after local midnight.
const FIRST_DEPARTURE: u32 = 5 * 60;

/// Number of 5-minute departure slots from 05:00 through 23:00.
const DEPARTURE_SLOTS: u64 = (23 * 60 - 5 * 60) / 5 + 1;

/// Counts of the lines an import read, kept and skipped.
///
/// Every route line is either kept as a flight or counted under exactly one
/// `skipped_*` field, so `routes_read` is their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// The country filter, if one was given.
    pub country: Option<String>,
    /// Airports read with an IATA code, a position and a UTC offset.
    pub airports_read: usize,
    /// Airport lines skipped because they have no IATA airport code.
    pub airports_without_code: usize,
    /// Airport lines skipped because their UTC offset is missing.
    pub airports_without_offset: usize,
    /// Airport lines skipped as malformed or repeating an IATA code.
    pub airports_malformed: usize,
    /// Aircraft types read from `planes.dat`.
    pub planes_read: usize,
    /// Lines of `planes.dat` that are not three fields.
    pub planes_malformed: usize,
    /// Non-blank lines of `routes.dat`.
    pub routes_read: usize,
    /// Flights in the schedule, one per kept route.
    pub flights: usize,
    /// Airports in the schedule: those that a kept flight uses.
    pub airports: usize,
    /// Route lines that could not be parsed, or start and end at one airport.
    pub skipped_malformed: usize,
    /// Routes with one or more stops.
    pub skipped_with_stops: usize,
    /// Routes naming an airport missing from `airports.dat`, or one skipped
    /// there for lacking an IATA code or a UTC offset.
    pub skipped_unknown_airport: usize,
    /// Routes with an airport outside the country filter.
    pub skipped_other_country: usize,
    /// Codeshare routes, flown by another airline's route.
    pub skipped_codeshare: usize,
    /// Repeats of an earlier route's airline, origin and destination.
    pub skipped_duplicate: usize,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = self
            .country
            .as_deref()
            .map_or_else(String::new, |c| format!(" in {c}"));
        write!(
            f,
            "kept {} flights between {} airports{scope} from {} routes; skipped \
             {} malformed, {} with stops, {} with unknown airports, {} in other \
             countries, {} codeshares, {} duplicates; read {} airports \
             ({} skipped without IATA code, {} without UTC offset, {} malformed) \
             and {} aircraft types",
            self.flights,
            self.airports,
            self.routes_read,
            self.skipped_malformed,
            self.skipped_with_stops,
            self.skipped_unknown_airport,
            self.skipped_other_country,
            self.skipped_codeshare,
            self.skipped_duplicate,
            self.airports_read,
            self.airports_without_code,
            self.airports_without_offset,
            self.airports_malformed,
            self.planes_read,
        )
    }
}

/// Builds a schedule of one daily flight per route from the text of
/// OpenFlights `airports.dat`, `routes.dat` and `planes.dat`.
///
/// With `country`, for example `Some("Brazil")`, only routes whose two
/// airports lie in that country (as `airports.dat` names it, ignoring ASCII
/// case) are kept. The module documentation describes how times, durations,
/// seats and flight numbers are derived. The same input always gives the same
/// schedule.
///
/// # Errors
///
/// Returns [`Error::NoFlights`] when no route is kept,
/// [`Error::NumbersExhausted`] when one airline code needs more than 999,000
/// flight numbers, and [`Error::Invalid`] if the result fails
/// [`Schedule::validate`].
pub fn import(
    airports_dat: &str,
    routes_dat: &str,
    planes_dat: &str,
    country: Option<&str>,
) -> Result<(Schedule, ImportReport), Error> {
    let (airports, airport_counts) = Airports::parse(airports_dat);
    let planes = Planes::parse(planes_dat);
    let mut report = ImportReport {
        country: country.map(str::to_owned),
        airports_read: airport_counts.read,
        airports_without_code: airport_counts.without_code,
        airports_without_offset: airport_counts.without_offset,
        airports_malformed: airport_counts.malformed,
        planes_read: planes.read,
        planes_malformed: planes.malformed,
        ..ImportReport::default()
    };
    let mut builder = Builder::new(&airports, &planes, country);
    for line in routes_dat.lines().filter(|l| !l.trim().is_empty()) {
        report.routes_read += 1;
        match builder.add(line)? {
            Outcome::Kept => report.flights += 1,
            Outcome::Skipped(skip) => skip.count(&mut report),
        }
    }
    let schedule = builder.finish();
    report.airports = schedule.airports.len();
    if schedule.flights.is_empty() {
        return Err(Error::NoFlights(report.to_string()));
    }
    schedule.validate()?;
    Ok((schedule, report))
}

/// The result for one route line.
enum Outcome {
    Kept,
    Skipped(Skip),
}

/// The reason a route line was not kept.
#[derive(Debug, Clone, Copy)]
enum Skip {
    Malformed,
    WithStops,
    UnknownAirport,
    OtherCountry,
    Codeshare,
    Duplicate,
}

impl Skip {
    fn count(self, report: &mut ImportReport) {
        let counter = match self {
            Skip::Malformed => &mut report.skipped_malformed,
            Skip::WithStops => &mut report.skipped_with_stops,
            Skip::UnknownAirport => &mut report.skipped_unknown_airport,
            Skip::OtherCountry => &mut report.skipped_other_country,
            Skip::Codeshare => &mut report.skipped_codeshare,
            Skip::Duplicate => &mut report.skipped_duplicate,
        };
        *counter += 1;
    }
}

/// Turns route lines into flights, remembering what it has kept.
struct Builder<'a> {
    airports: &'a Airports,
    planes: &'a Planes,
    country: Option<&'a str>,
    seen: FxHashSet<(String, String, String)>,
    numbers: FlightNumbers,
    used: FxHashMap<String, &'a SourceAirport>,
    flights: Vec<Flight>,
}

impl<'a> Builder<'a> {
    fn new(airports: &'a Airports, planes: &'a Planes, country: Option<&'a str>) -> Self {
        Builder {
            airports,
            planes,
            country,
            seen: FxHashSet::default(),
            numbers: FlightNumbers::default(),
            used: FxHashMap::default(),
            flights: Vec::new(),
        }
    }

    /// Keeps the route on `line` as a flight, or returns why it is skipped.
    ///
    /// # Errors
    ///
    /// Returns [`Error::NumbersExhausted`] when no flight number is left for
    /// the route's airline code.
    fn add(&mut self, line: &str) -> Result<Outcome, Error> {
        let Some(route) = source::parse_route(line) else {
            return Ok(Outcome::Skipped(Skip::Malformed));
        };
        let (origin, destination) = match self.check(&route) {
            Ok(ends) => ends,
            Err(skip) => return Ok(Outcome::Skipped(skip)),
        };
        let key = (
            route.airline.clone(),
            origin.airport.code.clone(),
            destination.airport.code.clone(),
        );
        if !self.seen.insert(key) {
            return Ok(Outcome::Skipped(Skip::Duplicate));
        }
        let flight = self.flight(&route, origin, destination)?;
        self.used.insert(origin.airport.code.clone(), origin);
        self.used
            .insert(destination.airport.code.clone(), destination);
        self.flights.push(flight);
        Ok(Outcome::Kept)
    }

    /// Returns the route's two airports, or why the route is skipped before
    /// the duplicate check.
    fn check(&self, route: &RouteLine) -> Result<(&'a SourceAirport, &'a SourceAirport), Skip> {
        if route.stops > 0 {
            return Err(Skip::WithStops);
        }
        let origin = self.airports.find(&route.origin_id, &route.origin_code);
        let destination = self
            .airports
            .find(&route.destination_id, &route.destination_code);
        let (Some(origin), Some(destination)) = (origin, destination) else {
            return Err(Skip::UnknownAirport);
        };
        if origin.airport.code == destination.airport.code {
            return Err(Skip::Malformed);
        }
        if let Some(country) = self.country {
            let inside = |a: &SourceAirport| a.country.eq_ignore_ascii_case(country.trim());
            if !inside(origin) || !inside(destination) {
                return Err(Skip::OtherCountry);
            }
        }
        if route.codeshare {
            return Err(Skip::Codeshare);
        }
        Ok((origin, destination))
    }

    fn flight(
        &mut self,
        route: &RouteLine,
        origin: &SourceAirport,
        destination: &SourceAirport,
    ) -> Result<Flight, Error> {
        let (origin, destination) = (&origin.airport, &destination.airport);
        let hash = derive::fnv1a(&[&route.airline, &origin.code, &destination.code]);
        let prefix = airline_prefix(&route.airline);
        let number = self
            .numbers
            .assign(prefix, hash)
            .ok_or_else(|| Error::NumbersExhausted(prefix.to_owned()))?;
        let (aircraft, capacity) = equipment_seats(&route.equipment, self.planes);
        Ok(Flight {
            number,
            origin: origin.code.clone(),
            destination: destination.code.clone(),
            departure_minutes: FIRST_DEPARTURE + (hash % DEPARTURE_SLOTS) as u32 * 5,
            duration_minutes: derive::block_minutes(origin, destination),
            aircraft,
            capacity,
        })
    }

    /// Returns the schedule of the kept flights and the airports they use,
    /// sorted by code.
    fn finish(self) -> Schedule {
        let mut airports: Vec<_> = self.used.into_values().map(|a| a.airport.clone()).collect();
        airports.sort_by(|a, b| a.code.cmp(&b.code));
        Schedule {
            airports,
            flights: self.flights,
        }
    }
}

/// Returns the airline code when it is two capital letters or digits, as
/// flight numbers need, and `XX` otherwise.
fn airline_prefix(airline: &str) -> &str {
    let valid = airline.len() == 2
        && airline
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if valid {
        airline
    } else {
        "XX"
    }
}

/// Returns the aircraft code and seats for a route's space-separated
/// equipment codes: the first code the seat table lists, or else the first
/// code (empty when there is none) with the default seats.
fn equipment_seats(equipment: &str, planes: &Planes) -> (String, u32) {
    let codes: Vec<&str> = equipment
        .split_whitespace()
        .map(|code| planes.to_iata(code))
        .collect();
    let known = codes
        .iter()
        .find_map(|code| aircraft::seats(code).map(|seats| (*code, seats)));
    match known {
        Some((code, seats)) => (code.to_owned(), seats),
        None => (
            codes.first().copied().unwrap_or_default().to_owned(),
            aircraft::DEFAULT_SEATS,
        ),
    }
}

/// Flight numbers handed out so far.
#[derive(Default)]
struct FlightNumbers {
    used: FxHashSet<String>,
    /// Numbers taken per airline prefix and digit count.
    taken: FxHashMap<(String, u32), u64>,
}

impl FlightNumbers {
    /// Returns a free number for `prefix`, starting from one derived from
    /// `hash`, or `None` when every number of four to six digits is taken.
    fn assign(&mut self, prefix: &str, hash: u64) -> Option<String> {
        for digits in 4..=6 {
            let low = 10u64.pow(digits - 1);
            let span = 9 * low;
            let taken = self.taken.entry((prefix.to_owned(), digits)).or_default();
            if *taken >= span {
                continue;
            }
            let start = (hash >> 32) % span;
            for probe in 0..span {
                let number = format!("{prefix}{}", low + (start + probe) % span);
                if !self.used.contains(&number) {
                    *taken += 1;
                    self.used.insert(number.clone());
                    return Some(number);
                }
            }
        }
        None
    }
}
