use trecho_common::schedule::{Airport, Flight};

use super::*;

fn airport(code: &str, offset: i32) -> Airport {
    Airport {
        code: code.into(),
        name: format!("{code} airport"),
        city: code.into(),
        latitude: 0.0,
        longitude: 0.0,
        utc_offset_minutes: offset,
    }
}

fn flight(number: &str, from: &str, to: &str, at: (u32, u32), minutes: u32) -> Flight {
    Flight {
        number: number.into(),
        origin: from.into(),
        destination: to.into(),
        departure_minutes: at.0 * 60 + at.1,
        duration_minutes: minutes,
        aircraft: "320".into(),
        capacity: 100,
    }
}

/// AAA and BBB are at UTC-3, CCC at UTC-4, DDD at UTC+0.
fn schedule() -> Schedule {
    let schedule = Schedule {
        airports: vec![
            airport("AAA", -180),
            airport("BBB", -180),
            airport("CCC", -240),
            airport("DDD", 0),
        ],
        flights: vec![
            // Reaches BBB at 09:00 local.
            flight("F1", "AAA", "BBB", (8, 0), 60),
            // 45 minutes after F1 arrives: the shortest connection.
            flight("F2", "BBB", "CCC", (9, 45), 120),
            // 44 minutes: too short.
            flight("F3", "BBB", "CCC", (9, 44), 120),
            // 12 hours: the longest connection.
            flight("F4", "BBB", "CCC", (21, 0), 60),
            // 12 hours and 1 minute: too long.
            flight("F5", "BBB", "CCC", (21, 1), 60),
            // Back to the origin: a route through it would revisit AAA.
            flight("F6", "BBB", "AAA", (10, 0), 60),
            // Reaches CCC at 10:00 local.
            flight("F7", "AAA", "CCC", (8, 30), 150),
            // F2 reaches CCC at 10:45 local and F7 at 10:00, so both connect
            // to F8 at 12:00 local.
            flight("F8", "CCC", "DDD", (12, 0), 300),
            // Reaches CCC at 21:00 local, like F1+F4.
            flight("F9", "AAA", "CCC", (21, 0), 60),
        ],
    };
    schedule.validate().unwrap();
    schedule
}

fn date() -> Date {
    Date::from_ymd(2026, 12, 20).unwrap()
}

fn numbers(schedule: &Schedule, routes: &[Vec<Leg>]) -> Vec<String> {
    let mut list: Vec<String> = routes
        .iter()
        .map(|route| {
            route
                .iter()
                .map(|leg| schedule.flights[leg.flight].number.as_str())
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    list.sort();
    list
}

#[test]
fn connections_of_45_minutes_and_12_hours_are_included() {
    let schedule = schedule();
    let index = RouteIndex::new(&schedule);
    let routes = index.candidates("AAA", "CCC", date(), 1);
    let found = numbers(&schedule, &routes);
    assert!(found.contains(&"F1+F2".to_string()), "{found:?}");
    assert!(found.contains(&"F1+F4".to_string()), "{found:?}");
    assert!(!found.contains(&"F1+F3".to_string()), "{found:?}");
    assert!(!found.contains(&"F1+F5".to_string()), "{found:?}");
    assert_eq!(found, ["F1+F2", "F1+F4", "F7", "F9"]);
}

#[test]
fn max_stops_limits_connections() {
    let schedule = schedule();
    let index = RouteIndex::new(&schedule);
    assert!(index.candidates("AAA", "DDD", date(), 0).is_empty());
    let one = numbers(&schedule, &index.candidates("AAA", "DDD", date(), 1));
    assert_eq!(one, ["F7+F8"]);
    let two = numbers(&schedule, &index.candidates("AAA", "DDD", date(), 2));
    assert_eq!(two, ["F1+F2+F8", "F7+F8"]);
}

#[test]
fn no_airport_is_visited_twice() {
    let schedule = schedule();
    let index = RouteIndex::new(&schedule);
    let routes = index.candidates("AAA", "CCC", date(), 3);
    for route in &routes {
        let mut airports = vec![schedule.flights[route[0].flight].origin.as_str()];
        for leg in route {
            let to = schedule.flights[leg.flight].destination.as_str();
            assert!(!airports.contains(&to), "{to} visited twice");
            airports.push(to);
        }
    }
    let found = numbers(&schedule, &routes);
    assert!(found.iter().all(|r| !r.contains("F6")), "{found:?}");
}

#[test]
fn connection_may_leave_on_the_next_local_date() {
    let mut schedule = schedule();
    // F9 reaches CCC at 21:00 local; a 06:00 departure the next day is 9
    // hours later.
    schedule
        .flights
        .push(flight("F10", "CCC", "DDD", (6, 0), 300));
    let index = RouteIndex::new(&schedule);
    let routes = index.candidates("AAA", "DDD", date(), 1);
    let with_f10: Vec<&Vec<Leg>> = routes
        .iter()
        .filter(|route| schedule.flights[route[1].flight].number == "F10")
        .collect();
    assert!(!with_f10.is_empty());
    let next_day = date().add_days(1);
    for route in with_f10 {
        assert_eq!(route[1].date, next_day);
    }
}

#[test]
fn first_leg_leaves_on_the_requested_local_date() {
    let schedule = schedule();
    let index = RouteIndex::new(&schedule);
    for route in index.candidates("AAA", "CCC", date(), 1) {
        assert_eq!(route[0].date, date());
    }
    assert!(index.candidates("AAA", "XXX", date(), 1).is_empty());
    assert!(index.candidates("AAA", "AAA", date(), 1).is_empty());
}

#[test]
fn ranking_sorts_by_arrival_then_duration_then_stops() {
    let mut schedule = schedule();
    // Departs and arrives with F1+F2, without a connection.
    schedule
        .flights
        .push(flight("F11", "AAA", "CCC", (8, 0), 225));
    let index = RouteIndex::new(&schedule);
    let legs = index.candidates("AAA", "CCC", date(), 1);
    let candidates = Candidates::build(&schedule, &legs);
    let seats_left = vec![Some(50); candidates.segments.len()];
    let routes = candidates.rank(&seats_left, 1, 10);
    let order: Vec<String> = routes
        .iter()
        .map(|route| {
            route
                .segments
                .iter()
                .map(|s| s.flight.as_str())
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    // F7 arrives first. F11 and F1+F2 arrive together after the same
    // duration, and F11 has no connection. F9 and F1+F4 arrive together,
    // F9 after 60 minutes and F1+F4 after 14 hours.
    assert_eq!(order, ["F7", "F11", "F1+F2", "F9", "F1+F4"]);
    let first = &routes[2];
    assert_eq!(first.stops, 1);
    assert_eq!(first.duration_minutes, 225);
    assert_eq!(first.departure, "2026-12-20T08:00:00-03:00");
    assert_eq!(first.arrival, "2026-12-20T10:45:00-04:00");
    assert_eq!(first.seats_left, 50);
    assert_eq!(first.segments[0].id, "F1-2026-12-20");
}

#[test]
fn ranking_drops_unknown_and_short_segments_and_truncates() {
    let schedule = schedule();
    let index = RouteIndex::new(&schedule);
    let legs = index.candidates("AAA", "CCC", date(), 1);
    let candidates = Candidates::build(&schedule, &legs);
    let position = |id: &str| candidates.segments.iter().position(|s| s.id == id).unwrap();
    let mut seats_left = vec![Some(5); candidates.segments.len()];
    seats_left[position("F2-2026-12-20")] = Some(1);
    seats_left[position("F9-2026-12-20")] = None;
    let routes = candidates.rank(&seats_left, 2, 10);
    let flights: Vec<&str> = routes
        .iter()
        .map(|route| route.segments.last().unwrap().flight.as_str())
        .collect();
    assert_eq!(flights, ["F7", "F4"]);
    assert_eq!(candidates.rank(&seats_left, 2, 1).len(), 1);
    let shared = routes[1].segments[0].seats_left;
    assert_eq!(shared, 5);
}
