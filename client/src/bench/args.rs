//! The options of `trecho bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use trecho_common::protocol::DEFAULT_ROUTER_ADDR;
use trecho_common::time::Date;

/// `trecho bench`: load generator for trecho, Redis and PostgreSQL.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// System under test. Redis and PostgreSQL run the same bookings as
    /// trecho: a Lua script, or one UPDATE ... WHERE taken + seats <=
    /// capacity per booking.
    #[arg(long, value_enum, default_value_t = Target::Trecho)]
    pub(crate) target: Target,
    /// Address of the trecho router, the Redis server or the PostgreSQL
    /// server [default: 127.0.0.1:7878, 127.0.0.1:6379 or 127.0.0.1:5432].
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) address: Option<String>,
    /// PostgreSQL user and database.
    #[arg(long, default_value = "postgres", value_name = "NAME")]
    pub(crate) pg_user: String,
    /// Kind of requests sent.
    #[arg(long, value_enum, default_value_t = Workload::Book)]
    pub(crate) workload: Workload,
    /// TCP connections to open.
    #[arg(short = 'c', long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) connections: u32,
    /// Requests in flight on each connection.
    #[arg(short = 'd', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) depth: u32,
    /// How long to send requests, in seconds; ignored with --requests.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = seconds)]
    pub(crate) duration: f64,
    /// Stop after this many requests instead of after --duration.
    #[arg(long, value_name = "COUNT")]
    pub(crate) requests: Option<u64>,
    /// Seats per booking, 1 to 9.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub(crate) seats: u32,
    /// Segments that the `hot` workload books.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) hot_segments: u32,
    /// Schedule file the cluster was started with [default: the built-in
    /// schedule].
    #[arg(long, value_name = "FILE")]
    pub(crate) schedule: Option<PathBuf>,
    /// First day of segments, as the cluster was started, YYYY-MM-DD
    /// [default: today in UTC].
    #[arg(long, value_parser = date)]
    pub(crate) start_date: Option<Date>,
    /// Days of segments, as the cluster was started.
    #[arg(long, default_value_t = 30)]
    pub(crate) days: u32,
    /// Seed of the random choices, so that runs repeat the same requests.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Worker threads of the load generator. It shares the machine with
    /// the server, so fewer threads leave more CPU time to the server.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) threads: u32,
    /// Time allowed for each response, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = seconds)]
    pub(crate) timeout: f64,
    /// Extra connections that stay open and send nothing during the run,
    /// to show what idle clients cost the server.
    #[arg(long, default_value_t = 0, value_name = "COUNT")]
    pub(crate) idle: u32,
    /// PID of the server process (the trecho router, redis-server) whose
    /// resident memory is read before and after the idle connections open.
    #[arg(long, value_name = "PID")]
    pub(crate) server_pid: Option<u32>,
    /// Skip the server-side check after the run.
    #[arg(long)]
    pub(crate) no_check: bool,
    /// Label printed with the results, such as `redis appendfsync always`.
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Target {
    /// A trecho router.
    Trecho,
    /// A Redis 7 server; the bench empties its database first.
    Redis,
    /// A PostgreSQL server; the bench recreates its two tables first.
    Postgres,
}

/// The kind of requests sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// Single-segment bookings spread uniformly over every segment.
    Book,
    /// Bookings on a few segments (--hot-segments) until they sell out.
    Hot,
    /// Two- and three-segment trips, whose segments mostly live on several
    /// shards (trecho only).
    Trip,
    /// 80 % reads (segments.search, routes.find, bookings.get) and 20 %
    /// single-segment bookings (trecho only).
    Mixed,
}

impl Target {
    /// Returns the name printed in results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Trecho => "trecho",
            Target::Redis => "redis",
            Target::Postgres => "postgres",
        }
    }

    fn default_address(self) -> &'static str {
        match self {
            Target::Trecho => DEFAULT_ROUTER_ADDR,
            Target::Redis => "127.0.0.1:6379",
            Target::Postgres => "127.0.0.1:5432",
        }
    }
}

impl Workload {
    /// Returns the name printed in results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Book => "book",
            Workload::Hot => "hot",
            Workload::Trip => "trip",
            Workload::Mixed => "mixed",
        }
    }
}

impl BenchArgs {
    /// Returns the address of the server under test.
    pub(crate) fn address(&self) -> String {
        self.address
            .clone()
            .unwrap_or_else(|| self.target.default_address().to_owned())
    }

    /// Returns the time allowed for each response.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    /// Returns how long to send requests, or `None` when --requests sets a
    /// count instead.
    pub(crate) fn run_time(&self) -> Option<Duration> {
        match self.requests {
            Some(_) => None,
            None => Some(Duration::from_secs_f64(self.duration)),
        }
    }

    /// Checks the combinations that clap cannot express.
    ///
    /// # Errors
    ///
    /// Returns a message for a workload that the target does not run.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let peer = self.target != Target::Trecho;
        if peer && matches!(self.workload, Workload::Trip | Workload::Mixed) {
            return Err(format!(
                "the {} workload runs only against trecho; use --workload book or hot with \
                 --target {}",
                self.workload.name(),
                self.target.name()
            ));
        }
        if self.server_pid.is_some() && self.idle == 0 {
            return Err(
                "--server-pid needs --idle COUNT, the idle connections to measure".to_owned(),
            );
        }
        if self.requests == Some(0) {
            return Err("--requests must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// Reads a positive number of seconds, at most one day.
fn seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("expected a number of seconds such as 10 or 0.5, got {text:?}"))?;
    if !(value > 0.0 && value <= 86_400.0) {
        return Err(format!(
            "seconds must be above 0 and at most 86400, got {text}"
        ));
    }
    Ok(value)
}

fn date(text: &str) -> Result<Date, String> {
    Date::parse(text)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A command line with only the bench's options.
    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(line: &[&str]) -> Result<BenchArgs, clap::Error> {
        let words = std::iter::once("bench").chain(line.iter().copied());
        Command::try_parse_from(words).map(|command| command.bench)
    }

    #[test]
    fn defaults_run_book_on_trecho() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.target, Target::Trecho);
        assert_eq!(args.workload, Workload::Book);
        assert_eq!(args.connections, 64);
        assert_eq!(args.depth, 1);
        assert_eq!(args.address(), DEFAULT_ROUTER_ADDR);
        assert_eq!(args.run_time(), Some(Duration::from_secs(10)));
        assert!(args.validate().is_ok());
    }

    #[test]
    fn short_flags_set_connections_and_depth() {
        let args = parse(&["-c", "8", "-d", "16", "--duration", "0.5"]).unwrap();
        assert_eq!(args.connections, 8);
        assert_eq!(args.depth, 16);
        assert_eq!(args.run_time(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn request_count_replaces_duration() {
        let args = parse(&["--requests", "1000"]).unwrap();
        assert_eq!(args.requests, Some(1000));
        assert_eq!(args.run_time(), None);
        let zero = parse(&["--requests", "0"]).unwrap();
        assert!(zero.validate().is_err());
    }

    #[test]
    fn peer_targets_get_their_default_ports() {
        let redis = parse(&["--target", "redis"]).unwrap();
        assert_eq!(redis.address(), "127.0.0.1:6379");
        let postgres = parse(&["--target", "postgres", "--workload", "hot"]).unwrap();
        assert_eq!(postgres.address(), "127.0.0.1:5432");
        assert!(postgres.validate().is_ok());
        let given = parse(&["--target", "redis", "--address", "127.0.0.1:7000"]).unwrap();
        assert_eq!(given.address(), "127.0.0.1:7000");
    }

    #[test]
    fn peer_target_rejects_trip_workload() {
        let args = parse(&["--target", "redis", "--workload", "trip"]).unwrap();
        let message = args.validate().unwrap_err();
        assert!(message.contains("only against trecho"), "{message}");
    }

    #[test]
    fn server_pid_needs_idle_connections() {
        let alone = parse(&["--server-pid", "42"]).unwrap();
        assert!(alone.validate().is_err());
        let with_idle = parse(&["--server-pid", "42", "--idle", "10000"]).unwrap();
        assert!(with_idle.validate().is_ok());
        assert_eq!(with_idle.idle, 10_000);
        assert_eq!(with_idle.server_pid, Some(42));
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        assert!(parse(&["-c", "0"]).is_err());
        assert!(parse(&["-d", "0"]).is_err());
        assert!(parse(&["--seats", "10"]).is_err());
        assert!(parse(&["--duration", "0"]).is_err());
        assert!(parse(&["--duration", "ten"]).is_err());
        assert!(parse(&["--workload", "scan"]).is_err());
    }
}
