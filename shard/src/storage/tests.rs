use super::*;
use trecho_common::schedule::{Airport, Flight};

fn schedule() -> Schedule {
    let airport = |code: &str| Airport {
        code: code.into(),
        name: code.into(),
        city: code.into(),
        latitude: 0.0,
        longitude: 0.0,
        utc_offset_minutes: -180,
    };
    let flight = |number: &str| Flight {
        number: number.into(),
        origin: "GRU".into(),
        destination: "SSA".into(),
        departure_minutes: 600,
        duration_minutes: 150,
        aircraft: "320".into(),
        capacity: 180,
    };
    Schedule {
        airports: vec![airport("GRU"), airport("SSA")],
        flights: (1..=20).map(|n| flight(&format!("AD{n}"))).collect(),
    }
}

fn seed(dir: &Path) -> SeedSource {
    let path = dir.join("schedule.json");
    schedule().save(&path).unwrap();
    SeedSource {
        schedule: Some(path),
        start: Date::from_ymd(2026, 12, 20).unwrap(),
        days: 3,
    }
}

#[test]
fn seeding_keeps_owned_slots_and_reloads_identically() {
    let dir = tempfile::tempdir().unwrap();
    let map = ShardMap::parse_spec(1, "0=a:1@0-8191;1=b:1@8192-16383").unwrap();
    let source = seed(dir.path());
    let data = dir.path().join("data");
    let (_, seeded) = open(&data, 0, &map, &source).unwrap();
    assert!(seeded.len() > 0 && seeded.len() < 60);
    for (_, entry) in seeded.entries() {
        assert!(map.owns(0, entry.slot));
    }
    // A second start ignores the schedule, even one that is gone.
    let gone = SeedSource {
        schedule: Some(dir.path().join("missing.json")),
        ..source
    };
    let (_, loaded) = open(&data, 0, &map, &gone).unwrap();
    assert_eq!(loaded.len(), seeded.len());
    for (index, entry) in seeded.entries() {
        assert_eq!(loaded.entry(index), entry);
        assert_eq!(loaded.id(index), seeded.id(index));
    }
}

#[test]
fn data_dir_of_another_shard_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let map = ShardMap::parse_spec(1, "0=a:1@0-8191;1=b:1@8192-16383").unwrap();
    let source = seed(dir.path());
    let data = dir.path().join("data");
    open(&data, 0, &map, &source).unwrap();
    let err = open(&data, 1, &map, &source).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongShard {
                found: 0,
                expected: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn second_open_of_locked_dir_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let map = ShardMap::parse_spec(1, "0=a:1@0-8191;1=b:1@8192-16383").unwrap();
    let source = seed(dir.path());
    let data = dir.path().join("data");
    let (lock, _) = open(&data, 0, &map, &source).unwrap();

    let err = open(&data, 0, &map, &source).unwrap_err();
    let Error::Locked { path, holder_pid } = &err else {
        panic!("expected Error::Locked, got {err}");
    };
    assert_eq!(path, &data);
    // std leaves it to the platform whether a lock blocks reads through
    // other handles. `flock` on Unix does not, so the id is readable there.
    if cfg!(unix) {
        assert_eq!(*holder_pid, Some(std::process::id()));
    }
    let message = err.to_string();
    assert!(message.contains(&data.display().to_string()), "{message}");
    assert!(message.contains("another shard process"), "{message}");
    assert!(message.contains("stop that process"), "{message}");

    // Dropping the lock releases it, so the next open succeeds.
    drop(lock);
    let (_, reopened) = open(&data, 0, &map, &source).unwrap();
    assert!(reopened.len() > 0);
}

#[test]
fn changed_slots_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let seeded_map = ShardMap::parse_spec(1, "0=a:1@0-8191;1=b:1@8192-16383").unwrap();
    let source = seed(dir.path());
    let data = dir.path().join("data");
    open(&data, 0, &seeded_map, &source).unwrap();

    let moved = ShardMap::parse_spec(2, "0=a:1@0-4095;1=b:1@4096-16383").unwrap();
    let err = open(&data, 0, &moved, &source).unwrap_err();
    let Error::SlotsChanged {
        path,
        shard_id,
        seeded,
        configured,
    } = &err
    else {
        panic!("expected Error::SlotsChanged, got {err}");
    };
    assert_eq!(path, &data);
    assert_eq!(*shard_id, 0);
    assert_eq!(seeded, &[[0, 8191]]);
    assert_eq!(configured, &[[0, 4095]]);
    let message = err.to_string();
    assert!(message.contains("slots 0-8191"), "{message}");
    assert!(message.contains("slots 0-4095"), "{message}");
    assert!(message.contains("first started with"), "{message}");
    assert!(message.contains("trecho admin"), "{message}");

    // The rejected start changed nothing, so the original map still works.
    open(&data, 0, &seeded_map, &source).unwrap();
}

#[test]
fn unchanged_slots_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let map = ShardMap::parse_spec(1, "0=a:1@0-8191;1=b:1@8192-16383").unwrap();
    let source = seed(dir.path());
    let data = dir.path().join("data");
    let (_, seeded) = open(&data, 0, &map, &source).unwrap();

    let specs = [
        (1, "0=a:1@0-8191;1=b:1@8192-16383"),
        // Other addresses under a new version.
        (2, "0=c:2@0-8191;1=d:2@8192-16383"),
        // The same slots written as two ranges, out of order.
        (3, "0=a:1@4096-8191,0-4095;1=b:1@8192-16383"),
    ];
    for (version, spec) in specs {
        let map = ShardMap::parse_spec(version, spec).unwrap();
        let result = open(&data, 0, &map, &source);
        let (_, loaded) = result.unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(loaded.len(), seeded.len(), "{spec}");
    }
}

#[test]
fn missing_schedule_creates_no_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let map = ShardMap::parse_spec(1, "0=a:1@0-8191;1=b:1@8192-16383").unwrap();
    let missing = SeedSource {
        schedule: Some(dir.path().join("missing.json")),
        ..seed(dir.path())
    };
    let data = dir.path().join("data");

    let err = open(&data, 0, &map, &missing).unwrap_err();
    assert!(matches!(err, Error::Schedule(_)), "{err}");
    assert!(!data.exists(), "{} was created", data.display());
}

#[test]
fn merge_ranges_joins_touching_and_overlapping() {
    assert_eq!(merged(&[]), Vec::<[u16; 2]>::new());
    assert_eq!(merged(&[[5, 9], [0, 4]]), vec![[0, 9]]);
    assert_eq!(merged(&[[0, 10], [5, 7]]), vec![[0, 10]]);
    assert_eq!(merged(&[[0, 3], [5, 9]]), vec![[0, 3], [5, 9]]);
    assert_eq!(merged(&[[16383, 16383], [0, 16382]]), vec![[0, 16383]]);
}

#[test]
fn unfinished_seeding_takes_the_new_map() {
    let dir = tempfile::tempdir().unwrap();
    let source = seed(dir.path());
    let data = dir.path().join("data");
    let first = ShardMap::parse_spec(1, "0=a:1@0-8191;1=b:1@8192-16383").unwrap();
    open(&data, 0, &first, &source).unwrap();
    // A crash during the first seeding leaves meta.json without segments.
    fs::remove_file(data.join(SEGMENTS_FILE)).unwrap();

    let other = ShardMap::parse_spec(1, "0=a:1@0-4095;1=b:1@4096-16383").unwrap();
    let (_lock, catalog) = open(&data, 0, &other, &source).unwrap();

    assert!(catalog
        .entries()
        .all(|(_, entry)| other.owns(0, trecho_common::hashing::slot(&catalog.id_of(entry)))));
    let meta = fs::read_to_string(data.join(META_FILE)).unwrap();
    assert!(meta.contains("4095"), "{meta}");
}
