use super::*;

const AIRPORTS: &str = concat!(
    "1,\"Guarulhos, Sao Paulo\",\"Sao Paulo\",\"Brazil\",\"GRU\",\"SBGR\",",
    "-23.4356,-46.4731,2459,-3,\"S\",\"America/Sao_Paulo\",\"airport\",\"OurAirports\"\n",
    "2,\"Salvador \"\"Deputado\"\" Airport\",\"Salvador\",\"Brazil\",\"SSA\",\"SBSV\",",
    "-12.9086,-38.3225,64,-3,\"S\",\"America/Bahia\",\"airport\",\"OurAirports\"\n",
    "3,\"Manaus \\\"Eduardo Gomes\\\"\",\"Manaus\",\"Brazil\",\"MAO\",\"SBEG\",",
    "-3.0386,-60.0497,264,-4,\"S\",\"America/Manaus\",\"airport\",\"OurAirports\"   \n",
    "4,\"Ezeiza\",\"Buenos Aires\",\"Argentina\",\"EZE\",\"SAEZ\",",
    "-34.8222,-58.5358,67,-3,\"N\",\"America/Buenos_Aires\",\"airport\",\"OurAirports\"\r\n",
    "5,\"Codeless Field\",\"Nowhere\",\"Brazil\",\\N,\"SBXX\",",
    "-10.0,-50.0,0,-3,\"S\",\\N,\"airport\",\"OurAirports\"\n",
    "8,\"Offsetless Field\",\"Nowhere\",\"Brazil\",\"NOF\",\"SBNO\",",
    "-10.0,-50.0,0,\\N,\\N,\\N,\"airport\",\"OurAirports\"\n",
    "6,\"Broken \"quote\",\"Nowhere\",\"Brazil\",\"BRK\",\"SBBK\",",
    "-10.0,-50.0,0,-3,\"S\",\\N,\"airport\",\"OurAirports\"\n",
    "\n",
    "7,\"Indira Gandhi\",\"Delhi\",\"India\",\"DEL\",\"VIDP\",",
    "28.5665,77.1031,777,5.5,\"N\",\"Asia/Kolkata\",\"airport\",\"OurAirports\"\n",
);

const PLANES: &str = concat!(
    "\"Airbus A320\",\"320\",\"A320\"\n",
    "\"Boeing 737-800\",\"738\",\"B738\"\n",
    "\"Airbus A330\",\"330\",\\N\n",
    "\"Only two\",\"XXX\"\n",
);

/// Route lines, one per quirk, each with a label naming the quirk.
const ROUTE_CASES: &[(&str, &str)] = &[
    (
        "kept, first known type 738",
        "G3,1,GRU,1,SSA,2,,0,738 73G\r",
    ),
    ("kept, reverse direction", "G3,1,SSA,2,GRU,1,,0,73G"),
    ("duplicate of the first", "G3,1,GRU,1,SSA,2,,0,320"),
    ("codeshare", "LA,2,GRU,1,SSA,2,Y,0,320"),
    ("kept, ICAO type and code", "LA,2,SBGR,\\N,MAO,3,,0,A320"),
    ("other country", "AD,3,GRU,1,EZE,4,,0,E95"),
    ("kept abroad, fractional offset", "AD,3,GRU,1,DEL,7,,0,332"),
    ("unknown airport", "AD,3,GRU,1,XYZ,\\N,,0,E95"),
    ("airport without IATA code", "AD,3,GRU,1,SBXX,5,,0,E95"),
    ("airport without UTC offset", "AD,3,NOF,8,GRU,1,,0,E95"),
    ("with stops", "AD,3,GRU,1,SSA,2,,1,E95"),
    ("malformed: too few fields", "garbage line"),
    ("malformed: stops not a number", "AD,3,GRU,1,SSA,2,,x,E95"),
    ("malformed: one airport", "AD,3,GRU,1,GRU,1,,0,E95"),
    ("malformed: open quote", "AD,3,\"GRU,1,SSA,2,,0,E95"),
    (
        "kept, null airline and unknown type",
        "\\N,\\N,MAO,3,SSA,2,,0,ZZZ",
    ),
    (
        "kept, three-letter airline, no type",
        "ABC,9,SSA,2,MAO,3,,0,",
    ),
];

fn routes() -> String {
    let lines: Vec<&str> = ROUTE_CASES.iter().map(|(_, line)| *line).collect();
    lines.join("\n") + "\n\n"
}

fn import_brazil() -> (Schedule, ImportReport) {
    import(AIRPORTS, &routes(), PLANES, Some("Brazil")).unwrap_or_else(|e| panic!("{e}"))
}

fn flight<'a>(schedule: &'a Schedule, origin: &str, destination: &str) -> &'a Flight {
    schedule
        .flights
        .iter()
        .find(|f| f.origin == origin && f.destination == destination)
        .unwrap_or_else(|| panic!("no flight {origin}-{destination}"))
}

#[test]
fn report_counts_each_skip_reason() {
    let (_, report) = import_brazil();
    assert_eq!(report.routes_read, ROUTE_CASES.len());
    assert_eq!(report.flights, 5);
    assert_eq!(report.skipped_duplicate, 1);
    assert_eq!(report.skipped_codeshare, 1);
    assert_eq!(report.skipped_other_country, 2);
    assert_eq!(report.skipped_unknown_airport, 3);
    assert_eq!(report.skipped_with_stops, 1);
    assert_eq!(report.skipped_malformed, 4);
    let skipped = report.skipped_malformed
        + report.skipped_with_stops
        + report.skipped_unknown_airport
        + report.skipped_other_country
        + report.skipped_codeshare
        + report.skipped_duplicate;
    assert_eq!(report.flights + skipped, report.routes_read);
}

#[test]
fn report_counts_airports_and_planes() {
    let (_, report) = import_brazil();
    assert_eq!(report.airports_read, 5);
    assert_eq!(report.airports_without_code, 1);
    assert_eq!(report.airports_without_offset, 1);
    assert_eq!(report.airports_malformed, 1);
    assert_eq!(report.airports, 3);
    assert_eq!(report.planes_read, 3);
    assert_eq!(report.planes_malformed, 1);
}

#[test]
fn report_display_summarises() {
    let (_, report) = import_brazil();
    let text = report.to_string();
    assert!(
        text.starts_with("kept 5 flights between 3 airports in Brazil"),
        "{text}"
    );
    assert!(text.contains("1 duplicates"), "{text}");
    assert!(text.contains("3 with unknown airports"), "{text}");
}

#[test]
fn quoted_names_unescape() {
    let (schedule, _) = import_brazil();
    let name = |code: &str| schedule.airport(code).map(|a| a.name.clone());
    assert_eq!(name("GRU").as_deref(), Some("Guarulhos, Sao Paulo"));
    assert_eq!(
        name("SSA").as_deref(),
        Some("Salvador \"Deputado\" Airport")
    );
    assert_eq!(name("MAO").as_deref(), Some("Manaus \"Eduardo Gomes\""));
}

#[test]
fn only_used_airports_are_listed() {
    let (schedule, _) = import_brazil();
    let codes: Vec<&str> = schedule.airports.iter().map(|a| a.code.as_str()).collect();
    assert_eq!(codes, ["GRU", "MAO", "SSA"]);
    assert_eq!(
        schedule.airport("MAO").map(|a| a.utc_offset_minutes),
        Some(-240)
    );
}

#[test]
fn world_import_keeps_foreign_routes() {
    let (schedule, report) =
        import(AIRPORTS, &routes(), PLANES, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.flights, 7);
    assert_eq!(report.skipped_other_country, 0);
    assert_eq!(
        schedule.airport("DEL").map(|a| a.utc_offset_minutes),
        Some(330)
    );
    assert_eq!(flight(&schedule, "GRU", "DEL").aircraft, "332");
    assert_eq!(flight(&schedule, "GRU", "DEL").capacity, 250);
    assert!(schedule.validate().is_ok());
}

#[test]
fn country_filter_ignores_ascii_case() {
    let (_, report) =
        import(AIRPORTS, &routes(), PLANES, Some("brazil")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.flights, 5);
}

#[test]
fn seats_come_from_first_known_type() {
    let (schedule, _) = import_brazil();
    let gru_ssa = flight(&schedule, "GRU", "SSA");
    assert_eq!((gru_ssa.aircraft.as_str(), gru_ssa.capacity), ("738", 186));
    let ssa_gru = flight(&schedule, "SSA", "GRU");
    assert_eq!((ssa_gru.aircraft.as_str(), ssa_gru.capacity), ("73G", 144));
    let icao = flight(&schedule, "GRU", "MAO");
    assert_eq!((icao.aircraft.as_str(), icao.capacity), ("320", 174));
    let unknown = flight(&schedule, "MAO", "SSA");
    assert_eq!((unknown.aircraft.as_str(), unknown.capacity), ("ZZZ", 150));
    let none = flight(&schedule, "SSA", "MAO");
    assert_eq!((none.aircraft.as_str(), none.capacity), ("", 150));
}

#[test]
fn flight_numbers_use_airline_or_xx() {
    let (schedule, _) = import_brazil();
    assert!(flight(&schedule, "GRU", "SSA").number.starts_with("G3"));
    assert!(flight(&schedule, "GRU", "MAO").number.starts_with("LA"));
    assert!(flight(&schedule, "MAO", "SSA").number.starts_with("XX"));
    assert!(flight(&schedule, "SSA", "MAO").number.starts_with("XX"));
    for f in &schedule.flights {
        assert_eq!(f.number.len(), 6, "{}", f.number);
    }
}

#[test]
fn departure_and_duration_are_derived() {
    let (schedule, _) = import_brazil();
    let gru_ssa = flight(&schedule, "GRU", "SSA");
    let hash = derive::fnv1a(&["G3", "GRU", "SSA"]);
    assert_eq!(gru_ssa.departure_minutes, 300 + (hash % 217) as u32 * 5);
    assert_eq!(gru_ssa.number, format!("G3{}", 1000 + (hash >> 32) % 9000));
    let builtin = Schedule::builtin();
    let reference = builtin
        .flights
        .iter()
        .find(|f| f.origin == "GRU" && f.destination == "SSA")
        .map(|f| f.duration_minutes);
    assert_eq!(Some(gru_ssa.duration_minutes), reference);
    for f in &schedule.flights {
        assert!(
            (5 * 60..=23 * 60).contains(&f.departure_minutes),
            "{}",
            f.number
        );
        assert_eq!(f.departure_minutes % 5, 0, "{}", f.number);
    }
}

#[test]
fn import_is_deterministic() {
    let first = import_brazil();
    let second = import_brazil();
    assert_eq!(first.0, second.0);
    assert_eq!(first.1, second.1);
}

#[test]
fn unknown_country_is_an_error() {
    let error = import(AIRPORTS, &routes(), PLANES, Some("Atlantis")).map(|_| ());
    let message = error.map_err(|e| e.to_string()).unwrap_err();
    assert!(message.contains("kept no flights"), "{message}");
    assert!(message.contains("in Atlantis"), "{message}");
}

#[test]
fn colliding_numbers_take_next_free() {
    let mut numbers = FlightNumbers::default();
    let hash = 8999u64 << 32;
    assert_eq!(numbers.assign("G3", hash).as_deref(), Some("G39999"));
    assert_eq!(numbers.assign("G3", hash).as_deref(), Some("G31000"));
    assert_eq!(numbers.assign("AD", hash).as_deref(), Some("AD9999"));
}

#[test]
fn full_four_digits_move_to_five() {
    let mut numbers = FlightNumbers::default();
    for _ in 0..9000 {
        assert!(numbers.assign("G3", 0).is_some());
    }
    assert_eq!(numbers.assign("G3", 0).as_deref(), Some("G310000"));
}

/// Reads the OpenFlights snapshot when the workspace's shared data folder
/// has one. The files are large, so they stay outside the repository.
fn shared_data() -> Option<(String, String, String)> {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/openflights"
    ));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    match (read("airports.dat"), read("routes.dat"), read("planes.dat")) {
        (Some(airports), Some(routes), Some(planes)) => Some((airports, routes, planes)),
        _ => {
            eprintln!("skipped: no OpenFlights data in {}", dir.display());
            None
        }
    }
}

#[test]
fn openflights_snapshot_imports() {
    let Some((airports, routes, planes)) = shared_data() else {
        return;
    };
    let (brazil, report) =
        import(&airports, &routes, &planes, Some("Brazil")).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("Brazil: {report}");
    assert!(report.flights >= 1000, "{report}");
    assert!((100..=150).contains(&brazil.airports.len()), "{report}");
    assert!(brazil
        .flights
        .iter()
        .any(|f| f.origin == "GRU" && f.destination == "SSA"));
    let (world, report) =
        import(&airports, &routes, &planes, None).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("world: {report}");
    assert!(report.flights >= 30_000, "{report}");
    assert!(world.airports.len() >= 3000, "{report}");
    assert!(world.validate().is_ok());
}
