//! The failure scenarios. Each runs a load, breaks the cluster in one way,
//! repairs it, stops the load and checks every promise.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::check::{self, first_call, Report};
use crate::docker::Docker;
use crate::load::{Call, Catalog, Load, Mix, Outcome, Records};

/// Maximum time a request for a cut-off shard may take. The router's limit
/// for one shard request is 1 s, and a trip makes two rounds.
const FAIL_FAST_LIMIT: Duration = Duration::from_secs(3);
/// Maximum time after a repair until the shard serves requests again
/// through the same router.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);
/// Maximum time a killed container may take to come back, journal replay
/// included.
const RESTART_LIMIT: Duration = Duration::from_secs(60);
/// Load before the fault, so every client is busy when it hits.
const WARM_UP: Duration = Duration::from_secs(3);
/// Load after recovery, to show the cluster keeps working.
const COOL_DOWN: Duration = Duration::from_secs(2);

/// What every scenario needs.
pub(crate) struct Context {
    pub(crate) router: String,
    pub(crate) docker: Docker,
    pub(crate) catalog: Catalog,
    pub(crate) clients: usize,
    pub(crate) seed: u64,
}

impl Context {
    fn start_load(&self, mix: Mix, prefix: &str) -> Load {
        let seed = self.seed.wrapping_add(prefix.len() as u64);
        Load::start(&self.router, &self.catalog, self.clients, mix, prefix, seed)
    }

    /// Picks the shard a scenario breaks: the `index`-th, wrapping.
    fn shard(&self, index: usize) -> u32 {
        let ids = self.catalog.shard_ids();
        ids[index % ids.len()]
    }

    async fn finish(&self, mut records: Records, mut report: Report) -> Report {
        let client = match crate::client::connect(&self.router).await {
            Ok(client) => client,
            Err(error) => {
                report
                    .broken
                    .push(format!("cannot connect to the router to check: {error}"));
                return report;
            }
        };
        check::check_bookings(&client, &mut records, &mut report).await;
        check::audit(&self.docker, &mut report).await;
        report
    }
}

/// Cuts one shard off the network under load, then heals the cut.
pub(crate) async fn partition_shard(context: &Context) -> anyhow::Result<Report> {
    let shard = context.shard(1);
    let service = format!("shard-{shard}");
    let load = context.start_load(Mix::Mixed, "pa");
    tokio::time::sleep(WARM_UP).await;
    let cut = Instant::now();
    context.docker.disconnect(&service).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let healed = Instant::now();
    context.docker.reconnect(&service).await?;
    wait_for_success(&load, healed, shard, RECOVERY_LIMIT + COOL_DOWN).await;
    tokio::time::sleep(COOL_DOWN).await;
    let records = load.stop().await;

    let mut report = Report::new(
        &format!("1. shard {shard} cut off from the network"),
        &records,
    );
    let only = |call: &Call| call.shards == [shard];
    detect(&mut report, &records, shard, cut, |call| {
        only(call) && call.outcome == Outcome::Rejected("shard_unavailable".into())
    });
    check_fail_fast(&mut report, &records.calls, shard, cut, healed);
    check_others_served(&mut report, &records.calls, shard, cut, healed);
    recover(&mut report, &records, shard, healed, RECOVERY_LIMIT);
    Ok(context.finish(records, report).await)
}

/// Kills one shard with SIGKILL under load and starts it again.
pub(crate) async fn kill_shard(context: &Context) -> anyhow::Result<Report> {
    let shard = context.shard(2);
    let service = format!("shard-{shard}");
    let load = context.start_load(Mix::Mixed, "ks");
    tokio::time::sleep(WARM_UP).await;
    let killed = Instant::now();
    context.docker.kill(&service).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    context.docker.start(&service).await?;
    wait_for_success(&load, started, shard, RESTART_LIMIT).await;
    tokio::time::sleep(COOL_DOWN).await;
    let records = load.stop().await;

    let mut report = Report::new(&format!("2. shard {shard} killed and started"), &records);
    detect(&mut report, &records, shard, killed, |call| {
        call.shards == [shard] && call.outcome != Outcome::Ok
    });
    recover(&mut report, &records, shard, started, RESTART_LIMIT);
    Ok(context.finish(records, report).await)
}

/// Kills the router with SIGKILL under load, trips included, and starts it
/// again.
pub(crate) async fn kill_router(context: &Context) -> anyhow::Result<Report> {
    let load = context.start_load(Mix::Trips, "kr");
    tokio::time::sleep(WARM_UP).await;
    wait_for_trips(&load).await;
    let killed = Instant::now();
    context.docker.kill("router").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    context.docker.start("router").await?;
    wait_for_any_success(&load, started, RESTART_LIMIT).await;
    tokio::time::sleep(COOL_DOWN).await;
    let records = load.stop().await;

    let mut report = Report::new("3. router killed and started", &records);
    // The first failure to end after the kill, whenever it started.
    report.detect = records
        .calls
        .iter()
        .filter(|call| call.ended() >= killed && call.outcome != Outcome::Ok)
        .map(|call| call.ended() - killed)
        .min();
    report.recover = records
        .calls
        .iter()
        .filter(|call| call.started >= started && call.outcome == Outcome::Ok)
        .map(|call| call.ended() - started)
        .min();
    if report.recover.is_none() {
        report.broken.push(format!(
            "no request succeeded within {RESTART_LIMIT:?} of starting the router"
        ));
    }
    let cut_trips = records
        .calls
        .iter()
        .filter(|call| call.shards.len() > 1 && call.outcome == Outcome::ConnectionLost)
        .count();
    report
        .notes
        .push(format!("trips cut off by the kill: {cut_trips}"));
    if cut_trips == 0 {
        report
            .broken
            .push("no trip was in flight when the router was killed".to_owned());
    }
    Ok(context.finish(records, report).await)
}

/// Cuts a shard off exactly while multi-segment trips are in flight.
pub(crate) async fn partition_during_trips(context: &Context) -> anyhow::Result<Report> {
    let shard = context.shard(0);
    let service = format!("shard-{shard}");
    let load = context.start_load(Mix::Trips, "pt");
    tokio::time::sleep(WARM_UP).await;
    wait_for_trips(&load).await;
    let cut = Instant::now();
    context.docker.disconnect(&service).await?;
    let cut_done = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let healed = Instant::now();
    context.docker.reconnect(&service).await?;
    wait_for_success(&load, healed, shard, RECOVERY_LIMIT + COOL_DOWN).await;
    tokio::time::sleep(COOL_DOWN).await;
    let records = load.stop().await;

    let mut report = Report::new(
        &format!("4. shard {shard} cut off while trips are in flight"),
        &records,
    );
    detect(&mut report, &records, shard, cut, |call| {
        call.outcome != Outcome::Ok && call.outcome != Outcome::Rejected("sold_out".into())
    });
    check_fail_fast(&mut report, &records.calls, shard, cut, healed);
    report.recover = first_call(&records.calls, shard, healed, |call| {
        call.outcome == Outcome::Ok
    })
    .map(|call| call.ended() - healed);
    let recovered = matches!(report.recover, Some(time) if time <= RECOVERY_LIMIT);
    if !recovered {
        report.broken.push(format!(
            "no trip through shard {shard} succeeded within {RECOVERY_LIMIT:?} of the repair"
        ));
    }
    let overlapping = records
        .calls
        .iter()
        .filter(|call| call.shards.len() > 1 && call.touches(shard))
        .filter(|call| call.started <= cut_done && call.ended() >= cut)
        .count();
    report.notes.push(format!(
        "trips through shard {shard} in flight while the cut was made: {overlapping}"
    ));
    if overlapping == 0 {
        report
            .broken
            .push("no trip through the cut-off shard was in flight during the cut".to_owned());
    }
    Ok(context.finish(records, report).await)
}

/// Starts the router and a shard on shard maps that leave a slot without
/// an owner or give it two, and checks that both exit with an error that
/// names the slot.
pub(crate) async fn reject_bad_maps(docker: &Docker, dir: &Path) -> anyhow::Result<Report> {
    let cases = [
        (
            "gap",
            "[[0, 8000]]",
            "[[8002, 16383]]",
            "slots 8001-8001 have no owner",
        ),
        (
            "overlap",
            "[[0, 8001]]",
            "[[8001, 16383]]",
            "slot 8001 is owned by shards",
        ),
    ];
    let mut report = Report::new(
        "0. shard maps that miss or repeat a slot",
        &Records::default(),
    );
    for (name, first, second, expected) in cases {
        let config_dir = dir.join(name);
        std::fs::create_dir_all(&config_dir)?;
        let map = format!(
            "map_version = 1\n\n[[shard_map]]\nid = 0\naddress = \"shard-0:7001\"\nslots = {first}\n\n\
             [[shard_map]]\nid = 1\naddress = \"shard-1:7001\"\nslots = {second}\n"
        );
        std::fs::write(config_dir.join("cluster.toml"), map)?;
        let processes: [(&str, &[&str]); 2] = [
            ("trecho-router", &["TRECHO_LISTEN=127.0.0.1:7878"]),
            (
                "trecho-shard",
                &["TRECHO_ID=0", "TRECHO_DATA_DIR=/tmp/data"],
            ),
        ];
        for (binary, env) in processes {
            let command = [binary, "--config", "/etc/trecho/cluster.toml"];
            let container = format!("map-{name}-{binary}");
            let limit = Duration::from_secs(20);
            let exit = docker
                .run_once(&container, &config_dir, env, &command, limit)
                .await?;
            report.sent += 1;
            let refused = matches!(exit.code, Some(code) if code != 0);
            if refused && exit.output.contains(expected) {
                *report.by_outcome.entry("refused".into()).or_default() += 1;
            } else {
                report.broken.push(format!(
                    "{binary} on a map with a slot {name} exited with {:?} instead of refusing \
                     with \"{expected}\"; output: {}",
                    exit.code, exit.output
                ));
            }
        }
    }
    Ok(report)
}

/// Sets the time from `since` to the end of the first call that `matches`.
fn detect(
    report: &mut Report,
    records: &Records,
    shard: u32,
    since: Instant,
    matches: impl Fn(&Call) -> bool,
) {
    let first = first_call(&records.calls, shard, since, matches);
    report.detect = first.map(|call| call.ended() - since);
    if report.detect.is_none() {
        report.broken.push(format!(
            "no request for shard {shard} failed as expected after the fault"
        ));
    }
}

/// Sets the time from `since` to the end of the first successful call for
/// `shard` alone, and fails when there is none within `limit`.
fn recover(report: &mut Report, records: &Records, shard: u32, since: Instant, limit: Duration) {
    let first = first_call(&records.calls, shard, since, |call| {
        call.shards == [shard] && call.outcome == Outcome::Ok
    });
    report.recover = first.map(|call| call.ended() - since);
    match report.recover {
        Some(time) if time <= limit => {}
        other => report.broken.push(format!(
            "shard {shard} served no request within {limit:?} of the repair (first after {other:?})"
        )),
    }
}

/// Fails when a request for the cut-off shard took longer than
/// [`FAIL_FAST_LIMIT`].
fn check_fail_fast(report: &mut Report, calls: &[Call], shard: u32, cut: Instant, healed: Instant) {
    let slow: Vec<&Call> = calls
        .iter()
        .filter(|call| call.touches(shard) && call.started >= cut && call.started < healed)
        .filter(|call| call.elapsed > FAIL_FAST_LIMIT)
        .collect();
    let longest = calls
        .iter()
        .filter(|call| call.touches(shard) && call.started >= cut && call.started < healed)
        .map(|call| call.elapsed)
        .max()
        .unwrap_or_default();
    report.notes.push(format!(
        "longest request for shard {shard} during the fault: {:.2} s",
        longest.as_secs_f64()
    ));
    if !slow.is_empty() {
        report.broken.push(format!(
            "{} requests for the cut-off shard {shard} took longer than {FAIL_FAST_LIMIT:?}",
            slow.len()
        ));
    }
}

/// Fails when a request that needs no cut-off shard failed for lack of a
/// shard, and notes the success rate of those requests before and during
/// the cut.
fn check_others_served(
    report: &mut Report,
    calls: &[Call],
    shard: u32,
    cut: Instant,
    healed: Instant,
) {
    let others = |from: Instant, to: Instant| {
        calls
            .iter()
            .filter(move |call| !call.touches(shard) && call.started >= from && call.started < to)
    };
    let failed: Vec<&Call> = others(cut, healed)
        .filter(|call| {
            matches!(
                call.outcome.label(),
                "shard_unavailable" | "outcome_unknown" | "timeout" | "connection_lost"
            )
        })
        .collect();
    let rate = |from: Instant, to: Instant| {
        let ok = others(from, to)
            .filter(|c| c.outcome == Outcome::Ok)
            .count();
        ok as f64 / (to - from).as_secs_f64()
    };
    report.notes.push(format!(
        "successes per second on the other shards: {:.0} before the cut, {:.0} during it",
        rate(cut - WARM_UP, cut),
        rate(cut, healed)
    ));
    if let Some(example) = failed.first() {
        report.broken.push(format!(
            "{} requests that need no cut-off shard failed, the first with {} on shards {:?}",
            failed.len(),
            example.outcome.label(),
            example.shards
        ));
    }
}

/// Waits until a call for `shard` alone started after `since` succeeds, or
/// `limit` passes.
async fn wait_for_success(load: &Load, since: Instant, shard: u32, limit: Duration) {
    let deadline = since + limit;
    while Instant::now() < deadline && load.successes_since(since, Some(shard)) == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_any_success(load: &Load, since: Instant, limit: Duration) {
    let deadline = since + limit;
    while Instant::now() < deadline && load.successes_since(since, None) == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits, for at most [`WARM_UP`], until at least two trips wait for their
/// response, so that the fault that follows hits trips in flight.
async fn wait_for_trips(load: &Load) {
    let waiting = Instant::now();
    while load.trips_in_flight() < 2 && waiting.elapsed() < WARM_UP {
        tokio::task::yield_now().await;
    }
}

/// Timeout for one `trecho admin` command, including all its moves.
const ADMIN_LIMIT: Duration = Duration::from_secs(300);

/// Grows the cluster from 3 to 5 shards and shrinks it back under load,
/// with the target of one move cut off from the network in the middle of
/// it. The spare shards `shard-3` and `shard-4` run from the start and own
/// no slots.
pub(crate) async fn grow_and_shrink(context: &Context) -> anyhow::Result<Report> {
    let load = context.start_load(Mix::Mixed, "gs");
    tokio::time::sleep(WARM_UP).await;
    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    let admin = |args: &'static [&'static str]| {
        let docker = &context.docker;
        async move { (args, docker.admin(args, ADMIN_LIMIT).await) }
    };

    let (args, exit) = admin(&["add-shard", "shard-3:7001"]).await;
    note_admin(args, exit?, &mut outputs, &mut failures);

    // The second growth moves slots to shard-4 in many batches, so the cut
    // lands in one of them. That move's source resends the copy until
    // shard-4 is back.
    let growing = admin(&["add-shard", "shard-4:7001"]);
    let cut = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        context.docker.disconnect("shard-4").await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        context.docker.reconnect("shard-4").await
    };
    let ((args, exit), cut) = tokio::join!(growing, cut);
    cut?;
    note_admin(args, exit?, &mut outputs, &mut failures);

    for args in [&["remove-shard", "4"][..], &["remove-shard", "3"][..]] {
        let exit = context.docker.admin(args, ADMIN_LIMIT).await?;
        note_admin(args, exit, &mut outputs, &mut failures);
    }
    tokio::time::sleep(COOL_DOWN).await;
    let records = load.stop().await;

    let mut report = Report::new("5. grow from 3 to 5 shards and back under load", &records);
    let pauses: Vec<u64> = outputs.iter().flat_map(|o| pauses_in(o)).collect();
    report.notes.push(format!(
        "{} moves; write pause per move (ms): {pauses:?}",
        pauses.len()
    ));
    if pauses.is_empty() {
        report
            .broken
            .push("no move reported a write pause".to_owned());
    }
    report.broken.extend(failures);
    let client = crate::client::connect(&context.router).await?;
    let status = client.status().await?;
    for shard in status.shards.iter().filter(|s| s.id >= 3) {
        if !shard.slots.is_empty() {
            report.broken.push(format!(
                "shard {} still owns slots {:?} after its removal",
                shard.id, shard.slots
            ));
        }
    }
    let report = context.finish(records, report).await;
    for service in ["shard-3", "shard-4"] {
        context.docker.stop(service).await?;
    }
    Ok(report)
}

/// Keeps the output of one `trecho admin` run, and records a failure when
/// the command did not exit with code 0.
fn note_admin(
    args: &[&str],
    exit: crate::docker::Exit,
    outputs: &mut Vec<String>,
    failures: &mut Vec<String>,
) {
    if exit.code != Some(0) {
        failures.push(format!(
            "`trecho admin {}` ended with {:?}: {}",
            args.join(" "),
            exit.code,
            exit.output
        ));
    }
    outputs.push(exit.output);
}

/// Returns the write pause of every move in a `trecho admin` output, from
/// its progress lines ("..., last pause 12 ms | moved slots ...").
fn pauses_in(output: &str) -> Vec<u64> {
    output
        .lines()
        .filter(|line| line.contains("| moved slots"))
        .filter_map(|line| {
            let (_, after) = line.split_once("last pause ")?;
            after.split_once(" ms")?.0.parse().ok()
        })
        .collect()
}
