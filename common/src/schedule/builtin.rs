//! The schedule built into the program, generated from the network table in
//! `network.rs`.
//!
//! Generation is deterministic. Each route's departures are spread evenly
//! over an operating window and shifted within it by a hash of the airline
//! and the two airports. Flight numbers are handed out in table order.
//!
//! A route flown several times a day uses the whole day, 06:00 to 23:00 local
//! time. A route flown once a day works like a hub bank: the flight toward
//! the first listed airport (the hub, in the network table) leaves between
//! 06:00 and 12:00, and the flight away from it between 12:00 and 23:00. So
//! most pairs of spokes of one hub connect there on the same day.

use rustc_hash::FxHashMap;

use super::network::{self, AirportRow, RouteRow};
use super::{aircraft, derive, Airport, Flight, Schedule};

/// Earliest local departure, in minutes after midnight.
const FIRST_DEPARTURE: u32 = 6 * 60;

/// End of the morning bank toward a hub, in minutes after midnight.
const MIDDAY: u32 = 12 * 60;

/// Local departures start before this time, in minutes after midnight.
const LAST_DEPARTURE: u32 = 23 * 60;

/// First flight number of each airline in the network table.
const FIRST_NUMBERS: &[(&str, u32)] = &[("AD", 4000), ("G3", 1000), ("LA", 3000), ("2Z", 2200)];

impl Schedule {
    /// Returns the built-in Brazilian domestic schedule.
    ///
    /// It lists 47 real airports and about 340 daily flights of four
    /// airline-style codes, with hubs at GRU, CGH, BSB, GIG, VCP, CNF and REC.
    /// Departures fall between 06:00 and 23:00 local time. Block times come
    /// from the great-circle distance at 780 km/h plus 30 minutes, rounded to
    /// 5 minutes. Every call returns the same schedule.
    pub fn builtin() -> Schedule {
        let airports: Vec<Airport> = network::AIRPORTS.iter().map(airport_from_row).collect();
        let by_code: FxHashMap<&str, &Airport> =
            airports.iter().map(|a| (a.code.as_str(), a)).collect();
        let mut numbers = NumberCounters::default();
        let mut flights = Vec::new();
        for route in network::ROUTES {
            flights.extend(route_flights(route, &by_code, &mut numbers));
        }
        Schedule { airports, flights }
    }
}

fn airport_from_row(row: &AirportRow) -> Airport {
    let &(code, name, city, latitude, longitude, utc_offset_minutes) = row;
    Airport {
        code: code.to_owned(),
        name: name.to_owned(),
        city: city.to_owned(),
        latitude,
        longitude,
        utc_offset_minutes,
    }
}

/// Builds both directions of one route. The flight leaving the first listed
/// airport at its k-th time takes an even number, and its return the next
/// odd one.
fn route_flights(
    route: &RouteRow,
    by_code: &FxHashMap<&str, &Airport>,
    numbers: &mut NumberCounters,
) -> Vec<Flight> {
    let &(airline, first, second, daily, aircraft_code) = route;
    let lookup = |code: &str| -> &Airport {
        by_code
            .get(code)
            .copied()
            .expect("every route in the network table names a listed airport")
    };
    let ends = [
        (lookup(first), lookup(second)),
        (lookup(second), lookup(first)),
    ];
    let base = numbers.take(airline, daily);
    let capacity = aircraft::seats(aircraft_code).unwrap_or(aircraft::DEFAULT_SEATS);
    let mut flights = Vec::with_capacity(2 * daily as usize);
    for (direction, (origin, destination)) in (0u32..).zip(ends) {
        let hash = derive::fnv1a(&[airline, &origin.code, &destination.code]);
        let window = match (daily, direction) {
            (1, 0) => (MIDDAY, LAST_DEPARTURE),
            (1, _) => (FIRST_DEPARTURE, MIDDAY),
            _ => (FIRST_DEPARTURE, LAST_DEPARTURE),
        };
        for (k, departure_minutes) in (0u32..).zip(departures(daily, window, hash)) {
            flights.push(Flight {
                number: format!("{airline}{}", base + 2 * k + direction),
                origin: origin.code.clone(),
                destination: destination.code.clone(),
                departure_minutes,
                duration_minutes: derive::block_minutes(origin, destination),
                aircraft: aircraft_code.to_owned(),
                capacity,
            });
        }
    }
    flights
}

/// Returns `daily` departure times, evenly spaced over `window` (start and
/// end, in minutes after midnight) and shifted by `hash` within one spacing,
/// each a multiple of 5 minutes.
fn departures(daily: u32, window: (u32, u32), hash: u64) -> impl Iterator<Item = u32> {
    let (start, end) = window;
    let spacing = (end - start) / daily.max(1);
    let steps = u64::from((spacing / 5).max(1));
    // The shift stays below one spacing, so the last departure is at least
    // 5 minutes before the window ends.
    let shift = (hash % steps) as u32 * 5;
    (0..daily).map(move |i| (start + shift + i * spacing) / 5 * 5)
}

/// The next free flight number of each airline.
#[derive(Default)]
struct NumberCounters(FxHashMap<&'static str, u32>);

impl NumberCounters {
    /// Reserves `2 * daily` numbers for `airline` and returns the first.
    fn take(&mut self, airline: &'static str, daily: u32) -> u32 {
        let first = FIRST_NUMBERS
            .iter()
            .find(|(code, _)| *code == airline)
            .map_or(9000, |&(_, first)| first);
        let next = self.0.entry(airline).or_insert(first);
        let base = *next;
        *next += 2 * daily;
        base
    }
}

#[cfg(test)]
mod tests;
