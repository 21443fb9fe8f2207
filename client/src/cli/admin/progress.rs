//! The progress line of a running admin command, and its summary.
//!
//! On a terminal the line is redrawn in place on standard error. Otherwise
//! each event (a finished move, a retry, a wait) prints one plain line, so
//! logs of a scripted run stay readable.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde::Serialize;
use trecho_common::protocol::methods::MoveSlotsResult;

use super::plan::Move;
use crate::cli::table::thousands;

/// Maximum length of the line drawn on a terminal, so that it does not
/// wrap and break the redraw.
const MAX_TERMINAL_LINE: usize = 110;

/// The destination of the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Redrawn in place on a terminal.
    Redraw,
    /// One plain line per event.
    Lines,
    /// Nowhere, for tests.
    #[cfg(test)]
    Silent,
}

/// Counters of a run and its current activity.
pub(crate) struct Progress {
    started: Instant,
    output: Output,
    total_slots: u32,
    moved_slots: u32,
    moves: u32,
    rows: u64,
    last_pause_ms: Option<u64>,
    max_pause_ms: u64,
    activity: String,
}

/// Totals of a finished run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    /// `admin.move_slots` calls that succeeded.
    pub(crate) moves: u32,
    /// Slots moved.
    pub(crate) slots: u32,
    /// Rows copied.
    pub(crate) rows: u64,
    /// Time the run took, in milliseconds.
    pub(crate) elapsed_ms: u64,
    /// Maximum write pause of one move, in milliseconds.
    pub(crate) max_pause_ms: u64,
}

impl Progress {
    /// Starts the clock. The line is redrawn in place when standard error
    /// is a terminal.
    pub(crate) fn start() -> Self {
        let output = if std::io::stderr().is_terminal() {
            Output::Redraw
        } else {
            Output::Lines
        };
        Self::new(Instant::now(), output)
    }

    fn new(started: Instant, output: Output) -> Self {
        Progress {
            started,
            output,
            total_slots: 0,
            moved_slots: 0,
            moves: 0,
            rows: 0,
            last_pause_ms: None,
            max_pause_ms: 0,
            activity: String::new(),
        }
    }

    /// Sets the slots still to move, as the latest plan counts them.
    pub(crate) fn set_remaining(&mut self, slots: u32) {
        self.total_slots = self.moved_slots + slots;
    }

    /// Records a finished move.
    pub(crate) fn record(&mut self, step: &Move, result: &MoveSlotsResult) {
        self.moves += 1;
        self.moved_slots += step.slot_count();
        self.total_slots = self.total_slots.max(self.moved_slots);
        self.rows += result.rows;
        self.last_pause_ms = Some(result.pause_ms);
        self.max_pause_ms = self.max_pause_ms.max(result.pause_ms);
        let text = format!(
            "moved {} from shard {} to shard {}",
            slot_range(step.first, step.last),
            step.from,
            step.to
        );
        self.event(text);
    }

    /// Shows the run's current activity. Redraws the line on a terminal,
    /// and prints it as a plain line otherwise.
    pub(crate) fn event(&mut self, activity: String) {
        self.activity = activity;
        if self.output == Output::Lines {
            let line = self.line(self.started.elapsed());
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        } else {
            self.redraw();
        }
    }

    /// Shows the run's current activity on a terminal only, for steps too
    /// frequent for plain lines.
    pub(crate) fn quiet_event(&mut self, activity: String) {
        self.activity = activity;
        self.redraw();
    }

    /// Redraws the line on a terminal, to update the times.
    pub(crate) fn redraw(&self) {
        if self.output != Output::Redraw {
            return;
        }
        let line: String = self
            .line(self.started.elapsed())
            .chars()
            .take(MAX_TERMINAL_LINE)
            .collect();
        let mut stderr = std::io::stderr().lock();
        // `\x1b[K` clears the rest of a longer previous line.
        let _ = write!(stderr, "\r{line}\x1b[K");
        let _ = stderr.flush();
    }

    /// Ends the line on a terminal, so that later output starts on its own
    /// line.
    pub(crate) fn close(&self) {
        if self.output == Output::Redraw {
            let _ = writeln!(std::io::stderr().lock());
        }
    }

    /// Renders the progress line as of `elapsed` after the start.
    fn line(&self, elapsed: Duration) -> String {
        let mut line = format!(
            "{}/{} slots, {} rows, {} elapsed",
            thousands(self.moved_slots.into()),
            thousands(self.total_slots.into()),
            thousands(self.rows),
            clock(elapsed)
        );
        if let Some(left) = self.time_left(elapsed) {
            line.push_str(&format!(", about {} left", clock(left)));
        }
        if let Some(pause) = self.last_pause_ms {
            line.push_str(&format!(", last pause {pause} ms"));
        }
        if !self.activity.is_empty() {
            line.push_str(" | ");
            line.push_str(&self.activity);
        }
        line
    }

    /// Estimates the time left from the rate of slots moved so far.
    fn time_left(&self, elapsed: Duration) -> Option<Duration> {
        if self.moved_slots == 0 {
            return None;
        }
        let left = self.total_slots.saturating_sub(self.moved_slots);
        let per_slot = elapsed.as_secs_f64() / f64::from(self.moved_slots);
        Some(Duration::from_secs_f64(per_slot * f64::from(left)))
    }

    /// Returns the totals of the run so far.
    pub(crate) fn summary(&self) -> Summary {
        Summary {
            moves: self.moves,
            slots: self.moved_slots,
            rows: self.rows,
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            max_pause_ms: self.max_pause_ms,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.moves == 1 { "move" } else { "moves" };
        write!(
            f,
            "{} {noun}, {} slots, {} rows in {}; longest write pause {} ms",
            self.moves,
            thousands(self.slots.into()),
            thousands(self.rows),
            clock(Duration::from_millis(self.elapsed_ms)),
            self.max_pause_ms
        )
    }
}

/// Formats `first-last`, or one slot as `first`.
pub(crate) fn slot_range(first: u16, last: u16) -> String {
    if first == last {
        format!("slot {first}")
    } else {
        format!("slots {first}-{last}")
    }
}

/// Formats a duration as `8.4 s` under a minute, `3m05s` under an hour,
/// and `1h02m` above.
pub(crate) fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds < 60 {
        format!("{:.1} s", duration.as_secs_f64())
    } else if seconds < 3600 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rows: u64, pause_ms: u64) -> MoveSlotsResult {
        MoveSlotsResult {
            from: 0,
            to: 3,
            map_version: 2,
            rows,
            pause_ms,
        }
    }

    fn step(first: u16, last: u16) -> Move {
        Move {
            first,
            last,
            from: 0,
            to: 3,
        }
    }

    #[test]
    fn line_before_first_move_has_no_estimate() {
        let mut progress = Progress::new(Instant::now(), Output::Silent);
        progress.set_remaining(1000);
        progress.activity = "moving slots 0-255 from shard 0 to shard 3".into();
        assert_eq!(
            progress.line(Duration::from_secs(2)),
            "0/1,000 slots, 0 rows, 2.0 s elapsed | moving slots 0-255 from shard 0 to shard 3"
        );
    }

    #[test]
    fn line_estimates_time_left_from_rate() {
        let mut progress = Progress::new(Instant::now(), Output::Silent);
        progress.set_remaining(1024);
        progress.moves = 1;
        progress.moved_slots = 256;
        progress.rows = 1234;
        progress.last_pause_ms = Some(120);
        assert_eq!(
            progress.line(Duration::from_secs(10)),
            "256/1,024 slots, 1,234 rows, 10.0 s elapsed, about 30.0 s left, last pause 120 ms"
        );
    }

    #[test]
    fn record_counts_slots_rows_and_longest_pause() {
        let mut progress = Progress::new(Instant::now(), Output::Silent);
        progress.set_remaining(512);
        progress.record(&step(0, 255), &result(100, 80));
        progress.record(&step(256, 511), &result(50, 30));
        let summary = progress.summary();
        assert_eq!(summary.moves, 2);
        assert_eq!(summary.slots, 512);
        assert_eq!(summary.rows, 150);
        assert_eq!(summary.max_pause_ms, 80);
        assert_eq!(progress.last_pause_ms, Some(30));
        assert_eq!(
            progress.activity,
            "moved slots 256-511 from shard 0 to shard 3"
        );
    }

    #[test]
    fn remaining_counts_on_top_of_moved() {
        let mut progress = Progress::new(Instant::now(), Output::Silent);
        progress.set_remaining(300);
        progress.record(&step(0, 99), &result(0, 0));
        progress.set_remaining(150);
        assert_eq!(progress.total_slots, 250);
    }

    #[test]
    fn summary_reads_as_one_line() {
        let summary = Summary {
            moves: 16,
            slots: 4095,
            rows: 123_456,
            elapsed_ms: 42_000,
            max_pause_ms: 180,
        };
        assert_eq!(
            summary.to_string(),
            "16 moves, 4,095 slots, 123,456 rows in 42.0 s; longest write pause 180 ms"
        );
    }

    #[test]
    fn clock_picks_unit_by_length() {
        assert_eq!(clock(Duration::from_millis(8400)), "8.4 s");
        assert_eq!(clock(Duration::from_secs(185)), "3m05s");
        assert_eq!(clock(Duration::from_secs(3720)), "1h02m");
    }
}
