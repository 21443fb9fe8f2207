//! Renders results as the text the commands print.

use std::fmt::Write as _;

use trecho_common::protocol::methods::{
    AirportsResult, BookingsResult, ClusterStatus, Coverage, Route, RoutesResult,
};
use trecho_common::types::{Booking, Segment};

use super::table::{duration, local_time, Table};

/// Renders one line per airport: code, name and city.
pub(crate) fn airports(result: &AirportsResult) -> String {
    let mut table = Table::new(&["CODE", "NAME", "CITY"]);
    for airport in &result.airports {
        table.push(vec![
            airport.code.clone(),
            airport.name.clone(),
            airport.city.clone(),
        ]);
    }
    table.render()
}

/// Renders one line per segment, with times in each airport's local time.
pub(crate) fn segments(segments: &[Segment]) -> String {
    let mut table = Table::new(&[
        "SEGMENT",
        "FROM",
        "TO",
        "DEPARTS",
        "ARRIVES",
        "SEATS LEFT",
        "CAPACITY",
    ])
    .right_align(&[5, 6]);
    for segment in segments {
        table.push(vec![
            segment.id.clone(),
            segment.origin.clone(),
            segment.destination.clone(),
            local_time(&segment.departure),
            local_time(&segment.arrival),
            segment.seats_left.to_string(),
            segment.capacity.to_string(),
        ]);
    }
    table.render()
}

/// Renders each route as a summary line followed by its segments,
/// indented.
pub(crate) fn routes(result: &RoutesResult) -> String {
    let mut out = String::new();
    for (index, route) in result.routes.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "route {}: {}", index + 1, route_summary(route));
        out.push_str(&indent(&segments(&route.segments)));
    }
    out
}

/// Describes a route: departure, arrival, duration, stops and seats left.
pub(crate) fn route_summary(route: &Route) -> String {
    let stops = match route.stops {
        0 => "nonstop".to_owned(),
        1 => "1 stop".to_owned(),
        n => format!("{n} stops"),
    };
    format!(
        "departs {}, arrives {}, {}, {stops}, {} seats left",
        local_time(&route.departure),
        local_time(&route.arrival),
        duration(route.duration_minutes),
        route.seats_left
    )
}

/// Renders a booking as labelled lines.
pub(crate) fn booking(booking: &Booking) -> String {
    let mut table = Table::new(&["booking", &booking.id]);
    let rows = [
        ("status", booking.status.to_string()),
        ("passenger", booking.passenger.name.clone()),
        ("document", booking.passenger.document.clone()),
        ("seats", booking.seats.to_string()),
        ("segments", booking.segments.join(", ")),
        ("created", local_time(&booking.created_at)),
    ];
    for (label, value) in rows {
        table.push(vec![label.to_owned(), value]);
    }
    if let Some(expires_at) = &booking.expires_at {
        table.push(vec!["expires".to_owned(), local_time(expires_at)]);
    }
    table.render()
}

/// Renders one line per booking, in the router's order (newest first).
pub(crate) fn bookings(result: &BookingsResult) -> String {
    let mut table = Table::new(&[
        "BOOKING", "STATUS", "SEATS", "SEGMENTS", "CREATED", "EXPIRES",
    ])
    .right_align(&[2]);
    for booking in &result.bookings {
        table.push(vec![
            booking.id.clone(),
            booking.status.to_string(),
            booking.seats.to_string(),
            booking.segments.join(", "),
            local_time(&booking.created_at),
            booking
                .expires_at
                .as_deref()
                .map(local_time)
                .unwrap_or_default(),
        ]);
    }
    table.render()
}

/// Renders the shard map's version and one line per shard.
pub(crate) fn status(status: &ClusterStatus) -> String {
    let healthy = status.shards.iter().filter(|s| s.healthy).count();
    let mut out = format!(
        "shard map version {}, {} slots, {healthy} of {} shards healthy\n",
        status.map_version,
        status.slots_total,
        status.shards.len()
    );
    let mut table = Table::new(&[
        "SHARD", "ADDRESS", "SLOTS", "HEALTHY", "SEGMENTS", "BOOKINGS",
    ])
    .right_align(&[0, 4, 5]);
    for shard in &status.shards {
        let slots: Vec<String> = shard
            .slots
            .iter()
            .map(|[first, last]| format!("{first}-{last}"))
            .collect();
        let count = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
        table.push(vec![
            shard.id.to_string(),
            shard.address.clone(),
            slots.join(","),
            if shard.healthy { "yes" } else { "NO" }.to_owned(),
            count(shard.segments),
            count(shard.bookings),
        ]);
    }
    out.push_str(&table.render());
    out
}

/// Returns a warning for a result that lacks some shards' data, or `None`
/// when every shard contributed.
pub(crate) fn coverage_warning(coverage: &Coverage) -> Option<String> {
    if !coverage.partial {
        return None;
    }
    let shards: Vec<String> = coverage
        .unavailable_shards
        .iter()
        .map(u32::to_string)
        .collect();
    let noun = if shards.len() == 1 { "shard" } else { "shards" };
    Some(format!(
        "warning: {noun} {} did not answer, so this result may be incomplete; \
         check them with `trecho status`",
        shards.join(", ")
    ))
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trecho_common::protocol::methods::ShardStatusView;
    use trecho_common::types::{BookingStatus, Passenger};

    fn segment(id: &str, origin: &str, destination: &str, times: (&str, &str)) -> Segment {
        Segment {
            id: id.into(),
            flight: id[..id.len() - 11].into(),
            origin: origin.into(),
            destination: destination.into(),
            departure: times.0.into(),
            arrival: times.1.into(),
            capacity: 174,
            seats_left: 12,
        }
    }

    #[test]
    fn segments_show_local_times_and_seats() {
        let rows = [segment(
            "AD4521-2026-12-20",
            "GRU",
            "MAO",
            ("2026-12-20T23:00:00-03:00", "2026-12-21T02:00:00-04:00"),
        )];
        let expected = "\
SEGMENT            FROM  TO   DEPARTS                  ARRIVES                  SEATS LEFT  CAPACITY
AD4521-2026-12-20  GRU   MAO  2026-12-20 23:00 -03:00  2026-12-21 02:00 -04:00          12       174
";
        assert_eq!(segments(&rows), expected);
    }

    #[test]
    fn route_summary_counts_stops_and_duration() {
        let first = segment(
            "AD1-2026-12-20",
            "GRU",
            "BSB",
            ("2026-12-20T07:00:00-03:00", "2026-12-20T08:45:00-03:00"),
        );
        let second = segment(
            "AD2-2026-12-20",
            "BSB",
            "MAO",
            ("2026-12-20T10:00:00-03:00", "2026-12-20T11:30:00-04:00"),
        );
        let route = Route {
            departure: first.departure.clone(),
            arrival: second.arrival.clone(),
            segments: vec![first, second],
            duration_minutes: 330,
            stops: 1,
            seats_left: 12,
        };
        assert_eq!(
            route_summary(&route),
            "departs 2026-12-20 07:00 -03:00, arrives 2026-12-20 11:30 -04:00, 5h30m, 1 stop, 12 seats left"
        );
    }

    #[test]
    fn booking_lists_expiry_only_when_held() {
        let mut held = Booking {
            id: "K7QX2M".into(),
            status: BookingStatus::Held,
            passenger: Passenger {
                name: "Ana Souza".into(),
                document: "X1".into(),
            },
            seats: 2,
            segments: vec!["AD1-2026-12-20".into(), "AD2-2026-12-20".into()],
            created_at: "2026-12-01T10:00:00Z".into(),
            expires_at: Some("2026-12-01T10:10:00Z".into()),
        };
        let text = booking(&held);
        assert!(
            text.starts_with("booking    K7QX2M\nstatus     held\n"),
            "{text}"
        );
        assert!(
            text.contains("segments   AD1-2026-12-20, AD2-2026-12-20\n"),
            "{text}"
        );
        assert!(
            text.ends_with("expires    2026-12-01 10:10 +00:00\n"),
            "{text}"
        );
        held.status = BookingStatus::Confirmed;
        held.expires_at = None;
        assert!(!booking(&held).contains("expires"));
    }

    #[test]
    fn status_marks_unhealthy_shards() {
        let status = ClusterStatus {
            slots_total: 16384,
            map_version: 1,
            shards: vec![
                ShardStatusView {
                    id: 0,
                    address: "127.0.0.1:7879".into(),
                    slots: vec![[0, 8191]],
                    healthy: true,
                    segments: Some(4200),
                    bookings: Some(3),
                    moving: None,
                },
                ShardStatusView {
                    id: 1,
                    address: "127.0.0.1:7880".into(),
                    slots: vec![[8192, 16383]],
                    healthy: false,
                    segments: None,
                    bookings: None,
                    moving: None,
                },
            ],
        };
        let expected = "\
shard map version 1, 16384 slots, 1 of 2 shards healthy
SHARD  ADDRESS         SLOTS       HEALTHY  SEGMENTS  BOOKINGS
    0  127.0.0.1:7879  0-8191      yes          4200         3
    1  127.0.0.1:7880  8192-16383  NO              -         -
";
        assert_eq!(super::status(&status), expected);
    }

    #[test]
    fn partial_coverage_names_missing_shards() {
        let full = Coverage {
            partial: false,
            unavailable_shards: vec![],
        };
        assert_eq!(coverage_warning(&full), None);
        let partial = Coverage {
            partial: true,
            unavailable_shards: vec![1, 2],
        };
        let warning = coverage_warning(&partial).unwrap();
        assert!(warning.contains("shards 1, 2 did not answer"), "{warning}");
    }
}
