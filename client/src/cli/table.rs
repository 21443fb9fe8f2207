//! Aligned text tables and the time and duration formats the tables use.

/// A table of text cells, rendered with columns padded to their widest cell
/// and separated by two spaces.
pub(crate) struct Table {
    headers: Vec<String>,
    right_aligned: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Starts a table with these column headers, every column aligned left.
    pub(crate) fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            right_aligned: vec![false; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Aligns the columns at these indexes to the right, as numbers are.
    pub(crate) fn right_align(mut self, columns: &[usize]) -> Self {
        for &column in columns {
            if let Some(flag) = self.right_aligned.get_mut(column) {
                *flag = true;
            }
        }
        self
    }

    /// Appends a row; missing cells print empty and extra cells are dropped.
    pub(crate) fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Renders the header and every row, one line each, with no trailing
    /// spaces.
    pub(crate) fn render(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        self.render_row(&self.headers, &widths, &mut out);
        for row in &self.rows {
            self.render_row(row, &widths, &mut out);
        }
        out
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }

    fn render_row(&self, row: &[String], widths: &[usize], out: &mut String) {
        let mut line = String::new();
        for (index, width) in widths.iter().enumerate() {
            let cell = row.get(index).map_or("", String::as_str);
            let padding = " ".repeat(width - cell.chars().count().min(*width));
            if index > 0 {
                line.push_str("  ");
            }
            if self.right_aligned[index] {
                line.push_str(&padding);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&padding);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Formats an RFC 3339 time as `2026-12-20 07:15 -03:00`: the local time
/// it carries, to the minute, and its offset (`Z` prints `+00:00`). Text in
/// another shape is returned unchanged.
pub(crate) fn local_time(rfc3339: &str) -> String {
    let Some((date, rest)) = rfc3339.split_once('T') else {
        return rfc3339.to_owned();
    };
    let offset_at = rest.find(['Z', 'z', '+', '-']);
    let (Some(clock), Some(offset_at)) = (rest.get(..5), offset_at) else {
        return rfc3339.to_owned();
    };
    let offset = match &rest[offset_at..] {
        "Z" | "z" => "+00:00",
        offset => offset,
    };
    format!("{date} {clock} {offset}")
}

/// Formats minutes as `3h05m`, or `45m` under an hour.
pub(crate) fn duration(minutes: u32) -> String {
    if minutes < 60 {
        format!("{minutes}m")
    } else {
        format!("{}h{:02}m", minutes / 60, minutes % 60)
    }
}

/// Formats a count with commas between groups of three digits: `12,345`.
pub(crate) fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
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
    fn columns_align_to_widest_cell() {
        let mut table = Table::new(&["CODE", "CITY", "SEATS"]).right_align(&[2]);
        table.push(vec!["GRU".into(), "São Paulo".into(), "7".into()]);
        table.push(vec!["SSA".into(), "Salvador".into(), "174".into()]);
        let expected = "\
CODE  CITY       SEATS
GRU   São Paulo      7
SSA   Salvador     174
";
        assert_eq!(table.render(), expected);
    }

    #[test]
    fn short_rows_leave_no_trailing_spaces() {
        let mut table = Table::new(&["A", "B"]);
        table.push(vec!["long cell".into()]);
        let rendered = table.render();
        assert_eq!(rendered, "A          B\nlong cell\n");
    }

    #[test]
    fn empty_table_prints_only_the_header() {
        assert_eq!(Table::new(&["ID", "STATUS"]).render(), "ID  STATUS\n");
    }

    #[test]
    fn local_time_keeps_offset_and_drops_seconds() {
        assert_eq!(
            local_time("2026-12-20T07:15:00-03:00"),
            "2026-12-20 07:15 -03:00"
        );
        assert_eq!(
            local_time("2026-12-20T10:15:30Z"),
            "2026-12-20 10:15 +00:00"
        );
        assert_eq!(
            local_time("2026-12-20T23:59:59.250+05:30"),
            "2026-12-20 23:59 +05:30"
        );
    }

    #[test]
    fn local_time_returns_unknown_shapes_unchanged() {
        assert_eq!(local_time("tomorrow"), "tomorrow");
        assert_eq!(local_time("2026-12-20T07"), "2026-12-20T07");
    }

    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn durations_print_hours_and_minutes() {
        assert_eq!(duration(45), "45m");
        assert_eq!(duration(60), "1h00m");
        assert_eq!(duration(185), "3h05m");
    }
}
