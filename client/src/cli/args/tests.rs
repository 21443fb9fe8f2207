use clap::{CommandFactory, Parser};

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("trecho").chain(args.iter().copied()))
}

#[test]
fn command_line_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn search_uppercases_codes_and_parses_date() {
    let cli = parse(&[
        "search",
        "gru",
        "ssa",
        "--date",
        "2026-12-20",
        "--limit",
        "5",
    ])
    .unwrap();
    let Command::Client(ClientCommand::Search(args)) = cli.command else {
        panic!("expected search")
    };
    assert_eq!(args.origin, "GRU");
    assert_eq!(args.destination.as_deref(), Some("SSA"));
    assert_eq!(args.date, Date::from_ymd(2026, 12, 20));
    assert_eq!(args.limit, Some(5));
    assert!(!args.client.json);
}

#[test]
fn search_rejects_invalid_code_and_date() {
    let error = parse(&["search", "GRUX"]).unwrap_err();
    assert!(
        error.to_string().contains("three capital letters"),
        "{error}"
    );
    let error = parse(&["search", "GRU", "--date", "20-12-2026"]).unwrap_err();
    assert!(error.to_string().contains("YYYY-MM-DD"), "{error}");
}

#[test]
fn router_flag_defaults_and_overrides() {
    let cli = parse(&["status"]).unwrap();
    let Command::Client(ClientCommand::Status(client)) = cli.command else {
        panic!("expected status")
    };
    // The default applies unless TRECHO_ROUTER is set in the test's
    // environment.
    if std::env::var_os("TRECHO_ROUTER").is_none() {
        assert_eq!(client.router, "127.0.0.1:7878");
    }
    let cli = parse(&["status", "--router", "10.1.2.3:9000", "--json"]).unwrap();
    let Command::Client(ClientCommand::Status(client)) = cli.command else {
        panic!("expected status")
    };
    assert_eq!(client.router, "10.1.2.3:9000");
    assert!(client.json);
}

#[test]
fn book_takes_several_segments_and_passenger() {
    let cli = parse(&[
        "book",
        "AD1-2026-12-20",
        "AD2-2026-12-20",
        "--name",
        "Ana Souza",
        "--document",
        "X1",
        "--seats",
        "2",
        "--request-id",
        "r-1",
    ])
    .unwrap();
    let Command::Client(ClientCommand::Book(args)) = cli.command else {
        panic!("expected book")
    };
    assert_eq!(args.segments, ["AD1-2026-12-20", "AD2-2026-12-20"]);
    assert_eq!(args.passenger.name, "Ana Souza");
    assert_eq!(args.passenger.document, "X1");
    assert_eq!(args.passenger.seats, Some(2));
    assert_eq!(args.request_id.as_deref(), Some("r-1"));
}

#[test]
fn book_requires_segment_name_and_document() {
    assert!(parse(&["book", "--name", "A", "--document", "X1"]).is_err());
    assert!(parse(&["book", "AD1-2026-12-20", "--document", "X1"]).is_err());
    assert!(parse(&["book", "AD1-2026-12-20", "--name", "A"]).is_err());
}

#[test]
fn hold_takes_hold_seconds() {
    let cli = parse(&[
        "hold",
        "AD1-2026-12-20",
        "--name",
        "A",
        "--document",
        "X1",
        "--hold-seconds",
        "90",
    ])
    .unwrap();
    let Command::Client(ClientCommand::Hold(args)) = cli.command else {
        panic!("expected hold")
    };
    assert_eq!(args.hold_seconds, Some(90));
    assert_eq!(args.book.request_id, None);
}

#[test]
fn booking_commands_need_document() {
    for command in ["confirm", "cancel", "booking"] {
        assert!(parse(&[command, "K7QX2M"]).is_err(), "{command}");
        assert!(
            parse(&[command, "K7QX2M", "--document", "X1"]).is_ok(),
            "{command}"
        );
    }
}

#[test]
fn trip_needs_date_and_passenger() {
    assert!(parse(&["trip", "GRU", "SSA", "--name", "A", "--document", "X1"]).is_err());
    let cli = parse(&[
        "trip",
        "GRU",
        "SSA",
        "--date",
        "2026-12-20",
        "--name",
        "A",
        "--document",
        "X1",
        "--stops",
        "2",
    ])
    .unwrap();
    let Command::Client(ClientCommand::Trip(args)) = cli.command else {
        panic!("expected trip")
    };
    assert_eq!(args.stops, Some(2));
    assert_eq!(args.passenger.seats, None);
}

#[test]
fn cluster_defaults() {
    let cli = parse(&["cluster"]).unwrap();
    let Command::Cluster(args) = cli.command else {
        panic!("expected cluster")
    };
    assert_eq!(args.shards, 3);
    assert_eq!(args.listen, "127.0.0.1:7878");
    assert_eq!(args.data_dir, PathBuf::from("./data"));
    assert!(parse(&["cluster", "--shards", "0"]).is_err());
}

#[test]
fn schedule_import_needs_three_files() {
    assert!(parse(&["schedule", "import", "--airports", "a", "--routes", "r"]).is_err());
    let cli = parse(&[
        "schedule",
        "import",
        "--airports",
        "a.dat",
        "--routes",
        "r.dat",
        "--planes",
        "p.dat",
        "--country",
        "Brazil",
    ])
    .unwrap();
    let Command::Schedule(ScheduleCommand::Import(args)) = cli.command else {
        panic!("expected schedule import")
    };
    assert_eq!(args.out, PathBuf::from("schedule.json"));
    assert_eq!(args.country.as_deref(), Some("Brazil"));
}

#[test]
fn health_and_audit_parse_their_options() {
    let cli = parse(&["health", "--internal", "shard-0:7001"]).unwrap();
    let Command::Health(args) = cli.command else {
        panic!("expected health")
    };
    assert!(args.internal);
    assert_eq!(args.address.as_deref(), Some("shard-0:7001"));
    assert_eq!(args.timeout_ms, 2000);

    let cli = parse(&["health", "--router", "10.0.0.2:7878"]).unwrap();
    let Command::Health(args) = cli.command else {
        panic!("expected health")
    };
    assert_eq!(args.address, None);
    assert_eq!(args.router, "10.0.0.2:7878");

    let cli = parse(&[
        "audit",
        "--router",
        "10.0.0.1:7878",
        "--in-doubt-after",
        "20",
    ])
    .unwrap();
    let Command::Audit(args) = cli.command else {
        panic!("expected audit")
    };
    assert_eq!(args.router, "10.0.0.1:7878");
    assert_eq!(args.in_doubt_after, 20);
    assert!(parse(&["audit", "--in-doubt-after", "soon"]).is_err());
}

#[test]
fn admin_move_slots_takes_range_or_single_slot() {
    let cli = parse(&[
        "admin",
        "move-slots",
        "100-355",
        "--to",
        "3",
        "--batch",
        "64",
        "--token",
        "s3cret",
    ])
    .unwrap();
    let Command::Admin(AdminCommand::MoveSlots(args)) = cli.command else {
        panic!("expected admin move-slots")
    };
    assert_eq!((args.range.first, args.range.last), (100, 355));
    assert_eq!(args.to, 3);
    assert_eq!(args.admin.batch, 64);
    assert!(!args.dry_run);

    let cli = parse(&["admin", "move-slots", "16383", "--to", "0"]).unwrap();
    let Command::Admin(AdminCommand::MoveSlots(args)) = cli.command else {
        panic!("expected admin move-slots")
    };
    assert_eq!((args.range.first, args.range.last), (16383, 16383));
    assert_eq!(args.admin.batch, 256);
}

#[test]
fn admin_move_slots_rejects_bad_ranges() {
    for range in ["16384", "10-5", "a-b", "5-", "-3"] {
        let error = parse(&["admin", "move-slots", range, "--to", "1"]).unwrap_err();
        assert!(error.to_string().contains("slot"), "{range}: {error}");
    }
    assert!(parse(&["admin", "move-slots", "1-2"]).is_err());
    for batch in ["0", "16385"] {
        let args = ["admin", "rebalance", "--batch", batch];
        assert!(parse(&args).is_err(), "batch {batch}");
    }
}

#[test]
fn admin_token_stays_out_of_debug() {
    let cli = parse(&["admin", "rebalance", "--token", "s3cret-token"]).unwrap();
    let text = format!("{cli:?}");
    assert!(!text.contains("s3cret-token"), "{text}");
    let Command::Admin(AdminCommand::Rebalance(args)) = cli.command else {
        panic!("expected admin rebalance")
    };
    let token = args.admin.token.expect("token parsed");
    assert_eq!(token.0, "s3cret-token");
}

#[test]
fn admin_commands_parse_their_arguments() {
    let cli = parse(&[
        "admin",
        "add-shard",
        "10.0.0.4:7001",
        "--router",
        "10.0.0.9:7878",
    ])
    .unwrap();
    let Command::Admin(AdminCommand::AddShard(args)) = cli.command else {
        panic!("expected admin add-shard")
    };
    assert_eq!(args.address, "10.0.0.4:7001");
    assert_eq!(args.admin.client.router, "10.0.0.9:7878");

    let cli = parse(&["admin", "remove-shard", "2", "--dry-run", "--json"]).unwrap();
    let Command::Admin(AdminCommand::RemoveShard(args)) = cli.command else {
        panic!("expected admin remove-shard")
    };
    assert_eq!(args.id, 2);
    assert!(args.dry_run);
    assert!(args.admin.client.json);
    assert!(parse(&["admin", "remove-shard", "two"]).is_err());
}
