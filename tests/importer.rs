//! The OpenFlights importer on the real data set, and a cluster that
//! serves the imported schedule. Skipped, with a message, when the data set
//! is not next to the repository.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use trecho_client::{BookingStatus, RoutesParams, SearchParams};
use trecho_common::schedule::import::import;
use trecho_common::schedule::{Flight, Schedule};
use trecho_common::time::Date;
use trecho_tests::{node_binary, Cluster};

use common::{book_params, days_ahead};

/// The OpenFlights snapshot, next to the repository.
const OPENFLIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/openflights");

/// Returns the data folder, or `None` after printing why the test skips.
fn openflights() -> Option<PathBuf> {
    let dir = PathBuf::from(OPENFLIGHTS);
    let files = ["airports.dat", "routes.dat", "planes.dat"];
    if let Some(missing) = files.iter().find(|f| !dir.join(f).is_file()) {
        eprintln!(
            "skipped: {} not found; put the OpenFlights files in {OPENFLIGHTS} to run this test",
            missing
        );
        return None;
    }
    Some(dir)
}

fn read(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `trecho schedule import` when the `trecho` binary was built next
/// to `trecho-node`, and returns the schedule it wrote; `None` when the
/// binary is absent (`cargo test -p trecho-tests` does not build it).
fn import_with_cli(dir: &Path, out: &Path) -> Option<Schedule> {
    let binary = node_binary().with_file_name(format!("trecho{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        eprintln!(
            "the `trecho` command was not checked: {} is missing; build it with \
             `cargo build -p trecho-client`",
            binary.display()
        );
        return None;
    }
    let output = Command::new(&binary)
        .args(["schedule", "import", "--country", "Brazil", "--airports"])
        .arg(dir.join("airports.dat"))
        .arg("--routes")
        .arg(dir.join("routes.dat"))
        .arg("--planes")
        .arg(dir.join("planes.dat"))
        .arg("--out")
        .arg(out)
        .output()
        .expect("cannot run trecho schedule import");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "trecho schedule import failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("kept "),
        "no report of what was kept: {stdout}"
    );
    assert!(
        stdout.contains("skipped"),
        "no report of what was skipped: {stdout}"
    );
    Some(Schedule::load(out).expect("the imported schedule does not load"))
}

/// Compares two schedules, coordinates to within a micro-degree because
/// they pass through JSON as decimal text.
fn assert_same_schedule(written: &Schedule, expected: &Schedule) {
    assert_eq!(
        written.flights, expected.flights,
        "the command and the library differ"
    );
    assert_eq!(written.airports.len(), expected.airports.len());
    for (left, right) in written.airports.iter().zip(&expected.airports) {
        assert_eq!(
            (&left.code, &left.name, &left.city, left.utc_offset_minutes),
            (
                &right.code,
                &right.name,
                &right.city,
                right.utc_offset_minutes
            )
        );
        assert!(
            (left.latitude - right.latitude).abs() < 1e-6,
            "{}",
            left.code
        );
        assert!(
            (left.longitude - right.longitude).abs() < 1e-6,
            "{}",
            left.code
        );
    }
}

/// Returns the first imported flight from an airport the built-in
/// schedule does not have, so that serving it proves the import is used.
fn flight_only_imported(schedule: &Schedule) -> &Flight {
    let builtin = Schedule::builtin();
    schedule
        .flights
        .iter()
        .find(|f| builtin.airport(&f.origin).is_none())
        .expect("every imported airport is also built in")
}

#[tokio::test]
async fn imported_brazil_schedule_is_served() {
    let Some(dir) = openflights() else { return };
    let (schedule, report) = import(
        &read(&dir, "airports.dat"),
        &read(&dir, "routes.dat"),
        &read(&dir, "planes.dat"),
        Some("Brazil"),
    )
    .expect("the import failed");
    // The snapshot has 1,195 Brazilian domestic routes between 124
    // airports; duplicates and codeshares of one airport pair collapse.
    assert!(report.flights > 300, "{report}");
    assert!(report.flights <= 1195, "{report}");
    assert_eq!(report.flights, schedule.flights.len());
    assert!((100..=124).contains(&schedule.airports.len()), "{report}");
    assert!(report.skipped_other_country > 60_000, "{report}");
    for code in ["GRU", "SSA", "BSB", "POA", "MAO"] {
        assert!(schedule.airport(code).is_some(), "{code} missing");
    }
    schedule
        .validate()
        .expect("the imported schedule is invalid");

    let temp = tempfile::tempdir().expect("a temporary folder");
    let file = temp.path().join("brazil.json");
    match import_with_cli(&dir, &file) {
        Some(written) => assert_same_schedule(&written, &schedule),
        None => schedule.save(&file).expect("cannot write the schedule"),
    }

    let file_arg = file.display().to_string();
    let cluster = Cluster::builder(3)
        .shard_args(&["--schedule", &file_arg, "--days", "5"])
        .router_args(&["--schedule", &file_arg])
        .start()
        .await;
    let client = cluster.client().await;

    let airports = client.airports().await.expect("airports.list failed");
    let served: Vec<&str> = airports.airports.iter().map(|a| a.code.as_str()).collect();
    let mut imported: Vec<&str> = schedule.airports.iter().map(|a| a.code.as_str()).collect();
    imported.sort_unstable();
    assert_eq!(served, imported);

    let flight = flight_only_imported(&schedule);
    let date = days_ahead(2);
    let found = client
        .search(SearchParams {
            origin: Some(flight.origin.clone()),
            destination: Some(flight.destination.clone()),
            date: Some(Date::parse(&date).expect("a date")),
            limit: None,
        })
        .await
        .expect("segments.search failed");
    let segment_id = format!("{}-{date}", flight.number);
    let segment = found
        .segments
        .iter()
        .find(|s| s.id == segment_id)
        .unwrap_or_else(|| panic!("{segment_id} not served: {:?}", found.segments));
    assert_eq!(segment.capacity, flight.capacity);
    assert_eq!(segment.seats_left, flight.capacity);

    let routes = client
        .routes(RoutesParams {
            origin: flight.origin.clone(),
            destination: flight.destination.clone(),
            date: Date::parse(&date).expect("a date"),
            seats: Some(2),
            max_stops: Some(0),
            limit: None,
        })
        .await
        .expect("routes.find failed");
    assert!(!routes.coverage.partial);
    let direct = routes
        .routes
        .iter()
        .find(|r| r.segments.len() == 1 && r.segments[0].id == segment_id)
        .unwrap_or_else(|| panic!("no direct route on {segment_id}: {:?}", routes.routes));
    assert_eq!(direct.stops, 0);
    assert_eq!(direct.duration_minutes, flight.duration_minutes);

    let booking = client
        .create(book_params("IMPORT-1", &[&segment_id], 2))
        .await
        .expect("booking the imported flight failed");
    assert_eq!(booking.status, BookingStatus::Confirmed);
    let after = client
        .segment(&segment_id)
        .await
        .expect("segments.get failed");
    assert_eq!(after.seats_left, flight.capacity - 2);
}
