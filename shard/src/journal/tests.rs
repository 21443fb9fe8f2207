//! Journal tests: the line format, replay into a fresh state, a torn tail
//! cut off on replay, the zeros written ahead of the records, and records
//! this version cannot read.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use trecho_common::internal::{AuditReport, ShardOp, ShardReply};
use trecho_common::protocol::methods::BookRequest;
use trecho_common::schedule::SegmentSpec;
use trecho_common::shardmap::ShardMap;
use trecho_common::time::Date;
use trecho_common::types::{Locator, Passenger};

use super::{append, decode_line, encode, replay, Error, PREALLOCATE};
use crate::catalog::Catalog;
use crate::record::Record;
use crate::state::{Rng, State};

const SEGMENT: &str = "JT100-2026-12-20";

fn departure() -> i64 {
    let day = Date::from_ymd(2026, 12, 20).expect("valid date");
    day.midnight_unix(0) + 12 * 3600
}

fn now_ms() -> i64 {
    (departure() - 86_400) * 1000
}

/// Builds a single shard that owns every slot, with one segment of 10 seats.
fn state() -> State {
    let map = ShardMap::even(&["127.0.0.1:1".to_owned()]).expect("one shard covers every slot");
    let spec = SegmentSpec {
        id: SEGMENT.to_owned(),
        flight: "JT100".to_owned(),
        origin: "GRU".to_owned(),
        destination: "SSA".to_owned(),
        departure: departure(),
        arrival: departure() + 3600,
        departure_offset_minutes: -180,
        arrival_offset_minutes: -180,
        capacity: 10,
    };
    let catalog = Catalog::build([spec]).expect("valid segment");
    State::new(0, map, catalog, Rng::new(1), 5_000)
}

fn audit(state: &mut State) -> AuditReport {
    let mut records = Vec::new();
    match state.handle(ShardOp::Audit, now_ms(), &mut records) {
        Ok(ShardReply::Audit(report)) => report,
        other => panic!("expected an audit, got {other:?}"),
    }
}

/// Books `seats` on the segment, hold or not, and returns the records.
fn book(state: &mut State, seats: u32, hold_seconds: Option<u32>) -> Vec<Record> {
    let request = BookRequest {
        passenger: Passenger {
            name: "Ana Souza".to_owned(),
            document: "X1234567".to_owned(),
        },
        segments: vec![SEGMENT.to_owned()],
        seats,
        request_id: None,
        hold_seconds,
    };
    let mut records = Vec::new();
    let reply = state.handle(ShardOp::Book { request }, now_ms(), &mut records);
    assert!(matches!(reply, Ok(ShardReply::Booking { .. })), "{reply:?}");
    records
}

/// Builds a state with three records in it and returns it with them.
fn busy_state() -> (State, Vec<Record>) {
    let mut state = state();
    let mut records = book(&mut state, 2, None);
    records.extend(book(&mut state, 3, Some(600)));
    let Some(Record::Booked { locator, .. }) = records.last().cloned() else {
        panic!("expected a booking record, got {records:?}");
    };
    let cancel = ShardOp::Cancel {
        locator: locator.0,
        document: "X1234567".to_owned(),
    };
    let reply = state.handle(cancel, now_ms(), &mut records);
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(records.len(), 3);
    (state, records)
}

/// Writes `records` as plain lines, without zeros after them.
fn write_journal(path: &Path, records: &[Record]) {
    let mut bytes = Vec::new();
    for record in records {
        encode(record, &mut bytes);
    }
    write_raw(path, &bytes);
}

/// Appends raw bytes to the journal, as a crash mid-write would leave them.
fn write_raw(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the journal opens");
    file.write_all(bytes).expect("the bytes are written");
}

/// Returns one journal line whose checksum matches `json`.
fn line_with_valid_crc(json: &str) -> Vec<u8> {
    let crc = crc32fast::hash(json.as_bytes());
    format!("{crc:08x} {json}\n").into_bytes()
}

#[test]
fn encode_writes_checksum_json_newline() {
    let record = Record::Confirmed {
        locator: Locator::new(7, 3),
    };
    let mut buf = b"earlier bytes stay\n".to_vec();
    let start = buf.len();

    encode(&record, &mut buf);

    let line = &buf[start..];
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(line[8], b' ');
    let json = serde_json::to_vec(&record).expect("records serialize");
    assert_eq!(&line[9..line.len() - 1], json.as_slice());
    let crc = format!("{:08x}", crc32fast::hash(&json));
    assert_eq!(&line[..8], crc.as_bytes());
    assert_eq!(decode_line(&line[..line.len() - 1]), Some(json.as_slice()));
    assert_eq!(&buf[..start], b"earlier bytes stay\n");
}

#[test]
fn replay_rebuilds_the_served_state() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (mut served, records) = busy_state();
    write_journal(&path, &records);
    let size = fs::metadata(&path).expect("journal exists").len();

    let mut replayed = state();
    let (_file, stats) = replay(&path, &mut replayed).expect("the journal replays");

    assert_eq!(stats.records, 3);
    assert_eq!(stats.bytes, size);
    assert_eq!(stats.truncated, 0);
    assert_eq!(audit(&mut replayed), audit(&mut served));
    assert_eq!(audit(&mut replayed).segments[0].taken, 2);
}

#[test]
fn replay_of_missing_journal_creates_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let mut replayed = state();

    let (_file, stats) = replay(&path, &mut replayed).expect("an empty journal replays");

    assert_eq!(stats.records, 0);
    assert_eq!(stats.truncated, 0);
    assert!(path.exists());
    assert_eq!(replayed.booking_count(), 0);
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (_, records) = busy_state();
    write_journal(&path, &records[..2]);
    let intact = fs::metadata(&path).expect("journal exists").len();
    let mut third = Vec::new();
    encode(&records[2], &mut third);
    let torn = &third[..third.len() / 2];
    write_raw(&path, torn);

    let mut replayed = state();
    let (mut file, stats) = replay(&path, &mut replayed).expect("a torn tail is not an error");

    assert_eq!(stats.records, 2);
    assert_eq!(stats.bytes, intact);
    assert_eq!(stats.truncated, torn.len() as u64);
    assert_eq!(fs::metadata(&path).expect("journal exists").len(), intact);
    assert_eq!(audit(&mut replayed).segments[0].taken, 5);

    append(&mut file, &records[2..]).expect("appending after the cut works");
    drop(file);
    let mut again = state();
    let (_file, stats) = replay(&path, &mut again).expect("the journal replays");
    assert_eq!(stats.records, 3);
    assert_eq!(stats.truncated, 0);
    assert_eq!(audit(&mut again).segments[0].taken, 2);
}

#[test]
fn bad_checksum_line_is_truncated() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (_, records) = busy_state();
    write_journal(&path, &records[..1]);
    let intact = fs::metadata(&path).expect("journal exists").len();
    let mut line = Vec::new();
    encode(&records[1], &mut line);
    // Flip one bit in the JSON so the checksum no longer matches.
    let last_json_byte = line.len() - 2;
    line[last_json_byte] ^= 0x01;
    write_raw(&path, &line);

    let mut replayed = state();
    let (_file, stats) = replay(&path, &mut replayed).expect("a bad checksum is not an error");

    assert_eq!(stats.records, 1);
    assert_eq!(stats.truncated, line.len() as u64);
    assert_eq!(fs::metadata(&path).expect("journal exists").len(), intact);
    assert_eq!(replayed.booking_count(), 1);
}

#[test]
fn valid_checksum_unreadable_record_is_an_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (_, records) = busy_state();
    write_journal(&path, &records[..1]);
    write_raw(
        &path,
        &line_with_valid_crc(r#"{"type":"rebooked","txn":1}"#),
    );
    let size = fs::metadata(&path).expect("journal exists").len();

    let mut replayed = state();
    let error = replay(&path, &mut replayed).expect_err("an unknown record stops replay");

    match error {
        Error::Unreadable { path: at, line, .. } => {
            assert_eq!(at, path);
            assert_eq!(line, 2);
        }
        other => panic!("expected an unreadable record, got {other:?}"),
    }
    assert_eq!(
        fs::metadata(&path).expect("journal exists").len(),
        size,
        "an unreadable record is never cut off"
    );
}

#[test]
fn contradicting_record_is_an_apply_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (_, records) = busy_state();
    // Replaying the first booking twice reuses its transaction id.
    write_journal(&path, &[records[0].clone(), records[0].clone()]);

    let mut replayed = state();
    let error = replay(&path, &mut replayed).expect_err("a contradiction stops replay");

    assert!(matches!(error, Error::Apply { line: 2, .. }), "{error:?}");
}

#[test]
fn trailing_zeros_are_not_torn() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (_, records) = busy_state();
    let (mut file, _) = replay(&path, &mut state()).expect("an empty journal replays");
    append(&mut file, &records).expect("the records are written");
    drop(file);
    let mut plain = Vec::new();
    records.iter().for_each(|record| encode(record, &mut plain));
    let written = fs::metadata(&path).expect("journal exists").len();
    assert_eq!(written, plain.len() as u64 + PREALLOCATE);

    let mut replayed = state();
    let (_file, stats) = replay(&path, &mut replayed).expect("the journal replays");

    assert_eq!(stats.records, records.len() as u64);
    assert_eq!(stats.truncated, 0);
    assert_eq!(stats.preallocated, PREALLOCATE);
    assert_eq!(
        fs::metadata(&path).expect("journal exists").len(),
        plain.len() as u64
    );
    assert_eq!(audit(&mut replayed).segments[0].taken, 2);
}

#[test]
fn torn_record_in_zeros_truncated() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (_, records) = busy_state();
    let (mut file, _) = replay(&path, &mut state()).expect("an empty journal replays");
    append(&mut file, &records[..2]).expect("the records are written");
    drop(file);
    let mut intact = Vec::new();
    records[..2]
        .iter()
        .for_each(|record| encode(record, &mut intact));
    let mut third = Vec::new();
    encode(&records[2], &mut third);
    let torn = &third[..third.len() / 2];
    let raw = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("the journal opens");
    raw.write_all_at(torn, intact.len() as u64)
        .expect("the torn record is written");
    drop(raw);

    let mut replayed = state();
    let (_file, stats) = replay(&path, &mut replayed).expect("a torn tail is not an error");

    assert_eq!(stats.records, 2);
    assert_eq!(stats.truncated, torn.len() as u64);
    assert_eq!(stats.preallocated, PREALLOCATE - torn.len() as u64);
    assert_eq!(audit(&mut replayed).segments[0].taken, 5);
}

#[test]
fn journal_grows_past_its_zeros() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (mut file, _) = replay(&path, &mut state()).expect("an empty journal replays");
    let mut live = state();
    let mut records = Vec::new();
    let mut bytes = 0;
    // Book and cancel one seat until the records outgrow the zeros.
    while bytes <= PREALLOCATE as usize {
        let mut round = book(&mut live, 1, None);
        let Some(Record::Booked { locator, .. }) = round.last().cloned() else {
            panic!("expected a booking record, got {round:?}");
        };
        let cancel = ShardOp::Cancel {
            locator: locator.0,
            document: "X1234567".to_owned(),
        };
        live.handle(cancel, now_ms(), &mut round)
            .expect("the booking is cancelled");
        let mut encoded = Vec::new();
        round.iter().for_each(|record| encode(record, &mut encoded));
        bytes += encoded.len();
        append(&mut file, &round).expect("the records are written");
        records.extend(round);
    }
    drop(file);

    let (_file, stats) = replay(&path, &mut state()).expect("the journal replays");

    assert_eq!(stats.records, records.len() as u64);
    assert_eq!(stats.bytes, bytes as u64);
    assert_eq!(stats.truncated, 0);
    assert!(stats.preallocated > 0, "{stats:?}");
}

#[test]
fn damaged_line_before_intact_records_stops_replay() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (_, records) = busy_state();
    let mut bytes = Vec::new();
    encode(&records[0], &mut bytes);
    let second = bytes.len();
    records[1..]
        .iter()
        .for_each(|record| encode(record, &mut bytes));
    // Flip one bit inside the second record's JSON.
    bytes[second + 20] ^= 0x01;
    write_raw(&path, &bytes);

    let error = replay(&path, &mut state()).expect_err("a damaged middle stops replay");

    match error {
        Error::Damaged {
            line,
            offset,
            intact_after,
            ..
        } => {
            assert_eq!(line, 2);
            assert_eq!(offset, second as u64);
            assert_eq!(intact_after, 1);
        }
        other => panic!("expected a damaged journal, got {other}"),
    }
    let on_disk = fs::read(&path).expect("journal exists");
    assert_eq!(on_disk, bytes, "the journal is left as it was");
}

#[test]
fn record_after_a_hole_of_zeros_stops_replay() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (_, records) = busy_state();
    let mut bytes = Vec::new();
    encode(&records[0], &mut bytes);
    let second = bytes.len();
    encode(&records[1], &mut bytes);
    let third = bytes.len();
    encode(&records[2], &mut bytes);
    // The second record's end and its newline never reached the disk.
    bytes[second + 10..third].fill(0);
    write_raw(&path, &bytes);

    let error = replay(&path, &mut state()).expect_err("a hole before a record stops replay");

    assert!(
        matches!(
            error,
            Error::Damaged {
                line: 2,
                intact_after: 1,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn torn_tail_counts_written_bytes_only() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("journal.log");
    let (_, records) = busy_state();
    let (mut file, _) = replay(&path, &mut state()).expect("an empty journal replays");
    append(&mut file, &records[..1]).expect("the record is written");
    drop(file);
    // A stray byte at the very end, after the zeros written ahead.
    write_raw(&path, b"x");

    let (_file, stats) = replay(&path, &mut state()).expect("a torn tail is not an error");

    assert_eq!(stats.records, 1);
    assert_eq!(stats.truncated, 1);
    assert_eq!(stats.preallocated, PREALLOCATE);
}
