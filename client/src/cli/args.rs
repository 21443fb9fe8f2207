//! The command line's arguments, parsed with clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use trecho_common::protocol::DEFAULT_ROUTER_ADDR;
use trecho_common::time::Date;

pub(crate) use admin::{
    AddShardArgs, AdminArgs, AdminCommand, MoveSlotsArgs, RebalanceArgs, RemoveShardArgs,
};

/// trecho: book flight segments on a sharded cluster.
///
/// Start a local cluster with `trecho cluster`, then search and book from
/// another terminal, for example `trecho search GRU SSA`. Grow or shrink a
/// running cluster with `trecho admin`.
#[derive(Debug, Parser)]
#[command(name = "trecho", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// The commands that talk to the router.
    #[command(flatten)]
    Client(ClientCommand),
    /// Exit 0 when the router (or, with --internal, a shard) responds to a ping.
    Health(HealthArgs),
    /// Check the seat and booking invariants on every shard; exit 1 on any
    /// violation.
    Audit(AuditArgs),
    /// Move slots between shards, add and remove shards, and rebalance.
    /// Needs the router's admin token (--token or TRECHO_ADMIN_TOKEN).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Build schedule files.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Run a shard in this process.
    Shard(ShardNode),
    /// Run the router in this process.
    Router(RouterNode),
    /// Start a local cluster: shards and a router as child processes.
    Cluster(ClusterArgs),
    /// Measure throughput and latency of bookings on trecho, Redis or
    /// PostgreSQL, then check the seats taken on the server.
    Bench(crate::bench::BenchArgs),
}

/// The commands that talk to the router.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// List every airport of the schedule.
    Airports(ClientArgs),
    /// Search segments by origin, destination and date.
    Search(SearchArgs),
    /// Find itineraries from ORIGIN to DEST on a date, with connections.
    Routes(RoutesArgs),
    /// Book seats on one or more segments, confirmed at once.
    Book(BookArgs),
    /// Hold seats on one or more segments until confirmed or expired.
    Hold(HoldArgs),
    /// Confirm a held booking.
    Confirm(BookingArgs),
    /// Cancel a booking and release its seats.
    Cancel(BookingArgs),
    /// Show one booking.
    Booking(BookingArgs),
    /// List a passenger's bookings, newest first.
    Bookings(BookingsArgs),
    /// Show the shard map and each shard's health.
    Status(ClientArgs),
    /// Book the earliest-arriving itinerary from ORIGIN to DEST in one step.
    Trip(TripArgs),
}

/// Options of every client command.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClientArgs {
    /// Router address.
    #[arg(long, env = "TRECHO_ROUTER", default_value = DEFAULT_ROUTER_ADDR, value_name = "HOST:PORT")]
    pub(crate) router: String,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `trecho search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// Origin airport code, such as GRU.
    #[arg(value_parser = airport_code)]
    pub(crate) origin: String,
    /// Destination airport code.
    #[arg(value_parser = airport_code)]
    pub(crate) destination: Option<String>,
    /// Local departure date, YYYY-MM-DD.
    #[arg(long, value_parser = date)]
    pub(crate) date: Option<Date>,
    /// Maximum number of segments to list, 1 to 1000 [default: 100].
    #[arg(long)]
    pub(crate) limit: Option<u32>,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// `trecho routes`.
#[derive(Debug, Args)]
pub(crate) struct RoutesArgs {
    /// Origin airport code.
    #[arg(value_parser = airport_code)]
    pub(crate) origin: String,
    /// Destination airport code.
    #[arg(value_parser = airport_code)]
    pub(crate) destination: String,
    /// Local departure date at the origin, YYYY-MM-DD.
    #[arg(long, value_parser = date)]
    pub(crate) date: Date,
    /// Maximum number of connections, 0 to 3 [default: 1].
    #[arg(long)]
    pub(crate) stops: Option<u32>,
    /// Seats needed on every segment, 1 to 9 [default: 1].
    #[arg(long)]
    pub(crate) seats: Option<u32>,
    /// Maximum number of routes to list, 1 to 50 [default: 10].
    #[arg(long)]
    pub(crate) limit: Option<u32>,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// The passenger and seats of a booking.
#[derive(Debug, Clone, Args)]
pub(crate) struct PassengerArgs {
    /// Passenger's full name.
    #[arg(long)]
    pub(crate) name: String,
    /// Passenger's identity document number.
    #[arg(long)]
    pub(crate) document: String,
    /// Seats on every segment, 1 to 9 [default: 1].
    #[arg(long)]
    pub(crate) seats: Option<u32>,
}

/// `trecho book`.
#[derive(Debug, Args)]
pub(crate) struct BookArgs {
    /// Segment ids in travel order, such as AD4521-2026-12-20.
    #[arg(required = true, value_name = "SEGMENT")]
    pub(crate) segments: Vec<String>,
    #[command(flatten)]
    pub(crate) passenger: PassengerArgs,
    /// Idempotency key: the same command with the same key returns the
    /// same booking instead of booking again [default: a random key,
    /// printed].
    #[arg(long, value_name = "KEY")]
    pub(crate) request_id: Option<String>,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// `trecho hold`.
#[derive(Debug, Args)]
pub(crate) struct HoldArgs {
    #[command(flatten)]
    pub(crate) book: BookArgs,
    /// How long the seats are held before they are released, in seconds,
    /// 1 to 3600 [default: 600].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) hold_seconds: Option<u32>,
}

/// `trecho confirm`, `cancel` and `booking`.
#[derive(Debug, Args)]
pub(crate) struct BookingArgs {
    /// The booking's locator, six characters such as K7QX2M.
    pub(crate) id: String,
    /// The passenger's document number, which must match the booking's.
    #[arg(long)]
    pub(crate) document: String,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// `trecho bookings`.
#[derive(Debug, Args)]
pub(crate) struct BookingsArgs {
    /// The passenger's document number.
    pub(crate) document: String,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// `trecho trip`.
#[derive(Debug, Args)]
pub(crate) struct TripArgs {
    /// Origin airport code.
    #[arg(value_parser = airport_code)]
    pub(crate) origin: String,
    /// Destination airport code.
    #[arg(value_parser = airport_code)]
    pub(crate) destination: String,
    /// Local departure date at the origin, YYYY-MM-DD.
    #[arg(long, value_parser = date)]
    pub(crate) date: Date,
    /// Maximum number of connections, 0 to 3 [default: 1].
    #[arg(long)]
    pub(crate) stops: Option<u32>,
    #[command(flatten)]
    pub(crate) passenger: PassengerArgs,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// `trecho health`.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// Address to check; overrides --router.
    #[arg(value_name = "HOST:PORT")]
    pub(crate) address: Option<String>,
    /// Router address, used when no HOST:PORT is given.
    #[arg(long, env = "TRECHO_ROUTER", default_value = DEFAULT_ROUTER_ADDR, value_name = "HOST:PORT")]
    pub(crate) router: String,
    /// Ping a shard's internal protocol instead of the router.
    #[arg(long)]
    pub(crate) internal: bool,
    /// Time allowed for the pong, in milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub(crate) timeout_ms: u64,
}

/// `trecho audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Router address. The audit reads the shard map from the router, then
    /// connects to every shard at its address in that map, so it must run
    /// where those addresses resolve.
    #[arg(long, env = "TRECHO_ROUTER", default_value = DEFAULT_ROUTER_ADDR, value_name = "HOST:PORT")]
    pub(crate) router: String,
    /// How long a transaction may stay unsettled before it is reported as in
    /// doubt, in seconds. Keep it above the shards' prepare timeout.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub(crate) in_doubt_after: u64,
}

/// `trecho schedule ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Build a schedule from OpenFlights airports.dat, routes.dat and
    /// planes.dat.
    Import(ImportArgs),
}

/// `trecho schedule import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// OpenFlights airports.dat.
    #[arg(long, value_name = "FILE")]
    pub(crate) airports: PathBuf,
    /// OpenFlights routes.dat.
    #[arg(long, value_name = "FILE")]
    pub(crate) routes: PathBuf,
    /// OpenFlights planes.dat.
    #[arg(long, value_name = "FILE")]
    pub(crate) planes: PathBuf,
    /// Keep only routes between two airports of this country, as
    /// airports.dat names it, such as Brazil.
    #[arg(long)]
    pub(crate) country: Option<String>,
    /// Output schedule file.
    #[arg(long, default_value = "schedule.json", value_name = "FILE")]
    pub(crate) out: PathBuf,
}

/// `trecho shard`: the shard's own flags.
#[derive(Debug, Args)]
pub(crate) struct ShardNode {
    #[command(flatten)]
    pub(crate) args: trecho_shard::Args,
}

/// `trecho router`: the router's own flags.
#[derive(Debug, Args)]
pub(crate) struct RouterNode {
    #[command(flatten)]
    pub(crate) args: trecho_router::Args,
}

/// `trecho cluster`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClusterArgs {
    /// Number of shard processes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) shards: u32,
    /// Address the router accepts clients on. Shard i listens on the port
    /// after it plus i, or on a free port when that one is taken.
    #[arg(long, default_value = DEFAULT_ROUTER_ADDR, value_name = "HOST:PORT")]
    pub(crate) listen: String,
    /// Folder for the shards' data, one subfolder per shard.
    #[arg(long, default_value = "./data", value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
    /// Schedule file for every process [default: the built-in schedule].
    #[arg(long, value_name = "FILE")]
    pub(crate) schedule: Option<PathBuf>,
    /// Days of segments each shard creates when it first starts.
    #[arg(long)]
    pub(crate) days: Option<u32>,
    /// First day of segments, YYYY-MM-DD [default: today].
    #[arg(long, value_parser = date)]
    pub(crate) start_date: Option<Date>,
    /// Time allowed for every shard and the router to come up, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub(crate) ready_timeout: u64,
}

/// Reads an airport code, accepting lower case.
fn airport_code(text: &str) -> Result<String, String> {
    let code = text.to_ascii_uppercase();
    trecho_common::types::validate_airport("the airport code", &code)?;
    Ok(code)
}

fn date(text: &str) -> Result<Date, String> {
    Date::parse(text)
}

mod admin;
#[cfg(test)]
mod tests;
