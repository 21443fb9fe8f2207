//! Renders results as the text the commands print.

use std::fmt::Write as _;

use trecho_common::internal::MoveView;
use trecho_common::protocol::methods::{
    AirportsResult, BookingsResult, ClusterStatus, Coverage, Route, RoutesResult,
};
use trecho_common::types::{Booking, Segment};

use super::table::{duration, local_time, thousands, Table};

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

/// Renders the shard map's version and one line per shard, then a line
/// for each move in progress and each shard without slots.
pub(crate) fn status(status: &ClusterStatus) -> String {
    status_at(status, unix_now_ms())
}

/// Renders [`status`] as of `now_ms`, Unix milliseconds, which dates the
/// write pauses of moves in progress.
fn status_at(status: &ClusterStatus, now_ms: i64) -> String {
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
        let slots = if slots.is_empty() {
            "none".to_owned()
        } else {
            slots.join(",")
        };
        table.push(vec![
            shard.id.to_string(),
            shard.address.clone(),
            slots,
            if shard.healthy { "yes" } else { "NO" }.to_owned(),
            count(shard.segments),
            count(shard.bookings),
        ]);
    }
    out.push_str(&table.render());
    for shard in &status.shards {
        if let Some(moving) = &shard.moving {
            let summary = move_summary(moving, now_ms);
            let _ = writeln!(out, "shard {} is {summary}", shard.id);
        }
    }
    for shard in status.shards.iter().filter(|s| s.slots.is_empty()) {
        let _ = writeln!(
            out,
            "shard {} owns no slots: stop it, or move slots to it with \
             `trecho admin add-shard {}`",
            shard.id, shard.address
        );
    }
    out
}

/// Describes a move in progress as of `now_ms`, Unix milliseconds:
/// "moving slots 100-355 to shard 3, 1,234 rows, paused 120 ms".
pub(crate) fn move_summary(moving: &MoveView, now_ms: i64) -> String {
    let slots = if moving.first == moving.last {
        format!("slot {}", moving.first)
    } else {
        format!("slots {}-{}", moving.first, moving.last)
    };
    // Shards report a move from its pause on, so the start is set. A start
    // of 0 or less would be a move reported before its pause.
    let state = if moving.paused_since_ms > 0 {
        let paused = (now_ms - moving.paused_since_ms).max(0);
        format!("paused {} ms", thousands(paused as u64))
    } else {
        "copying".to_owned()
    };
    format!(
        "moving {slots} to shard {}, {} rows, {state}",
        moving.target,
        thousands(moving.rows)
    )
}

/// Returns the current time in Unix milliseconds, or 0 when the clock is
/// before 1970.
pub(crate) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
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
    fn status_shows_moves_and_shards_without_slots() {
        let shard = |id: u32, slots: Vec<[u16; 2]>, moving| ShardStatusView {
            id,
            address: format!("127.0.0.1:{}", 7879 + id),
            slots,
            healthy: true,
            segments: Some(10),
            bookings: Some(0),
            moving,
        };
        let moving = MoveView {
            first: 100,
            last: 355,
            target: 1,
            version: 2,
            rows: 1234,
            paused_since_ms: 1_000_000,
        };
        let status = ClusterStatus {
            slots_total: 16384,
            map_version: 1,
            shards: vec![
                shard(0, vec![[0, 16383]], Some(moving)),
                shard(1, vec![], None),
            ],
        };
        let expected = "\
shard map version 1, 16384 slots, 2 of 2 shards healthy
SHARD  ADDRESS         SLOTS    HEALTHY  SEGMENTS  BOOKINGS
    0  127.0.0.1:7879  0-16383  yes            10         0
    1  127.0.0.1:7880  none     yes            10         0
shard 0 is moving slots 100-355 to shard 1, 1,234 rows, paused 120 ms
shard 1 owns no slots: stop it, or move slots to it with `trecho admin add-shard 127.0.0.1:7880`
";
        assert_eq!(status_at(&status, 1_000_120), expected);
    }

    #[test]
    fn move_before_pause_shows_copying() {
        let moving = MoveView {
            first: 7,
            last: 7,
            target: 2,
            version: 5,
            rows: 0,
            paused_since_ms: 0,
        };
        assert_eq!(
            move_summary(&moving, 1_000),
            "moving slot 7 to shard 2, 0 rows, copying"
        );
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
