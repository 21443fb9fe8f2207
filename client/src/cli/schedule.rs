//! `trecho schedule import`: builds a schedule file from OpenFlights data.

use std::path::Path;

use anyhow::Context;
use trecho_common::schedule::import::import;

use super::args::{ImportArgs, ScheduleCommand};

/// Runs a `schedule` subcommand.
pub(crate) fn run(command: ScheduleCommand) -> anyhow::Result<()> {
    match command {
        ScheduleCommand::Import(args) => run_import(&args),
    }
}

fn run_import(args: &ImportArgs) -> anyhow::Result<()> {
    let airports = read(&args.airports)?;
    let routes = read(&args.routes)?;
    let planes = read(&args.planes)?;
    let (schedule, report) = import(&airports, &routes, &planes, args.country.as_deref())
        .context("cannot build a schedule from the OpenFlights files")?;
    println!("{report}");
    schedule
        .save(&args.out)
        .context("cannot write the schedule")?;
    println!(
        "wrote {}; start a cluster on it with `trecho cluster --schedule {}`",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
