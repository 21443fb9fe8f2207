//! `trecho admin`: moving slots between shards, adding and removing shards,
//! and rebalancing.
//!
//! Each command reads `cluster.status`, plans with the pure functions of
//! `plan`, prints the plan, and hands it to `runner`, which moves the slots
//! in batches and shows progress on standard error. A command stopped by
//! Ctrl-C or an error can run again: it plans from the owners it finds and
//! skips slots already moved.
//!
//! Modules:
//! - `plan`: which slots go where, and the batches still to move.
//! - `runner`: the calls, retries and waits of a run.
//! - `progress`: the progress line and the summary.
//! - `report`: the plan as a table, and the JSON report.

mod plan;
mod progress;
mod report;
mod runner;

use anyhow::anyhow;
use trecho_client::AdminToken;
use trecho_common::protocol::methods::ClusterStatus;

use super::args::{
    AddShardArgs, AdminArgs, AdminCommand, MoveSlotsArgs, RebalanceArgs, RemoveShardArgs,
};
use super::output::note;
use plan::{balance_tolerance, ShardLoad, Transfer, MAX_REBALANCE_ROUNDS};
use progress::{slot_range, Summary};
use report::Report;
use runner::{explain, Runner, Session};

/// Runs an admin command.
pub(crate) async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::MoveSlots(args) => move_slots(args).await,
        AdminCommand::AddShard(args) => add_shard(args).await,
        AdminCommand::RemoveShard(args) => remove_shard(args).await,
        AdminCommand::Rebalance(args) => rebalance(args).await,
    }
}

async fn move_slots(args: MoveSlotsArgs) -> anyhow::Result<()> {
    let token = token_unless_dry_run(&args.admin, args.dry_run)?;
    let mut session = Session::connect(&args.admin.client.router).await?;
    let shards = shard_loads(&mut session).await?;
    let range = args.range;
    let plan = plan::range_plan(&shards, range.first, range.last, args.to)?;
    let reason = format!(
        "shard {} owns {} already",
        args.to,
        slot_range(range.first, range.last)
    );
    let job = Job {
        admin: &args.admin,
        token,
        shards: &shards,
        plan,
        empty_reason: &reason,
        rebalance: false,
    };
    job.carry_out(&mut session).await?;
    Ok(())
}

async fn add_shard(args: AddShardArgs) -> anyhow::Result<()> {
    let token = require_token(&args.admin)?;
    let json = args.admin.client.json;
    let mut session = Session::connect(&args.admin.client.router).await?;
    let status = read_status(&mut session).await?;
    let known = status.shards.iter().find(|s| s.address == args.address);
    let id = match known {
        Some(shard) => {
            say(
                json,
                &format!(
                    "shard {} at {} is in the shard map already; rebalancing onto it",
                    shard.id, args.address
                ),
            );
            shard.id
        }
        None => {
            let doing = format!("adding the shard at {} failed", args.address);
            let added = session
                .add_shard(token, &args.address)
                .await
                .map_err(|error| explain(error, &doing))?;
            say(
                json,
                &format!("added shard {} at {}", added.id, args.address),
            );
            added.id
        }
    };
    let shards = shard_loads(&mut session).await?;
    let plan = plan::rebalance_plan(&shards, &[id])?;
    let reason = balanced_reason(&shards, &[id]);
    let job = Job {
        admin: &args.admin,
        token: Some(token),
        shards: &shards,
        plan,
        empty_reason: &reason,
        rebalance: true,
    };
    job.carry_out(&mut session).await?;
    Ok(())
}

async fn remove_shard(args: RemoveShardArgs) -> anyhow::Result<()> {
    let token = token_unless_dry_run(&args.admin, args.dry_run)?;
    let mut session = Session::connect(&args.admin.client.router).await?;
    let shards = shard_loads(&mut session).await?;
    let plan = plan::remove_plan(&shards, args.id)?;
    let reason = format!("shard {} owns no slots", args.id);
    let job = Job {
        admin: &args.admin,
        token,
        shards: &shards,
        plan,
        empty_reason: &reason,
        rebalance: false,
    };
    let finished = job.carry_out(&mut session).await?;
    if token.is_none() {
        return Ok(());
    }
    let left = match finished {
        Some(status) => ShardLoad::from_status(&status),
        None => shards,
    };
    let slots = left
        .iter()
        .find(|s| s.id == args.id)
        .map_or(0, ShardLoad::slot_count);
    if slots > 0 {
        return Err(anyhow!(
            "shard {} still owns {slots} slots, which moved to it while the command ran; \
             run the same command again",
            args.id
        ));
    }
    let json = args.admin.client.json;
    say(
        json,
        &format!("shard {} owns no slots now and can be stopped", args.id),
    );
    Ok(())
}

async fn rebalance(args: RebalanceArgs) -> anyhow::Result<()> {
    let token = token_unless_dry_run(&args.admin, args.dry_run)?;
    let mut session = Session::connect(&args.admin.client.router).await?;
    let shards = shard_loads(&mut session).await?;
    let plan = plan::rebalance_plan(&shards, &[])?;
    let reason = balanced_reason(&shards, &[]);
    let job = Job {
        admin: &args.admin,
        token,
        shards: &shards,
        plan,
        empty_reason: &reason,
        rebalance: true,
    };
    job.carry_out(&mut session).await?;
    Ok(())
}

/// A planned command, ready to print and run.
struct Job<'a> {
    admin: &'a AdminArgs,
    /// `None` for a dry run.
    token: Option<&'a AdminToken>,
    /// The shards the plan was made from.
    shards: &'a [ShardLoad],
    plan: Vec<Transfer>,
    /// Explanation printed when the plan is empty.
    empty_reason: &'a str,
    /// Whether to plan the rebalance again from the new segment counts
    /// after each round, up to [`MAX_REBALANCE_ROUNDS`] rounds.
    rebalance: bool,
}

impl Job<'_> {
    /// Prints the plan, runs it unless this is a dry run, and prints the
    /// result. Returns the status read at the end of a run.
    async fn carry_out(self, session: &mut Session) -> anyhow::Result<Option<ClusterStatus>> {
        let json = self.admin.client.json;
        let projection = plan::project(self.shards, &self.plan);
        if !json {
            let text = report::plan(&self.plan, &projection, self.admin.batch, self.empty_reason);
            print!("{text}");
        }
        let mut outcome = None;
        match self.token {
            Some(token) if !self.plan.is_empty() => {
                outcome = Some(self.run(session, token).await?);
            }
            None if !self.plan.is_empty() => say(json, "dry run: nothing moved"),
            _ => {}
        }
        let moved = outcome.as_ref().map_or(&self.plan, |(_, _, plan)| plan);
        let summary = outcome.as_ref().map(|(_, summary, _)| summary);
        if json {
            let report = Report {
                plan: moved,
                shards: &projection,
                summary,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else if let Some((status, summary, _)) = &outcome {
            println!("done: {summary}");
            print!("{}", report::shards(&ShardLoad::from_status(status)));
        }
        Ok(outcome.map(|(status, _, _)| status))
    }

    /// Runs the plan and any further rounds of a rebalance until they
    /// finish, the operator presses Ctrl-C, or an error stops the run.
    /// Returns the final status, the totals, and every transfer planned.
    async fn run(
        &self,
        session: &mut Session,
        token: &AdminToken,
    ) -> anyhow::Result<(ClusterStatus, Summary, Vec<Transfer>)> {
        let mut runner = Runner::new(session, token, self.admin.batch);
        let mut planned = self.plan.clone();
        let rounds = self.rounds(&mut runner, &mut planned);
        let outcome = tokio::select! {
            result = rounds => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        };
        let summary = runner.finish();
        let status = match outcome {
            Some(result) => result,
            None => Err(runner.interrupted()),
        };
        match status {
            Ok(status) => Ok((status, summary, planned)),
            Err(error) => {
                if summary.moves > 0 {
                    note(&format!("before it stopped: {summary}"));
                }
                Err(error)
            }
        }
    }

    async fn rounds(
        &self,
        runner: &mut Runner<'_>,
        planned: &mut Vec<Transfer>,
    ) -> anyhow::Result<ClusterStatus> {
        let mut plan = self.plan.clone();
        let mut round = 1;
        loop {
            let status = runner.run(&plan).await?;
            if !self.rebalance || round == MAX_REBALANCE_ROUNDS {
                return Ok(status);
            }
            plan = plan::rebalance_plan(&ShardLoad::from_status(&status), &[])?;
            if plan.is_empty() {
                return Ok(status);
            }
            round += 1;
            let slots: u32 = plan.iter().map(Transfer::slot_count).sum();
            runner.note(format!(
                "segments per slot differ from the estimates; round {round} of \
                 {MAX_REBALANCE_ROUNDS} moves {slots} more slots"
            ));
            planned.extend_from_slice(&plan);
        }
    }
}

async fn read_status(session: &mut Session) -> anyhow::Result<ClusterStatus> {
    session
        .status()
        .await
        .map_err(|error| explain(error, "reading cluster.status failed"))
}

/// Maximum wait for every shard that owns slots to report its segments.
/// After a network cut, a router reports a shard as unhealthy for a few
/// seconds while it reconnects.
const HEALTHY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads every shard's slots and segments, waiting up to [`HEALTHY_WAIT`]
/// while a shard that owns slots does not report its segments. If a shard
/// is still silent after that, planning fails with an error naming it.
async fn shard_loads(session: &mut Session) -> anyhow::Result<Vec<ShardLoad>> {
    let deadline = tokio::time::Instant::now() + HEALTHY_WAIT;
    loop {
        let loads = ShardLoad::from_status(&read_status(session).await?);
        let silent = loads
            .iter()
            .find(|shard| !shard.slots.is_empty() && shard.segments.is_none());
        match silent {
            Some(shard) if tokio::time::Instant::now() < deadline => {
                eprintln!("waiting for shard {} to report its segments", shard.id);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            _ => return Ok(loads),
        }
    }
}

/// Explains why a rebalance over the shards with slots and the shards in
/// `include` has nothing to move.
fn balanced_reason(shards: &[ShardLoad], include: &[u32]) -> String {
    let members = shards
        .iter()
        .filter(|s| !s.slots.is_empty() || include.contains(&s.id));
    let (count, total) = members.fold((0u64, 0u64), |(count, total), shard| {
        (count + 1, total + shard.segments.unwrap_or(0))
    });
    if total == 0 {
        return format!("no shard owns segments, and the {count} shards own about as many slots");
    }
    let mean = total as f64 / count.max(1) as f64;
    format!(
        "the {count} shards are within {:.0} segments of the mean of {mean:.0}",
        balance_tolerance(mean)
    )
}

fn require_token(admin: &AdminArgs) -> anyhow::Result<&AdminToken> {
    admin.token.as_ref().ok_or_else(|| {
        anyhow!(
            "missing admin token: pass --token TOKEN or set TRECHO_ADMIN_TOKEN to the \
             router's admin token"
        )
    })
}

/// Returns the token, or `None` for a dry run, which needs none.
fn token_unless_dry_run(admin: &AdminArgs, dry_run: bool) -> anyhow::Result<Option<&AdminToken>> {
    if dry_run {
        return Ok(None);
    }
    require_token(admin).map(Some)
}

/// Prints a message for the operator on standard output, or on standard
/// error with `--json` so that standard output stays one JSON value.
fn say(json: bool, text: &str) {
    if json {
        note(text);
    } else {
        println!("{text}");
    }
}
