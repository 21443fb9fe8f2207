//! The schedule: airports, flights, and the segments they fly each day.
//!
//! A [`Schedule`] is static data shared by every process: shards seed their
//! segments from it, and the router searches routes over it. Segment ids are
//! the flight number plus the local departure date at the origin.
//!
//! [`Schedule::builtin`] returns the Brazilian domestic schedule built into
//! the program, and [`import::import`] builds one from OpenFlights data.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::time::{format_rfc3339, Date};

mod aircraft;
mod builtin;
mod derive;
pub mod import;
mod network;

/// Errors while loading or checking a schedule.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    #[error("schedule file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a schedule in JSON.
    #[error("schedule file {path} is not a valid schedule: {source}")]
    Format {
        /// The file.
        path: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// The schedule contradicts itself.
    #[error("invalid schedule: {0}")]
    Invalid(String),
    /// An import kept no flight, so the schedule would be empty.
    #[error(
        "the import kept no flights ({0}); check that the files are OpenFlights \
         airports.dat, routes.dat and planes.dat, and that the country is \
         spelled as in airports.dat, for example \"Brazil\""
    )]
    NoFlights(String),
    /// The importer ran out of flight numbers for one airline code.
    #[error(
        "no free flight number is left for airline code {0}; import fewer \
         routes, for example with a country filter"
    )]
    NumbersExhausted(String),
}

/// An airport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Airport {
    /// IATA code, three capital letters.
    pub code: String,
    /// Airport name.
    pub name: String,
    /// City served.
    pub city: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// Fixed offset from UTC, in minutes east.
    pub utc_offset_minutes: i32,
}

/// A daily flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flight {
    /// Flight number, letters and digits, unique in the schedule.
    pub number: String,
    /// Origin airport code.
    pub origin: String,
    /// Destination airport code.
    pub destination: String,
    /// Local departure time at the origin, minutes after midnight.
    pub departure_minutes: u32,
    /// Block time, in minutes.
    pub duration_minutes: u32,
    /// Aircraft type code, for example `320`.
    pub aircraft: String,
    /// Seats on the aircraft.
    pub capacity: u32,
}

/// Every airport and daily flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Airports, by code.
    pub airports: Vec<Airport>,
    /// Daily flights.
    pub flights: Vec<Flight>,
}

/// One flight on one day, before any seat is sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSpec {
    /// `FLIGHT-YYYY-MM-DD`.
    pub id: String,
    /// Flight number.
    pub flight: String,
    /// Origin code.
    pub origin: String,
    /// Destination code.
    pub destination: String,
    /// Departure, Unix seconds.
    pub departure: i64,
    /// Arrival, Unix seconds.
    pub arrival: i64,
    /// Origin's UTC offset, minutes east.
    pub departure_offset_minutes: i32,
    /// Destination's UTC offset, minutes east.
    pub arrival_offset_minutes: i32,
    /// Seats on the aircraft.
    pub capacity: u32,
}

impl SegmentSpec {
    /// Returns the departure as RFC 3339 with the origin's offset.
    pub fn departure_rfc3339(&self) -> String {
        format_rfc3339(self.departure, self.departure_offset_minutes)
    }

    /// Returns the arrival as RFC 3339 with the destination's offset.
    pub fn arrival_rfc3339(&self) -> String {
        format_rfc3339(self.arrival, self.arrival_offset_minutes)
    }
}

impl Schedule {
    /// Reads a schedule written by [`Schedule::save`] or the importer.
    ///
    /// # Errors
    ///
    /// Returns an error when the file cannot be read, is not a schedule, or
    /// names airports it does not list.
    pub fn load(path: &Path) -> Result<Schedule, Error> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: name.clone(),
            source,
        })?;
        let schedule: Schedule =
            serde_json::from_str(&text).map_err(|source| Error::Format { path: name, source })?;
        schedule.validate()?;
        Ok(schedule)
    }

    /// Writes the schedule as JSON.
    ///
    /// # Errors
    ///
    /// Returns an error when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| io(e.into()))?;
        std::fs::write(path, text).map_err(io)
    }

    /// Checks that flights name listed airports, flight numbers are unique,
    /// and times and capacities are in range.
    ///
    /// # Errors
    ///
    /// Returns the first problem found.
    pub fn validate(&self) -> Result<(), Error> {
        let mut codes = rustc_hash::FxHashSet::default();
        for airport in &self.airports {
            crate::types::validate_airport("airport code", &airport.code)
                .map_err(Error::Invalid)?;
            if !codes.insert(airport.code.as_str()) {
                return Err(Error::Invalid(format!(
                    "airport {} is listed twice",
                    airport.code
                )));
            }
        }
        let mut numbers = rustc_hash::FxHashSet::default();
        for flight in &self.flights {
            let bad = |what: &str| Error::Invalid(format!("flight {}: {what}", flight.number));
            let number_ok = (2..=8).contains(&flight.number.len())
                && flight
                    .number
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !number_ok {
                return Err(bad("the number must be 2 to 8 capital letters and digits"));
            }
            if !numbers.insert(flight.number.as_str()) {
                return Err(bad("the number is used twice"));
            }
            if !codes.contains(flight.origin.as_str())
                || !codes.contains(flight.destination.as_str())
            {
                return Err(bad("its origin or destination is not in the airport list"));
            }
            if flight.departure_minutes >= 24 * 60
                || flight.duration_minutes == 0
                || flight.capacity == 0
            {
                return Err(bad(
                    "departure must be before 24:00, and duration and capacity above 0",
                ));
            }
        }
        Ok(())
    }

    /// Returns the airport with `code`.
    pub fn airport(&self, code: &str) -> Option<&Airport> {
        self.airports.iter().find(|a| a.code == code)
    }

    /// Returns `flight`'s segment departing on local `date`, or `None` when
    /// the flight names an airport the schedule does not list.
    pub fn segment(&self, flight: &Flight, date: Date) -> Option<SegmentSpec> {
        let origin = self.airport(&flight.origin)?;
        let destination = self.airport(&flight.destination)?;
        Some(segment_between(flight, date, origin, destination))
    }

    /// Returns every segment of every flight for `days` days from `start`.
    pub fn segments(&self, start: Date, days: u32) -> Vec<SegmentSpec> {
        let offsets: rustc_hash::FxHashMap<&str, &Airport> =
            self.airports.iter().map(|a| (a.code.as_str(), a)).collect();
        let mut out = Vec::with_capacity(self.flights.len() * days as usize);
        for day in 0..days {
            let date = start.add_days(day as i32);
            for flight in &self.flights {
                let ends = (
                    offsets.get(flight.origin.as_str()),
                    offsets.get(flight.destination.as_str()),
                );
                if let (Some(origin), Some(destination)) = ends {
                    out.push(segment_between(flight, date, origin, destination));
                }
            }
        }
        out
    }
}

fn segment_between(
    flight: &Flight,
    date: Date,
    origin: &Airport,
    destination: &Airport,
) -> SegmentSpec {
    let departure =
        date.midnight_unix(origin.utc_offset_minutes) + i64::from(flight.departure_minutes) * 60;
    SegmentSpec {
        id: format!("{}-{date}", flight.number),
        flight: flight.number.clone(),
        origin: flight.origin.clone(),
        destination: flight.destination.clone(),
        departure,
        arrival: departure + i64::from(flight.duration_minutes) * 60,
        departure_offset_minutes: origin.utc_offset_minutes,
        arrival_offset_minutes: destination.utc_offset_minutes,
        capacity: flight.capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Schedule {
        let airport = |code: &str, offset| Airport {
            code: code.into(),
            name: format!("{code} airport"),
            city: code.into(),
            latitude: 0.0,
            longitude: 0.0,
            utc_offset_minutes: offset,
        };
        Schedule {
            airports: vec![airport("GRU", -180), airport("MAO", -240)],
            flights: vec![Flight {
                number: "AD4521".into(),
                origin: "GRU".into(),
                destination: "MAO".into(),
                departure_minutes: 23 * 60,
                duration_minutes: 240,
                aircraft: "E95".into(),
                capacity: 118,
            }],
        }
    }

    #[test]
    fn segment_uses_local_dates_and_offsets() {
        let schedule = tiny();
        let date = Date::from_ymd(2026, 12, 20).unwrap();
        let segment = schedule.segment(&schedule.flights[0], date).unwrap();
        assert_eq!(segment.id, "AD4521-2026-12-20");
        assert_eq!(segment.departure_rfc3339(), "2026-12-20T23:00:00-03:00");
        assert_eq!(segment.arrival_rfc3339(), "2026-12-21T02:00:00-04:00");
        assert_eq!(schedule.segments(date, 3).len(), 3);
    }

    #[test]
    fn validate_rejects_unknown_airports_and_duplicates() {
        let mut schedule = tiny();
        assert!(schedule.validate().is_ok());
        schedule.flights.push(schedule.flights[0].clone());
        assert!(schedule
            .validate()
            .unwrap_err()
            .to_string()
            .contains("twice"));
        schedule.flights[1].number = "AD1".into();
        schedule.flights[1].destination = "XXX".into();
        assert!(schedule
            .validate()
            .unwrap_err()
            .to_string()
            .contains("not in the airport list"));
    }
}
