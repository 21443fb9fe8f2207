//! `trecho audit`: the invariant checker of [`trecho_client::audit`] as a
//! command.

use std::time::Duration;

use trecho_client::audit::{check, Options};

use super::args::AuditArgs;

/// Audits the cluster behind `args.router`, prints the report, and fails
/// when it lists any violation.
pub(crate) async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let options = Options {
        in_doubt_after: Duration::from_secs(args.in_doubt_after),
        expected: Vec::new(),
    };
    let report = check(&args.router, &options).await?;
    println!("{report}");
    anyhow::ensure!(
        report.is_clean(),
        "the audit found {} violations; the report above lists them",
        report.violations.len()
    );
    Ok(())
}
