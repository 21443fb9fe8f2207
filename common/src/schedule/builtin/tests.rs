use rustc_hash::FxHashSet;

use super::*;
use crate::time::Date;

const REQUIRED: &[&str] = &[
    "GRU", "CGH", "BSB", "GIG", "SDU", "CNF", "VCP", "SSA", "REC", "FOR", "POA", "CWB", "BEL",
    "MAO", "FLN", "NAT", "MCZ", "GYN", "VIX", "CGB", "SLZ", "THE", "AJU", "JPA", "IGU", "PMW",
    "CGR", "PVH", "RBR", "MCP", "BVB", "LDB", "NVT", "IOS", "BPS", "UDI", "JOI",
];

fn flights_between<'a>(schedule: &'a Schedule, from: &str, to: &str) -> Vec<&'a Flight> {
    schedule
        .flights
        .iter()
        .filter(|f| f.origin == from && f.destination == to)
        .collect()
}

#[test]
fn builtin_validates() {
    let schedule = Schedule::builtin();
    assert!(schedule.validate().is_ok(), "{:?}", schedule.validate());
}

#[test]
fn builtin_has_required_airports() {
    let schedule = Schedule::builtin();
    for code in REQUIRED {
        assert!(schedule.airport(code).is_some(), "missing {code}");
    }
    assert!(schedule.airports.len() >= 30);
}

#[test]
fn builtin_size_is_in_range() {
    let schedule = Schedule::builtin();
    let expected: u32 = network::ROUTES.iter().map(|r| 2 * r.3).sum();
    assert_eq!(schedule.flights.len(), expected as usize);
    assert!((200..=400).contains(&schedule.flights.len()));
}

#[test]
fn builtin_offsets_follow_brazilian_zones() {
    let schedule = Schedule::builtin();
    let offset = |code: &str| schedule.airport(code).map(|a| a.utc_offset_minutes);
    for code in ["MAO", "CGB", "CGR", "PVH", "BVB"] {
        assert_eq!(offset(code), Some(-240), "{code}");
    }
    assert_eq!(offset("RBR"), Some(-300));
    assert_eq!(offset("FEN"), Some(-120));
    assert_eq!(offset("GRU"), Some(-180));
    for airport in &schedule.airports {
        assert!([-120, -180, -240, -300].contains(&airport.utc_offset_minutes));
    }
}

#[test]
fn builtin_coordinates_lie_in_brazil() {
    for airport in &Schedule::builtin().airports {
        assert!((-34.0..6.0).contains(&airport.latitude), "{}", airport.code);
        assert!(
            (-74.0..-32.0).contains(&airport.longitude),
            "{}",
            airport.code
        );
    }
}

#[test]
fn builtin_serves_every_airport() {
    let schedule = Schedule::builtin();
    for airport in &schedule.airports {
        let code = airport.code.as_str();
        assert!(schedule.flights.iter().any(|f| f.origin == code), "{code}");
        assert!(
            schedule.flights.iter().any(|f| f.destination == code),
            "{code}"
        );
    }
}

#[test]
fn builtin_departures_fall_in_operating_day() {
    for flight in &Schedule::builtin().flights {
        let minutes = flight.departure_minutes;
        assert!((6 * 60..23 * 60).contains(&minutes), "{}", flight.number);
        assert_eq!(minutes % 5, 0, "{}", flight.number);
    }
}

#[test]
fn builtin_departures_differ_within_route() {
    let schedule = Schedule::builtin();
    let mut seen = FxHashSet::default();
    for f in &schedule.flights {
        let key = (
            &f.number[..2],
            &f.origin,
            &f.destination,
            f.departure_minutes,
        );
        assert!(seen.insert(key), "{} repeats a departure", f.number);
    }
}

#[test]
fn builtin_capacities_match_aircraft() {
    for flight in &Schedule::builtin().flights {
        let seats = aircraft::seats(&flight.aircraft);
        assert_eq!(seats, Some(flight.capacity), "{}", flight.number);
        assert!((48..=250).contains(&flight.capacity), "{}", flight.number);
    }
}

#[test]
fn builtin_durations_are_plausible() {
    let schedule = Schedule::builtin();
    for flight in &schedule.flights {
        let minutes = flight.duration_minutes;
        assert!(
            (35..=300).contains(&minutes),
            "{}: {minutes}",
            flight.number
        );
        assert_eq!(minutes % 5, 0, "{}", flight.number);
    }
    let shuttle = flights_between(&schedule, "CGH", "SDU");
    assert!(shuttle
        .iter()
        .all(|f| (50..=80).contains(&f.duration_minutes)));
}

#[test]
fn builtin_gru_ssa_duration() {
    let schedule = Schedule::builtin();
    let flights = flights_between(&schedule, "GRU", "SSA");
    assert!(flights.len() >= 2);
    for flight in flights {
        assert!((120..=170).contains(&flight.duration_minutes));
    }
}

#[test]
fn builtin_return_flights_take_next_number() {
    let schedule = Schedule::builtin();
    let numbers: FxHashSet<&str> = schedule.flights.iter().map(|f| f.number.as_str()).collect();
    let outbound = flights_between(&schedule, "GRU", "SSA");
    for flight in outbound {
        let digits: u32 = flight.number[2..].parse().unwrap_or(0);
        let back = format!("{}{}", &flight.number[..2], digits + 1);
        assert!(numbers.contains(back.as_str()), "{back}");
    }
}

/// Returns one-stop trips `from` -> `via` -> `to` that depart on `date`,
/// connect in 45 minutes to 12 hours, and leave `via` on the day they arrive.
fn one_stop_trips(schedule: &Schedule, from: &str, via: &str, to: &str) -> usize {
    let date = Date::from_ymd(2026, 12, 20).unwrap_or(Date::from_days(0));
    let segments = schedule.segments(date, 2);
    let first_legs = segments
        .iter()
        .filter(|s| s.origin == from && s.destination == via);
    let mut trips = 0;
    for first in first_legs.filter(|s| s.id.ends_with("2026-12-20")) {
        let arrival_day = crate::time::local_date(first.arrival, first.arrival_offset_minutes);
        trips += segments
            .iter()
            .filter(|s| s.origin == via && s.destination == to)
            .filter(|s| (45 * 60..=12 * 3600).contains(&(s.departure - first.arrival)))
            .filter(|s| s.id.ends_with(&arrival_day.to_string()))
            .count();
    }
    trips
}

#[test]
fn builtin_connects_ssa_to_poa_through_gru() {
    let schedule = Schedule::builtin();
    assert!(one_stop_trips(&schedule, "SSA", "GRU", "POA") >= 2);
    assert!(one_stop_trips(&schedule, "POA", "GRU", "SSA") >= 2);
    assert!(one_stop_trips(&schedule, "MAO", "BSB", "REC") >= 1);
}

#[test]
fn builtin_is_deterministic() {
    assert_eq!(Schedule::builtin(), Schedule::builtin());
}

#[test]
fn builtin_routes_use_known_airports_and_aircraft() {
    let codes: FxHashSet<&str> = network::AIRPORTS.iter().map(|a| a.0).collect();
    for &(airline, first, second, daily, aircraft_code) in network::ROUTES {
        assert!(
            codes.contains(first) && codes.contains(second),
            "{first}-{second}"
        );
        assert_ne!(first, second);
        assert!(daily >= 1, "{airline} {first}-{second}");
        assert!(aircraft::seats(aircraft_code).is_some(), "{aircraft_code}");
        assert!(FIRST_NUMBERS.iter().any(|(code, _)| *code == airline));
    }
}

#[test]
fn builtin_hubs_connect_most_spokes() {
    let schedule = Schedule::builtin();
    for hub in ["GRU", "BSB", "VCP"] {
        let spokes: Vec<&str> = schedule
            .airports
            .iter()
            .map(|a| a.code.as_str())
            .filter(|code| !flights_between(&schedule, code, hub).is_empty())
            .collect();
        let (mut pairs, mut connected) = (0, 0);
        for from in &spokes {
            for to in spokes.iter().filter(|to| *to != from) {
                pairs += 1;
                connected += usize::from(one_stop_trips(&schedule, from, hub, to) > 0);
            }
        }
        assert!(connected * 10 >= pairs * 8, "{hub}: {connected} of {pairs}");
    }
}
