//! Fault-injection points for crash tests, off unless `TRECHO_FAILPOINTS`
//! names them.
//!
//! `TRECHO_FAILPOINTS` is a comma-separated list of point names. When the
//! code reaches a listed point, it writes `failpoint NAME reached` to
//! standard error and blocks the calling thread for good, so a test can
//! SIGKILL the process at exactly that step.

use std::io::Write;
use std::sync::OnceLock;

/// The environment variable that enables points.
pub const ENV: &str = "TRECHO_FAILPOINTS";

fn enabled() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var(ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Returns whether `TRECHO_FAILPOINTS` lists `name`, for code that must take
/// a slower path so that the point can be reached at all (the router sends
/// the first prepare alone only when `router.after_prepare_some` is on).
pub fn is_enabled(name: &str) -> bool {
    enabled().iter().any(|p| p == name)
}

/// Stops the process at `name` when `TRECHO_FAILPOINTS` lists it; otherwise
/// returns at once.
pub fn hit(name: &str) {
    if enabled().is_empty() || !enabled().iter().any(|p| p == name) {
        return;
    }
    tracing::error!(failpoint = name, "failpoint reached, stopping");
    let mut stderr = std::io::stderr();
    let _ = writeln!(stderr, "failpoint {name} reached");
    let _ = stderr.flush();
    loop {
        std::thread::park();
    }
}
