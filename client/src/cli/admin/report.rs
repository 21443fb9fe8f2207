//! The plan and result of an admin command, as text or JSON.

use serde::Serialize;

use super::plan::{Projection, ShardLoad, Transfer};
use super::progress::Summary;
use crate::cli::table::{thousands, Table};

/// Everything an admin command prints on standard output with `--json`.
#[derive(Debug, Serialize)]
pub(crate) struct Report<'a> {
    /// The transfers planned.
    pub(crate) plan: &'a [Transfer],
    /// Each shard before and after the plan.
    pub(crate) shards: &'a [Projection],
    /// Totals of the run, or `null` for a dry run or an empty plan.
    pub(crate) summary: Option<&'a Summary>,
}

/// Renders the plan: a header, one line per transfer, and each shard's
/// slots and segments before and after. An empty plan renders as
/// "nothing to move: `reason`".
pub(crate) fn plan(plan: &[Transfer], shards: &[Projection], batch: u16, reason: &str) -> String {
    if plan.is_empty() {
        return format!("nothing to move: {reason}\n");
    }
    let slots: u32 = plan.iter().map(Transfer::slot_count).sum();
    let segments: u64 = plan.iter().map(|t| t.segments).sum();
    let ranges = if plan.len() == 1 { "range" } else { "ranges" };
    let mut out = format!(
        "plan: move {} slots, about {} segments, in {} {ranges}, at most {batch} slots per move\n",
        thousands(slots.into()),
        thousands(segments),
        plan.len()
    );
    out.push_str(&transfers(plan));
    out.push('\n');
    out.push_str(&projections(shards));
    out.push_str("segments after the plan are estimates from each shard's segments per slot\n");
    out
}

fn transfers(plan: &[Transfer]) -> String {
    let mut table =
        Table::new(&["SLOTS", "COUNT", "FROM", "TO", "SEGMENTS"]).right_align(&[1, 2, 3, 4]);
    for transfer in plan {
        let range = if transfer.first == transfer.last {
            transfer.first.to_string()
        } else {
            format!("{}-{}", transfer.first, transfer.last)
        };
        table.push(vec![
            range,
            thousands(transfer.slot_count().into()),
            transfer.from.to_string(),
            transfer.to.to_string(),
            thousands(transfer.segments),
        ]);
    }
    table.render()
}

fn projections(shards: &[Projection]) -> String {
    let mut table = Table::new(&[
        "SHARD",
        "SLOTS NOW",
        "SLOTS AFTER",
        "SEGMENTS NOW",
        "SEGMENTS AFTER",
    ])
    .right_align(&[0, 1, 2, 3, 4]);
    let count = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), thousands);
    for shard in shards {
        table.push(vec![
            shard.id.to_string(),
            thousands(shard.slots_now.into()),
            thousands(shard.slots_after.into()),
            count(shard.segments_now),
            count(shard.segments_after),
        ]);
    }
    table.render()
}

/// Renders each shard's slots and segments, as read after a run.
pub(crate) fn shards(shards: &[ShardLoad]) -> String {
    let mut table = Table::new(&["SHARD", "SLOTS", "SEGMENTS"]).right_align(&[0, 1, 2]);
    for shard in shards {
        table.push(vec![
            shard.id.to_string(),
            thousands(shard.slot_count().into()),
            shard.segments.map_or_else(|| "-".to_owned(), thousands),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_plan_gives_reason() {
        let text = plan(&[], &[], 256, "shard 3 owns slots 0-9 already");
        assert_eq!(text, "nothing to move: shard 3 owns slots 0-9 already\n");
    }

    #[test]
    fn plan_lists_transfers_and_shards() {
        let transfers = [
            Transfer {
                first: 4096,
                last: 5460,
                from: 0,
                to: 1,
                segments: 840,
            },
            Transfer {
                first: 9000,
                last: 9000,
                from: 2,
                to: 1,
                segments: 1,
            },
        ];
        let shards = [
            Projection {
                id: 0,
                slots_now: 5461,
                slots_after: 4096,
                segments_now: Some(3360),
                segments_after: Some(2520),
            },
            Projection {
                id: 1,
                slots_now: 0,
                slots_after: 1366,
                segments_now: None,
                segments_after: None,
            },
        ];
        let expected = "\
plan: move 1,366 slots, about 841 segments, in 2 ranges, at most 256 slots per move
SLOTS      COUNT  FROM  TO  SEGMENTS
4096-5460  1,365     0   1       840
9000           1     2   1         1

SHARD  SLOTS NOW  SLOTS AFTER  SEGMENTS NOW  SEGMENTS AFTER
    0      5,461        4,096         3,360           2,520
    1          0        1,366             -               -
segments after the plan are estimates from each shard's segments per slot
";
        assert_eq!(plan(&transfers, &shards, 256, "unused"), expected);
    }
}
