//! `trecho-failure-tests`: breaks a running compose cluster in the ways
//! that matter in production and checks that trecho keeps its promises.
//!
//! It expects the cluster of `deploy/compose.yaml` up under a compose
//! project, with the router's port published on the host, and drives it
//! with the typed client and the docker command line. Run it through
//! `deploy/failure-tests.sh`, which builds the image, starts the project
//! and removes it afterwards. While a load of concurrent clients books,
//! holds, confirms and cancels (multi-segment trips included), it:
//!
//! 1. cuts a shard off the network and heals the cut;
//! 2. kills a shard with SIGKILL and starts it;
//! 3. kills the router with SIGKILL and starts it;
//! 4. cuts a shard off while trips are in flight;
//! 5. grows the cluster from 3 to 5 shards and back with `trecho admin`,
//!    cutting the target of one move off in the middle of it.
//!
//! After each one it retries every booking whose outcome a client did not
//! learn, checks every booking the clients received, and runs `trecho
//! audit` over the whole cluster. It first checks that the router and the
//! shard refuse shard maps that miss or repeat a slot. The exit status is 1
//! when any promise broke.

#![forbid(unsafe_code)]

mod check;
mod client;
mod docker;
mod load;
mod scenarios;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

use check::Report;
use docker::Docker;
use load::Catalog;
use scenarios::Context;

/// Failure tests against a running trecho compose cluster.
#[derive(Debug, Parser)]
#[command(name = "trecho-failure-tests")]
struct Args {
    /// The router's published address on the host.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "HOST:PORT")]
    router: String,
    /// The compose project the cluster runs under.
    #[arg(long)]
    project: String,
    /// The image of the cluster, used for the shard map checks.
    #[arg(long, default_value = "trecho:local")]
    image: String,
    /// Concurrent clients of the load.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Seed of the load's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the Tokio runtime starts");
    match runtime.block_on(run(args)) {
        Ok(reports) if reports.iter().all(Report::is_kept) => {
            println!("every scenario kept its promises");
            ExitCode::SUCCESS
        }
        Ok(reports) => {
            let failed: Vec<&str> = reports
                .iter()
                .filter(|r| !r.is_kept())
                .map(|r| r.name.as_str())
                .collect();
            println!("broken promises in: {}", failed.join("; "));
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: the failure tests could not run: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<Vec<Report>> {
    let docker = Docker::new(&args.project, &args.image);
    let mut reports = Vec::new();

    let temp = tempfile::tempdir().context("cannot create a temporary folder")?;
    reports.push(print(
        scenarios::reject_bad_maps(&docker, temp.path()).await?,
    ));

    let client = client::connect(&args.router)
        .await
        .with_context(|| format!("cannot reach the router at {}", args.router))?;
    let catalog = Catalog::load(&client).await?;
    drop(client);
    let context = Context {
        router: args.router,
        docker,
        catalog,
        clients: args.clients,
        seed: args.seed,
    };
    reports.push(print(scenarios::partition_shard(&context).await?));
    reports.push(print(scenarios::kill_shard(&context).await?));
    reports.push(print(scenarios::kill_router(&context).await?));
    reports.push(print(scenarios::partition_during_trips(&context).await?));
    reports.push(print(scenarios::grow_and_shrink(&context).await?));
    Ok(reports)
}

fn print(report: Report) -> Report {
    println!("{report}");
    report
}
