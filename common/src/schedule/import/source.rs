//! Reads the records of `airports.dat`, `planes.dat` and `routes.dat`.

use rustc_hash::FxHashMap;

use super::csv::{present, split};
use crate::schedule::Airport;

/// An airport that has an IATA code, a position and a UTC offset.
#[derive(Debug, Clone)]
pub(super) struct SourceAirport {
    /// The airport as the schedule lists it.
    pub(super) airport: Airport,
    /// Country name as `airports.dat` spells it.
    pub(super) country: String,
}

/// Counts of `airports.dat` lines, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct AirportCounts {
    pub(super) read: usize,
    pub(super) without_code: usize,
    pub(super) without_offset: usize,
    pub(super) malformed: usize,
}

/// The usable airports of `airports.dat`, found by OpenFlights id, IATA
/// code or ICAO code.
#[derive(Debug, Default)]
pub(super) struct Airports {
    list: Vec<SourceAirport>,
    by_id: FxHashMap<String, usize>,
    by_code: FxHashMap<String, usize>,
}

impl Airports {
    /// Parses `airports.dat`, keeping airports with an IATA code, a position
    /// and a UTC offset.
    /// A line whose IATA code repeats an earlier one counts as malformed.
    pub(super) fn parse(text: &str) -> (Airports, AirportCounts) {
        let mut airports = Airports::default();
        let mut counts = AirportCounts::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match parse_airport(line) {
                Line::Airport { id, icao, airport } => {
                    if airports.insert(id, icao, airport) {
                        counts.read += 1;
                    } else {
                        counts.malformed += 1;
                    }
                }
                Line::WithoutCode => counts.without_code += 1,
                Line::WithoutOffset => counts.without_offset += 1,
                Line::Malformed => counts.malformed += 1,
            }
        }
        (airports, counts)
    }

    /// Returns the airport with OpenFlights `id`, or else with IATA or ICAO
    /// `code`.
    pub(super) fn find(&self, id: &str, code: &str) -> Option<&SourceAirport> {
        let index = present(id)
            .and_then(|id| self.by_id.get(id))
            .or_else(|| self.by_code.get(code))?;
        self.list.get(*index)
    }

    fn insert(&mut self, id: Option<String>, icao: Option<String>, airport: SourceAirport) -> bool {
        let code = airport.airport.code.clone();
        if self.by_code.contains_key(&code) {
            return false;
        }
        let index = self.list.len();
        self.list.push(airport);
        self.by_code.insert(code, index);
        if let Some(icao) = icao {
            self.by_code.entry(icao).or_insert(index);
        }
        if let Some(id) = id {
            self.by_id.entry(id).or_insert(index);
        }
        true
    }
}

enum Line {
    Airport {
        id: Option<String>,
        icao: Option<String>,
        airport: SourceAirport,
    },
    WithoutCode,
    WithoutOffset,
    Malformed,
}

/// Parses one `airports.dat` line: id, name, city, country, IATA, ICAO,
/// latitude, longitude, altitude, UTC offset in hours, then DST rule, time
/// zone name, type and source, which the importer ignores. Lines with only
/// the first 12 columns, as older snapshots have, are accepted.
fn parse_airport(line: &str) -> Line {
    let Ok(fields) = split(line) else {
        return Line::Malformed;
    };
    if !(12..=14).contains(&fields.len()) {
        return Line::Malformed;
    }
    let Some(code) = present(&fields[4]).filter(|c| is_iata_airport(c)) else {
        return Line::WithoutCode;
    };
    if present(&fields[9]).is_none() {
        return Line::WithoutOffset;
    }
    let (Some(latitude), Some(longitude), Some(offset)) = (
        parse_in(&fields[6], -90.0, 90.0),
        parse_in(&fields[7], -180.0, 180.0),
        parse_in(&fields[9], -12.0, 14.0),
    ) else {
        return Line::Malformed;
    };
    let airport = Airport {
        code: code.to_owned(),
        name: fields[1].clone(),
        city: fields[2].clone(),
        latitude,
        longitude,
        // The fixed standard offset. Daylight saving time, where the DST
        // column has a rule, is not applied.
        utc_offset_minutes: (offset * 60.0).round() as i32,
    };
    Line::Airport {
        id: present(&fields[0]).map(str::to_owned),
        icao: present(&fields[5]).map(str::to_owned),
        airport: SourceAirport {
            airport,
            country: fields[3].clone(),
        },
    }
}

fn is_iata_airport(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn parse_in(field: &str, low: f64, high: f64) -> Option<f64> {
    let value: f64 = present(field)?.parse().ok()?;
    (low..=high).contains(&value).then_some(value)
}

/// Aircraft types of `planes.dat`: name, IATA code, ICAO code.
#[derive(Debug, Default)]
pub(super) struct Planes {
    icao_to_iata: FxHashMap<String, String>,
    /// Lines of three fields read.
    pub(super) read: usize,
    /// Lines that are not three fields.
    pub(super) malformed: usize,
}

impl Planes {
    /// Parses `planes.dat`.
    pub(super) fn parse(text: &str) -> Planes {
        let mut planes = Planes::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match split(line) {
                Ok(fields) if fields.len() == 3 => planes.add(&fields[1], &fields[2]),
                _ => planes.malformed += 1,
            }
        }
        planes
    }

    fn add(&mut self, iata: &str, icao: &str) {
        self.read += 1;
        if let (Some(iata), Some(icao)) = (present(iata), present(icao)) {
            self.icao_to_iata.insert(icao.to_owned(), iata.to_owned());
        }
    }

    /// Returns the IATA code for an equipment code that `planes.dat` lists
    /// only as an ICAO code, and any other code as it is.
    pub(super) fn to_iata<'a>(&'a self, code: &'a str) -> &'a str {
        self.icao_to_iata.get(code).map_or(code, String::as_str)
    }
}

/// One `routes.dat` line: airline, airline id, source airport, source id,
/// destination airport, destination id, codeshare, stops, equipment.
#[derive(Debug, Clone)]
pub(super) struct RouteLine {
    /// Airline code as written, `\N` included.
    pub(super) airline: String,
    pub(super) origin_code: String,
    pub(super) origin_id: String,
    pub(super) destination_code: String,
    pub(super) destination_id: String,
    pub(super) codeshare: bool,
    pub(super) stops: u32,
    /// Aircraft type codes, separated by spaces.
    pub(super) equipment: String,
}

/// Parses one `routes.dat` line, or returns `None` when it is malformed: not
/// nine fields, no airport code, or a stop count that is not a number.
pub(super) fn parse_route(line: &str) -> Option<RouteLine> {
    let fields = split(line).ok()?;
    let [airline, _, origin, origin_id, destination, destination_id, codeshare, stops, equipment] =
        <[String; 9]>::try_from(fields).ok()?;
    present(&origin)?;
    present(&destination)?;
    Some(RouteLine {
        airline,
        origin_code: origin,
        origin_id,
        destination_code: destination,
        destination_id,
        codeshare: codeshare == "Y",
        stops: stops.parse().ok()?,
        equipment,
    })
}
