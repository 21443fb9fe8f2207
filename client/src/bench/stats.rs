//! Latency histograms, outcome counts and the summary printed at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::idle::IdleCost;

/// Highest latency the histogram records, in microseconds; a slower
/// response is recorded as this value.
const MAX_LATENCY_US: u64 = 60_000_000;

/// The counts of one load task, merged into one at the end.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    /// Latency of every request the server replied to, in microseconds.
    /// Rejections such as `sold_out` are replies and are recorded too.
    pub(crate) latency: Histogram<u64>,
    /// Requests that got a result.
    pub(crate) succeeded: u64,
    /// Bookings confirmed.
    pub(crate) bookings: u64,
    /// Seats those bookings took, counted once on every segment.
    pub(crate) seats: u64,
    /// Bookings whose outcome the bench cannot know: the reply was
    /// `outcome_unknown`, or none came (`timeout`, `connection_lost`). The
    /// bench sends no request id, so it cannot settle them by a retry.
    pub(crate) in_doubt: u64,
    /// Seats of those bookings, counted once on every segment.
    pub(crate) seats_in_doubt: u64,
    /// Failed requests by error kind, such as `sold_out` or `timeout`.
    pub(crate) errors: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("the histogram bounds are valid constants"),
            succeeded: 0,
            bookings: 0,
            seats: 0,
            in_doubt: 0,
            seats_in_doubt: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl Tally {
    /// Records one latency.
    pub(crate) fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency
            .saturating_record(micros.clamp(1, MAX_LATENCY_US));
    }

    /// Counts a failure of `kind`.
    pub(crate) fn fail(&mut self, kind: &str) {
        match self.errors.get_mut(kind) {
            Some(count) => *count += 1,
            None => {
                self.errors.insert(kind.to_owned(), 1);
            }
        }
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn merge(&mut self, other: &Tally) {
        self.latency
            .add(&other.latency)
            .expect("every tally has the same histogram bounds");
        self.succeeded += other.succeeded;
        self.bookings += other.bookings;
        self.seats += other.seats;
        self.in_doubt += other.in_doubt;
        self.seats_in_doubt += other.seats_in_doubt;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }

    /// Returns the number of failed requests.
    pub(crate) fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

impl Percentiles {
    /// Reads the percentiles of `histogram` (microseconds). An empty
    /// histogram gives zeros.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        let at = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: histogram.max() as f64 / 1000.0,
        }
    }
}

/// The server's own counts before and after the run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    /// Seats taken over every segment, before the run.
    pub(crate) seats_taken_before: u64,
    /// Seats taken over every segment, after the run.
    pub(crate) seats_taken_after: u64,
    /// Seats of the bookings confirmed to the bench.
    pub(crate) seats_confirmed: u64,
    /// Bookings whose outcome the bench could not learn, and their seats:
    /// each may or may not have been made.
    pub(crate) bookings_in_doubt: u64,
    pub(crate) seats_in_doubt: u64,
    /// Booking records the server added during the run.
    pub(crate) bookings_added: u64,
    /// Other problems found, such as trecho audit violations.
    pub(crate) problems: Vec<String>,
}

impl Check {
    /// Returns whether the seats taken during the run equal the seats of
    /// the confirmed bookings, the booking records match, and nothing else
    /// was found. Bookings in doubt may add their seats and records: the
    /// server may have made them before its reply was lost.
    pub(crate) fn passed(&self, bookings: u64) -> bool {
        let Some(taken) = self.seats_taken_after.checked_sub(self.seats_taken_before) else {
            return false;
        };
        let seats = self.seats_confirmed..=self.seats_confirmed + self.seats_in_doubt;
        let records = bookings..=bookings + self.bookings_in_doubt;
        seats.contains(&taken) && records.contains(&self.bookings_added) && self.problems.is_empty()
    }
}

/// The results of one run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) target: String,
    pub(crate) label: Option<String>,
    pub(crate) address: String,
    pub(crate) workload: String,
    pub(crate) connections: u32,
    pub(crate) depth: u32,
    pub(crate) seconds: f64,
    /// Requests the server replied to, with a result or an error.
    pub(crate) requests: u64,
    /// Requests answered per second.
    pub(crate) throughput: f64,
    pub(crate) succeeded: u64,
    pub(crate) bookings: u64,
    /// Bookings confirmed per second.
    pub(crate) bookings_per_second: f64,
    pub(crate) latency_ms: Percentiles,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) check: Option<Check>,
    pub(crate) check_passed: Option<bool>,
    /// Idle connections held open during the run, and their memory cost.
    pub(crate) idle: Option<IdleCost>,
}

impl Summary {
    /// Builds the summary of a run of `elapsed` that counted `tally`.
    pub(crate) fn new(run: RunInfo, tally: &Tally, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let requests = tally.succeeded + tally.failed();
        Summary {
            target: run.target,
            label: run.label,
            address: run.address,
            workload: run.workload,
            connections: run.connections,
            depth: run.depth,
            seconds,
            requests,
            throughput: requests as f64 / seconds,
            succeeded: tally.succeeded,
            bookings: tally.bookings,
            bookings_per_second: tally.bookings as f64 / seconds,
            latency_ms: Percentiles::of(&tally.latency),
            errors: tally.errors.clone(),
            check: None,
            check_passed: None,
            idle: None,
        }
    }

    /// Stores the server-side check and whether it passed.
    pub(crate) fn set_check(&mut self, check: Check) {
        self.check_passed = Some(check.passed(self.bookings));
        self.check = Some(check);
    }

    /// Formats the summary as a two-column table.
    pub(crate) fn to_table(&self) -> String {
        let mut rows: Vec<(&str, String)> = Vec::new();
        let target = match &self.label {
            Some(label) => format!("{} ({label}) at {}", self.target, self.address),
            None => format!("{} at {}", self.target, self.address),
        };
        rows.push(("target", target));
        rows.push((
            "load",
            format!(
                "{} workload, {} connections x {} in flight, {:.2} s",
                self.workload, self.connections, self.depth, self.seconds
            ),
        ));
        rows.push((
            "throughput",
            format!(
                "{} requests/s ({} answered)",
                thousands(self.throughput),
                self.requests
            ),
        ));
        rows.push((
            "bookings",
            format!(
                "{} confirmed, {}/s",
                self.bookings,
                thousands(self.bookings_per_second)
            ),
        ));

        let p = &self.latency_ms;
        rows.push((
            "latency ms",
            format!(
                "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                p.p50, p.p90, p.p99, p.p999, p.max
            ),
        ));
        rows.push(("errors", self.errors_text()));
        if let Some(idle) = &self.idle {
            rows.push(("idle", idle_text(idle)));
        }
        rows.push(("check", self.check_text()));

        let mut out = String::new();
        for (name, value) in rows {
            out.push_str(&format!("{name:<12}{value}\n"));
        }
        out
    }

    fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "none".to_owned();
        }
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        parts.join(", ")
    }

    fn check_text(&self) -> String {
        let Some(check) = &self.check else {
            return "skipped".to_owned();
        };
        let verdict = if self.check_passed == Some(true) {
            "passed"
        } else {
            "FAILED"
        };
        let mut text = format!(
            "{verdict}: seats taken {} -> {} (+{}), confirmed seats {}, booking records +{} \
             for {} bookings",
            check.seats_taken_before,
            check.seats_taken_after,
            check.seats_taken_after as i128 - check.seats_taken_before as i128,
            check.seats_confirmed,
            check.bookings_added,
            self.bookings
        );
        if check.bookings_in_doubt > 0 {
            text.push_str(&format!(
                ", and {} bookings in doubt ({} seats) that may or may not have been made",
                check.bookings_in_doubt, check.seats_in_doubt
            ));
        }
        for problem in &check.problems {
            text.push_str(&format!("\n            {problem}"));
        }
        text
    }
}

fn idle_text(idle: &IdleCost) -> String {
    let mut text = format!("{} connections open, sending nothing", idle.connections);
    let rss = (idle.server_rss_before_kib, idle.server_rss_after_kib);
    if let (Some(before), Some(after), Some(each)) = (rss.0, rss.1, idle.per_connection_kib()) {
        text.push_str(&format!(
            "; server resident memory {before} -> {after} KiB, {each:.1} KiB per connection"
        ));
    }
    text
}

/// The settings of a run that the summary repeats.
pub(crate) struct RunInfo {
    pub(crate) target: String,
    pub(crate) label: Option<String>,
    pub(crate) address: String,
    pub(crate) workload: String,
    pub(crate) connections: u32,
    pub(crate) depth: u32,
}

/// Formats a rate with thousands separators and no decimals.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_read_recorded_latencies() {
        let mut tally = Tally::default();
        for millis in 1..=1000u64 {
            tally.record(Duration::from_millis(millis));
        }
        let p = Percentiles::of(&tally.latency);
        // Three significant digits leave at most 0.1 % of error.
        assert!((p.p50 - 500.0).abs() <= 0.5, "p50 {}", p.p50);
        assert!((p.p90 - 900.0).abs() <= 1.0, "p90 {}", p.p90);
        assert!((p.p99 - 990.0).abs() <= 1.0, "p99 {}", p.p99);
        assert!((p.p999 - 999.0).abs() <= 1.0, "p99.9 {}", p.p999);
        assert!((p.max - 1000.0).abs() <= 1.0, "max {}", p.max);
    }

    #[test]
    fn latency_above_bound_is_clamped() {
        let mut tally = Tally::default();
        tally.record(Duration::from_secs(3600));
        assert_eq!(tally.latency.len(), 1);
        assert!(tally.latency.max() >= MAX_LATENCY_US - MAX_LATENCY_US / 1000);
    }

    #[test]
    fn merge_adds_counts_and_errors() {
        let mut first = Tally {
            succeeded: 3,
            bookings: 2,
            seats: 4,
            ..Tally::default()
        };
        first.fail("sold_out");
        first.record(Duration::from_micros(100));
        let mut second = Tally {
            succeeded: 1,
            ..Tally::default()
        };
        second.fail("sold_out");
        second.fail("timeout");
        second.record(Duration::from_micros(300));
        first.merge(&second);
        assert_eq!(first.succeeded, 4);
        assert_eq!(first.bookings, 2);
        assert_eq!(first.seats, 4);
        assert_eq!(first.errors.get("sold_out"), Some(&2));
        assert_eq!(first.errors.get("timeout"), Some(&1));
        assert_eq!(first.failed(), 3);
        assert_eq!(first.latency.len(), 2);
    }

    #[test]
    fn summary_counts_errors_as_answered() {
        let mut tally = Tally {
            succeeded: 90,
            bookings: 90,
            ..Tally::default()
        };
        for _ in 0..10 {
            tally.fail("sold_out");
        }
        let run = RunInfo {
            target: "trecho".into(),
            label: None,
            address: "127.0.0.1:7878".into(),
            workload: "hot".into(),
            connections: 2,
            depth: 1,
        };
        let summary = Summary::new(run, &tally, Duration::from_secs(2));
        assert_eq!(summary.requests, 100);
        assert_eq!(summary.throughput, 50.0);
        assert_eq!(summary.bookings_per_second, 45.0);
    }

    #[test]
    fn check_fails_on_seat_mismatch() {
        let check = |after: u64, added: u64| Check {
            seats_taken_before: 10,
            seats_taken_after: after,
            seats_confirmed: 5,
            bookings_in_doubt: 0,
            seats_in_doubt: 0,
            bookings_added: added,
            problems: Vec::new(),
        };
        assert!(check(15, 5).passed(5));
        assert!(!check(16, 5).passed(5));
        assert!(!check(15, 4).passed(5));
        assert!(!check(9, 5).passed(5));
    }

    #[test]
    fn check_allows_bookings_in_doubt() {
        let check = |after: u64, added: u64| Check {
            seats_taken_before: 10,
            seats_taken_after: after,
            seats_confirmed: 5,
            bookings_in_doubt: 2,
            seats_in_doubt: 4,
            bookings_added: added,
            problems: Vec::new(),
        };
        assert!(check(15, 5).passed(5), "none of them was made");
        assert!(check(17, 6).passed(5), "one of them was made");
        assert!(check(19, 7).passed(5), "both were made");
        assert!(!check(20, 7).passed(5), "more seats than in doubt");
        assert!(!check(19, 8).passed(5), "more records than in doubt");
        assert!(!check(14, 5).passed(5), "fewer seats than confirmed");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
