//! State machine tests. Every request goes through [`State::handle`],
//! [`State::tick`], [`State::acknowledge`] or [`State::apply_outcome`] at
//! fixed times with a seeded generator.
//!
//! Every scenario ends by replaying the records it emitted into a fresh
//! state, which must show the same seats, bookings and audit.

use trecho_common::error::Error;
use trecho_common::hashing::slot;
use trecho_common::internal::{
    AuditReport, Release, ReservationState, ShardError, ShardOp, ShardReply, TxnId,
};
use trecho_common::protocol::methods::BookRequest;
use trecho_common::schedule::SegmentSpec;
use trecho_common::shardmap::ShardMap;
use trecho_common::time::Date;
use trecho_common::types::{Booking, BookingStatus, Locator, Passenger};

use super::{DueResolve, FinishJob, Rng, State, SALES_CLOSE_MS};
use crate::catalog::Catalog;
use crate::record::Record;

/// Seats on every test segment.
const CAPACITY: u32 = 10;
const PREPARE_TIMEOUT_MS: u64 = 5_000;
/// Home of every multi-shard test booking.
const HOME: u32 = 0;
/// The other participant of every multi-shard test booking.
const REMOTE: u32 = 1;
const DOCUMENT: &str = "X1234567";

/// Departure of every test segment: 2026-12-20 12:00 UTC, Unix seconds.
fn departure() -> i64 {
    let day = Date::from_ymd(2026, 12, 20).expect("valid date");
    day.midnight_unix(0) + 12 * 3600
}

/// Two days before departure, Unix milliseconds.
fn start_ms() -> i64 {
    (departure() - 2 * 86_400) * 1000
}

/// Two shards splitting the slots in halves: shard 0 owns 0..=8191.
fn shard_map() -> ShardMap {
    let addresses = ["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()];
    ShardMap::even(&addresses).expect("two shards cover every slot")
}

/// Returns the first `count` ids `PREFIX<n>-2026-12-20` whose slot `shard`
/// owns.
fn ids_on(shard: u32, prefix: &str, count: usize) -> Vec<String> {
    let map = shard_map();
    (1..)
        .map(|n| format!("{prefix}{n}-2026-12-20"))
        .filter(|id| map.owns(shard, slot(id)))
        .take(count)
        .collect()
}

/// Three segments on the home shard.
fn home_ids() -> Vec<String> {
    ids_on(HOME, "TH", 3)
}

/// Two segments on the remote shard.
fn remote_ids() -> Vec<String> {
    ids_on(REMOTE, "TR", 2)
}

/// Returns a document whose slot the remote shard owns, where the request
/// ids of that passenger are claimed.
fn remote_document() -> String {
    let map = shard_map();
    (1..)
        .map(|n| format!("RD{n}"))
        .find(|document| map.owns(REMOTE, slot(document)))
        .expect("some document hashes to the remote shard")
}

/// Returns the slot of the remote shard's first segment.
fn remote_slot() -> u16 {
    slot(&remote_ids()[0])
}

/// Returns the participant slots of a trip over the first home segment and
/// the first remote one.
fn trip_slots() -> Vec<u16> {
    vec![slot(&home_ids()[0]), remote_slot()]
}

fn spec(id: &str) -> SegmentSpec {
    let flight = &id[..id.len() - 11];
    SegmentSpec {
        id: id.to_owned(),
        flight: flight.to_owned(),
        origin: "GRU".to_owned(),
        destination: "SSA".to_owned(),
        departure: departure(),
        arrival: departure() + 2 * 3600,
        departure_offset_minutes: -180,
        arrival_offset_minutes: -180,
        capacity: CAPACITY,
    }
}

/// Builds the catalog a shard seeds: the test segments whose slots it owns.
fn catalog(shard: u32) -> Catalog {
    let ids = if shard == HOME {
        home_ids()
    } else {
        remote_ids()
    };
    Catalog::build(ids.iter().map(|id| spec(id))).expect("valid test segments")
}

/// One shard's state and every record it emitted, in order.
struct Shard {
    id: u32,
    state: State,
    log: Vec<Record>,
}

impl Shard {
    fn new(id: u32) -> Self {
        Shard {
            id,
            state: fresh_state(id, 7),
            log: Vec::new(),
        }
    }

    fn handle(&mut self, op: ShardOp, now_ms: i64) -> Result<ShardReply, ShardError> {
        self.state.handle(op, now_ms, &mut self.log)
    }

    fn tick(&mut self, now_ms: i64) -> Vec<DueResolve> {
        self.state.tick(now_ms, &mut self.log).expect("timers run")
    }

    fn book(&mut self, request: BookRequest, now_ms: i64) -> Result<ShardReply, ShardError> {
        self.handle(ShardOp::Book { request }, now_ms)
    }

    fn confirm(
        &mut self,
        locator: Locator,
        document: &str,
        now_ms: i64,
    ) -> Result<ShardReply, ShardError> {
        let op = ShardOp::Confirm {
            locator: locator.0,
            document: document.to_owned(),
        };
        self.handle(op, now_ms)
    }

    fn cancel(
        &mut self,
        locator: Locator,
        document: &str,
        now_ms: i64,
    ) -> Result<ShardReply, ShardError> {
        let op = ShardOp::Cancel {
            locator: locator.0,
            document: document.to_owned(),
        };
        self.handle(op, now_ms)
    }

    fn get(
        &mut self,
        locator: Locator,
        document: &str,
        now_ms: i64,
    ) -> Result<ShardReply, ShardError> {
        let op = ShardOp::GetBooking {
            locator: locator.0,
            document: document.to_owned(),
        };
        self.handle(op, now_ms)
    }

    fn seats_left(&mut self, id: &str) -> u32 {
        seats_left(&mut self.state, id)
    }

    fn audit(&mut self) -> AuditReport {
        audit(&mut self.state)
    }

    /// Checks that replaying the log into a fresh state shows the same
    /// seats, bookings and audit as the live state at `now_ms`.
    fn assert_replay_matches(&mut self, now_ms: i64) {
        let mut replayed = fresh_state(self.id, 99);
        for (index, record) in self.log.iter().enumerate() {
            let applied = replayed.apply(record);
            assert!(applied.is_ok(), "record {index} {record:?}: {applied:?}");
        }
        assert_eq!(audit(&mut replayed), self.audit(), "audit after replay");
        for id in home_ids().iter().chain(&remote_ids()) {
            if shard_map().owns(self.id, slot(id)) {
                assert_eq!(
                    seats_left(&mut replayed, id),
                    self.seats_left(id),
                    "seats of {id}"
                );
            }
        }
        for document in [DOCUMENT, "OTHER-DOC"] {
            assert_eq!(
                list(&mut replayed, document, now_ms),
                list(&mut self.state, document, now_ms),
                "bookings of {document} after replay"
            );
        }
        assert_eq!(
            replayed.outbox_jobs(),
            self.state.outbox_jobs(),
            "outbox after replay"
        );
        assert_eq!(replayed.claims, self.state.claims, "claims after replay");
        assert_invariant(&self.audit());
    }
}

fn fresh_state(id: u32, seed: u64) -> State {
    State::new(
        id,
        shard_map(),
        catalog(id),
        Rng::new(seed),
        PREPARE_TIMEOUT_MS,
    )
}

/// Serves a read, which must emit no record.
fn read(state: &mut State, op: ShardOp, now_ms: i64) -> ShardReply {
    let mut records = Vec::new();
    let reply = state
        .handle(op, now_ms, &mut records)
        .expect("reads succeed");
    assert!(records.is_empty(), "a read emitted {records:?}");
    reply
}

fn seats_left(state: &mut State, id: &str) -> u32 {
    let op = ShardOp::Seats {
        ids: vec![id.to_owned()],
    };
    match read(state, op, start_ms()) {
        ShardReply::Seats { seats } => seats[0].expect("known segment"),
        other => panic!("expected seats, got {other:?}"),
    }
}

fn audit(state: &mut State) -> AuditReport {
    match read(state, ShardOp::Audit, start_ms()) {
        ShardReply::Audit(report) => report,
        other => panic!("expected an audit, got {other:?}"),
    }
}

fn list(state: &mut State, document: &str, now_ms: i64) -> Vec<Booking> {
    let op = ShardOp::ListBookings {
        document: document.to_owned(),
    };
    match read(state, op, now_ms) {
        ShardReply::Bookings { bookings } => bookings,
        other => panic!("expected bookings, got {other:?}"),
    }
}

/// Checks the invariant of docs/design.md on one shard: every segment's
/// taken seats are the seats of its live reservations, within capacity.
fn assert_invariant(report: &AuditReport) {
    for segment in &report.segments {
        let counted: u32 = report
            .reservations
            .iter()
            .filter(|r| r.segments.contains(&segment.id))
            .map(|r| r.seats)
            .sum();
        assert_eq!(segment.taken, counted, "taken seats of {}", segment.id);
        assert!(
            segment.taken <= segment.capacity,
            "{} is oversold",
            segment.id
        );
    }
}

fn request(segments: &[String], seats: u32) -> BookRequest {
    BookRequest {
        passenger: Passenger {
            name: "Ana Souza".to_owned(),
            document: DOCUMENT.to_owned(),
        },
        segments: segments.to_vec(),
        seats,
        request_id: None,
        hold_seconds: None,
    }
}

fn booking_of(reply: Result<ShardReply, ShardError>) -> Booking {
    match reply {
        Ok(ShardReply::Booking { booking } | ShardReply::Cancelled { booking, .. }) => booking,
        other => panic!("expected a booking, got {other:?}"),
    }
}

fn locator_of(booking: &Booking) -> Locator {
    Locator::parse(&booking.id).expect("the shard returns valid locators")
}

fn client_error(reply: Result<ShardReply, ShardError>) -> Error {
    match reply {
        Err(ShardError::Client { error }) => error,
        other => panic!("expected a client error, got {other:?}"),
    }
}

/// Returns whether `reply` is the error for a transaction already aborted.
fn is_aborted_error(reply: &Result<ShardReply, ShardError>) -> bool {
    matches!(
        reply,
        Err(ShardError::Client {
            error: Error::Internal { message }
        }) if message.contains("aborted")
    )
}

// Single-shard fast path.

#[test]
fn book_takes_seats_and_confirms() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let now = start_ms();

    let booking = booking_of(shard.book(request(&ids[..2], 3), now));

    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.segments, ids[..2]);
    assert_eq!(booking.seats, 3);
    assert_eq!(booking.expires_at, None);
    assert_eq!(locator_of(&booking).slot(), slot(&ids[0]));
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY - 3);
    assert_eq!(shard.seats_left(&ids[1]), CAPACITY - 3);
    assert_eq!(shard.seats_left(&ids[2]), CAPACITY);
    assert_eq!(shard.log.len(), 1, "one record per single-shard booking");
    let got = booking_of(shard.get(locator_of(&booking), DOCUMENT, now));
    assert_eq!(got, booking);
    shard.assert_replay_matches(now);
}

#[test]
fn sold_out_names_first_short_segment() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let now = start_ms();
    booking_of(shard.book(request(&ids[1..2], 8), now));
    booking_of(shard.book(request(&ids[2..3], 9), now));
    let records = shard.log.len();

    let error = client_error(shard.book(request(&ids, 5), now));
    let expected = Error::SoldOut {
        segment: ids[1].clone(),
        requested: 5,
        left: 2,
    };
    assert_eq!(error, expected);

    let reordered = vec![ids[0].clone(), ids[2].clone(), ids[1].clone()];
    let error = client_error(shard.book(request(&reordered, 5), now));
    let expected = Error::SoldOut {
        segment: ids[2].clone(),
        requested: 5,
        left: 1,
    };
    assert_eq!(error, expected);

    assert_eq!(shard.log.len(), records, "a rejected booking emits nothing");
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY);
    assert_eq!(shard.seats_left(&ids[1]), 2);
    assert_eq!(shard.seats_left(&ids[2]), 1);
    assert_eq!(list(&mut shard.state, DOCUMENT, now).len(), 2);
    shard.assert_replay_matches(now);
}

#[test]
fn unknown_segment_changes_nothing() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let missing = ids_on(HOME, "ZZ", 1).remove(0);
    let now = start_ms();

    let segments = vec![ids[0].clone(), missing.clone()];
    let error = client_error(shard.book(request(&segments, 1), now));

    assert_eq!(error, Error::UnknownSegment { segment: missing });
    assert!(shard.log.is_empty());
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY);
    shard.assert_replay_matches(now);
}

#[test]
fn sales_close_thirty_minutes_before_departure() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let last_open_ms = departure() * 1000 - SALES_CLOSE_MS;

    let error = client_error(shard.book(request(&ids[..1], 1), last_open_ms + 1));
    match error {
        Error::SalesClosed { segment, departure } => {
            assert_eq!(segment, ids[0]);
            assert_eq!(departure, "2026-12-20T09:00:00-03:00");
        }
        other => panic!("expected sales_closed, got {other:?}"),
    }
    assert!(shard.log.is_empty());
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY);

    let booking = booking_of(shard.book(request(&ids[..1], 1), last_open_ms));
    assert_eq!(booking.status, BookingStatus::Confirmed);
    shard.assert_replay_matches(last_open_ms);
}

#[test]
fn request_id_replay_returns_same_booking() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let now = start_ms();
    let mut first = request(&ids[..1], 2);
    first.request_id = Some("r-1".to_owned());

    let booking = booking_of(shard.book(first.clone(), now));
    let records = shard.log.len();
    let again = booking_of(shard.book(first.clone(), now + 1000));

    assert_eq!(again, booking);
    assert_eq!(
        shard.log.len(),
        records,
        "a replayed request id emits nothing"
    );
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY - 2);

    let mut changed = first.clone();
    changed.seats = 3;
    let error = client_error(shard.book(changed, now));
    let expected = Error::RequestIdReused {
        request_id: "r-1".to_owned(),
    };
    assert_eq!(error, expected);
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY - 2);

    // Request ids belong to one document, so another passenger may use the
    // same one.
    let mut other = first;
    other.passenger.document = "OTHER-DOC".to_owned();
    let other = booking_of(shard.book(other, now));
    assert_ne!(other.id, booking.id);
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY - 4);
    shard.assert_replay_matches(now);
}

#[test]
fn request_id_replay_after_cancel_returns_cancelled() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let now = start_ms();
    let mut first = request(&ids[..1], 2);
    first.request_id = Some("r-2".to_owned());
    let booking = booking_of(shard.book(first.clone(), now));
    booking_of(shard.cancel(locator_of(&booking), DOCUMENT, now));

    let again = booking_of(shard.book(first, now));

    assert_eq!(again.id, booking.id);
    assert_eq!(again.status, BookingStatus::Cancelled);
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY);
    shard.assert_replay_matches(now);
}

// Holds, confirm and cancel.

#[test]
fn hold_then_confirm() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let now = start_ms();
    let mut hold = request(&ids[..2], 2);
    hold.hold_seconds = Some(600);

    let held = booking_of(shard.book(hold, now));
    assert_eq!(held.status, BookingStatus::Held);
    assert!(held.expires_at.is_some());
    assert_eq!(shard.state.next_timer(), Some(now + 600_000));
    let locator = locator_of(&held);

    let confirmed = booking_of(shard.confirm(locator, DOCUMENT, now + 1000));
    assert_eq!(confirmed.status, BookingStatus::Confirmed);
    assert_eq!(confirmed.expires_at, None);
    assert_eq!(
        shard.state.next_timer(),
        None,
        "a confirmed hold has no timer"
    );

    let records = shard.log.len();
    let again = booking_of(shard.confirm(locator, DOCUMENT, now + 2000));
    assert_eq!(again, confirmed);
    assert_eq!(shard.log.len(), records, "a second confirm emits nothing");

    assert!(shard.tick(now + 3_600_000).is_empty());
    let later = booking_of(shard.get(locator, DOCUMENT, now + 3_600_000));
    assert_eq!(later.status, BookingStatus::Confirmed);
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY - 2);
    assert_eq!(shard.seats_left(&ids[1]), CAPACITY - 2);
    shard.assert_replay_matches(now + 3_600_000);
}

#[test]
fn hold_expires_on_tick() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let now = start_ms();
    let mut hold = request(&ids[..1], 4);
    hold.hold_seconds = Some(60);
    let held = booking_of(shard.book(hold, now));
    let locator = locator_of(&held);

    shard.tick(now + 59_999);
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY - 4, "not due yet");

    shard.tick(now + 60_000);
    assert_eq!(shard.log.last(), Some(&Record::Expired { locator }));
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY);
    let expired = booking_of(shard.get(locator, DOCUMENT, now + 60_000));
    assert_eq!(expired.status, BookingStatus::Expired);
    assert_eq!(expired.expires_at, None);
    assert_eq!(shard.state.next_timer(), None);

    let error = client_error(shard.confirm(locator, DOCUMENT, now + 61_000));
    let expected = Error::HoldExpired {
        booking: held.id.clone(),
        expired_at: held.expires_at.clone().expect("a hold has an expiry"),
    };
    assert_eq!(error, expected);

    let error = client_error(shard.cancel(locator, DOCUMENT, now + 61_000));
    let expected = Error::InvalidState {
        booking: held.id.clone(),
        status: "expired".to_owned(),
        action: "cancelled".to_owned(),
    };
    assert_eq!(error, expected);
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY);
    shard.assert_replay_matches(now + 61_000);
}

#[test]
fn confirm_after_expiry_without_tick_expires_hold() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let now = start_ms();
    let mut hold = request(&ids[..1], 4);
    hold.hold_seconds = Some(60);
    let locator = locator_of(&booking_of(shard.book(hold, now)));

    let shown = booking_of(shard.get(locator, DOCUMENT, now + 60_000));
    assert_eq!(
        shown.status,
        BookingStatus::Expired,
        "reads show a hold past its expiry as expired"
    );

    let error = client_error(shard.confirm(locator, DOCUMENT, now + 60_000));
    assert!(matches!(error, Error::HoldExpired { .. }), "{error:?}");
    assert_eq!(shard.log.last(), Some(&Record::Expired { locator }));
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY);
    assert!(shard.tick(now + 60_000).is_empty());
    assert_eq!(shard.log.len(), 2, "the timer does not expire it twice");
    shard.assert_replay_matches(now + 60_000);
}

#[test]
fn hold_due_before_restart_expires_on_first_tick() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let now = start_ms();
    let mut hold = request(&ids[..1], 4);
    hold.hold_seconds = Some(60);
    let locator = locator_of(&booking_of(shard.book(hold, now)));

    let mut restarted = Shard {
        id: HOME,
        state: fresh_state(HOME, 3),
        log: shard.log.clone(),
    };
    for record in &shard.log {
        restarted.state.apply(record).expect("the journal replays");
    }
    assert_eq!(restarted.state.next_timer(), Some(now + 60_000));
    restarted.tick(now + 600_000);

    assert_eq!(restarted.log.last(), Some(&Record::Expired { locator }));
    assert_eq!(restarted.seats_left(&ids[0]), CAPACITY);
    let expired = booking_of(restarted.get(locator, DOCUMENT, now + 600_000));
    assert_eq!(expired.status, BookingStatus::Expired);
    restarted.assert_replay_matches(now + 600_000);
}

#[test]
fn cancel_and_confirm_twice_are_unchanged() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let now = start_ms();
    let booking = booking_of(shard.book(request(&ids[..2], 2), now));
    let locator = locator_of(&booking);

    let confirmed = booking_of(shard.confirm(locator, DOCUMENT, now));
    assert_eq!(
        confirmed, booking,
        "confirming a confirmed booking changes nothing"
    );
    assert_eq!(shard.log.len(), 1);

    let cancelled = booking_of(shard.cancel(locator, DOCUMENT, now));
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY);
    assert_eq!(shard.seats_left(&ids[1]), CAPACITY);
    let records = shard.log.len();

    let again = booking_of(shard.cancel(locator, DOCUMENT, now));
    assert_eq!(again, cancelled);
    assert_eq!(shard.log.len(), records, "a second cancel emits nothing");
    assert_eq!(shard.seats_left(&ids[0]), CAPACITY);

    let error = client_error(shard.confirm(locator, DOCUMENT, now));
    let expected = Error::InvalidState {
        booking: booking.id.clone(),
        status: "cancelled".to_owned(),
        action: "confirmed".to_owned(),
    };
    assert_eq!(error, expected);
    assert_eq!(shard.log.len(), records);
    shard.assert_replay_matches(now);
}

#[test]
fn wrong_document_gets_unknown_booking() {
    let mut shard = Shard::new(HOME);
    let ids = home_ids();
    let now = start_ms();
    let mut hold = request(&ids[..1], 1);
    hold.hold_seconds = Some(600);
    let booking = booking_of(shard.book(hold, now));
    let locator = locator_of(&booking);
    let unknown = Error::UnknownBooking {
        booking: booking.id.clone(),
    };

    assert_eq!(client_error(shard.get(locator, "OTHER-DOC", now)), unknown);
    assert_eq!(
        client_error(shard.confirm(locator, "OTHER-DOC", now)),
        unknown
    );
    assert_eq!(
        client_error(shard.cancel(locator, "OTHER-DOC", now)),
        unknown
    );

    assert_eq!(shard.log.len(), 1);
    let unchanged = booking_of(shard.get(locator, DOCUMENT, now));
    assert_eq!(unchanged, booking);
    assert!(list(&mut shard.state, "OTHER-DOC", now).is_empty());
    shard.assert_replay_matches(now);
}

#[test]
fn slot_owned_elsewhere_gets_not_owner() {
    let mut shard = Shard::new(HOME);
    let remote = remote_ids();
    let now = start_ms();
    let version = shard_map().version;

    let rejected = shard.book(request(&remote[..1], 1), now);
    let expected = ShardError::NotOwner {
        slot: slot(&remote[0]),
        shard: HOME,
        map_version: version,
        owner: Some(shard_map().owner_of(&remote[0]).id),
    };
    assert_eq!(rejected, Err(expected));

    let elsewhere = Locator::new(slot(&remote[0]), 5);
    let rejected = shard.get(elsewhere, DOCUMENT, now);
    assert!(
        matches!(rejected, Err(ShardError::NotOwner { shard: HOME, .. })),
        "{rejected:?}"
    );
    let rejected = shard.cancel(elsewhere, DOCUMENT, now);
    assert!(
        matches!(rejected, Err(ShardError::NotOwner { shard: HOME, .. })),
        "{rejected:?}"
    );
    assert!(shard.log.is_empty());
    shard.assert_replay_matches(now);
}

// Two-phase commit.

/// A booking of one home segment and one remote segment, prepared on both
/// shards but not decided.
struct Trip {
    home: Shard,
    remote: Shard,
    txn: TxnId,
    home_slot: u16,
    request: BookRequest,
    deadline_ms: i64,
}

impl Trip {
    /// Builds the two shards without preparing anything.
    fn new(txn: TxnId, hold_seconds: Option<u32>, request_id: Option<&str>) -> Self {
        let segments = vec![home_ids()[0].clone(), remote_ids()[0].clone()];
        let mut request = request(&segments, 2);
        request.hold_seconds = hold_seconds;
        request.request_id = request_id.map(str::to_owned);
        Trip {
            home: Shard::new(HOME),
            remote: Shard::new(REMOTE),
            txn,
            home_slot: slot(&segments[0]),
            request,
            deadline_ms: start_ms() + PREPARE_TIMEOUT_MS as i64,
        }
    }

    fn prepared(txn: TxnId, hold_seconds: Option<u32>) -> Self {
        let mut trip = Trip::new(txn, hold_seconds, None);
        let now = start_ms();
        let segments = trip.request.segments.clone();
        let home_op = trip.prepare_op(&segments[..1], true);
        assert_eq!(trip.home.handle(home_op, now), Ok(ShardReply::Prepared));
        let remote_op = trip.prepare_op(&segments[1..], false);
        assert_eq!(trip.remote.handle(remote_op, now), Ok(ShardReply::Prepared));
        trip
    }

    fn prepare_op(&self, segments: &[String], with_booking: bool) -> ShardOp {
        ShardOp::Prepare {
            txn: self.txn,
            home_slot: self.home_slot,
            segments: segments.to_vec(),
            seats: self.request.seats,
            deadline_ms: self.deadline_ms,
            participant_slots: trip_slots(),
            booking: with_booking.then(|| self.request.clone()),
            claim: None,
        }
    }

    fn decide(&mut self, commit: bool, now_ms: i64) -> Result<ShardReply, ShardError> {
        let op = ShardOp::Decide {
            txn: self.txn,
            home_slot: self.home_slot,
            commit,
            participant_slots: trip_slots(),
        };
        self.home.handle(op, now_ms)
    }

    /// Sends every finish the home queued to the remote shard, as the peer
    /// tasks do, and records each acknowledgement at home.
    fn deliver_finishes(&mut self, now_ms: i64) {
        for job in self.home.state.take_finishes() {
            assert_eq!(job.slots, [remote_slot()]);
            let op = ShardOp::Finish {
                txn: job.txn,
                commit: job.commit,
                slots: job.slots.clone(),
            };
            assert_eq!(self.remote.handle(op, now_ms), Ok(ShardReply::Ack));
            for slot in job.slots {
                self.home
                    .state
                    .acknowledge(job.txn, slot, job.commit, &mut self.home.log)
                    .expect("the acknowledgement applies");
            }
        }
    }

    fn home_seats(&mut self) -> u32 {
        self.home.seats_left(&home_ids()[0])
    }

    fn remote_seats(&mut self) -> u32 {
        self.remote.seats_left(&remote_ids()[0])
    }

    fn assert_replays_match(&mut self, now_ms: i64) {
        self.home.assert_replay_matches(now_ms);
        self.remote.assert_replay_matches(now_ms);
    }
}

#[test]
fn two_phase_commit_books_across_shards() {
    let mut trip = Trip::prepared(0x51, None);
    let now = start_ms() + 100;
    assert_eq!(trip.home_seats(), CAPACITY - 2);
    assert_eq!(trip.remote_seats(), CAPACITY - 2);
    assert_eq!(trip.home.audit().pending, [trip.txn]);

    let booking = booking_of(trip.decide(true, now));
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.segments, trip.request.segments);
    assert_eq!(locator_of(&booking).slot(), trip.home_slot);
    assert!(trip.home.audit().pending.is_empty());
    assert_eq!(
        trip.home.audit().unacknowledged,
        [(trip.txn, remote_slot())]
    );

    let expected = FinishJob {
        txn: trip.txn,
        commit: true,
        slots: vec![remote_slot()],
    };
    assert_eq!(trip.home.state.outbox_jobs(), [expected]);
    trip.deliver_finishes(now);

    let remote = trip.remote.audit();
    assert_eq!(remote.reservations.len(), 1);
    assert_eq!(remote.reservations[0].state, ReservationState::Committed);
    assert!(
        trip.home.audit().unacknowledged.is_empty(),
        "the ack clears the outbox"
    );
    assert!(trip.home.state.outbox_jobs().is_empty());
    assert_eq!(trip.home_seats(), CAPACITY - 2);
    assert_eq!(trip.remote_seats(), CAPACITY - 2);

    // A repeated decide returns the recorded outcome and changes nothing.
    let records = trip.home.log.len();
    let again = booking_of(trip.decide(true, now + 100));
    assert_eq!(again, booking);
    assert_eq!(trip.home.log.len(), records);
    assert_eq!(trip.decide(false, now + 100).map(|_| ()), Ok(()));
    assert_eq!(
        trip.home.log.len(),
        records,
        "an abort after the commit changes nothing"
    );
    trip.assert_replays_match(now);
}

#[test]
fn decide_after_deadline_aborts() {
    let mut trip = Trip::prepared(0x52, None);
    let late = trip.deadline_ms;

    let rejected = trip.decide(true, late);
    assert!(is_aborted_error(&rejected), "{rejected:?}");
    assert!(trip.home.audit().pending.is_empty());
    assert!(trip.home.audit().bookings.is_empty());
    assert_eq!(trip.home_seats(), CAPACITY);
    assert_eq!(
        trip.remote_seats(),
        CAPACITY - 2,
        "the remote shard still waits for the finish"
    );

    trip.deliver_finishes(late);
    assert_eq!(trip.remote_seats(), CAPACITY);
    assert!(trip.remote.audit().reservations.is_empty());
    assert!(trip.home.audit().unacknowledged.is_empty());

    let rejected = trip.decide(true, late + 1);
    assert!(
        is_aborted_error(&rejected),
        "a decision is never changed: {rejected:?}"
    );
    trip.assert_replays_match(late);
}

#[test]
fn resolve_without_decision_records_abort() {
    let mut trip = Trip::prepared(0x53, None);
    let now = start_ms() + 100;
    let resolve = ShardOp::Resolve {
        txn: trip.txn,
        home_slot: trip.home_slot,
    };

    let outcome = trip.home.handle(resolve.clone(), now);
    assert_eq!(outcome, Ok(ShardReply::Outcome { committed: false }));
    assert!(trip.home.audit().pending.is_empty());
    assert_eq!(trip.home_seats(), CAPACITY);

    let rejected = trip.decide(true, now + 1);
    assert!(
        is_aborted_error(&rejected),
        "a late commit cannot win: {rejected:?}"
    );
    assert!(trip.home.audit().bookings.is_empty());

    trip.remote
        .state
        .apply_outcome(trip.txn, false, &mut trip.remote.log)
        .expect("the outcome applies");
    assert_eq!(trip.remote_seats(), CAPACITY);
    trip.deliver_finishes(now + 1);
    assert!(trip.home.audit().unacknowledged.is_empty());

    let again = trip.home.handle(resolve, now + 2);
    assert_eq!(again, Ok(ShardReply::Outcome { committed: false }));
    trip.assert_replays_match(now + 2);
}

#[test]
fn resolve_after_commit_reports_committed() {
    let mut trip = Trip::prepared(0x54, None);
    let now = start_ms() + 100;
    booking_of(trip.decide(true, now));
    let resolve = ShardOp::Resolve {
        txn: trip.txn,
        home_slot: trip.home_slot,
    };

    let outcome = trip.home.handle(resolve, now);

    assert_eq!(outcome, Ok(ShardReply::Outcome { committed: true }));
    trip.remote
        .state
        .apply_outcome(trip.txn, true, &mut trip.remote.log)
        .expect("the outcome applies");
    let reservations = trip.remote.audit().reservations;
    assert_eq!(reservations[0].state, ReservationState::Committed);
    // The finish that follows is harmless.
    trip.deliver_finishes(now);
    assert_eq!(trip.remote_seats(), CAPACITY - 2);
    trip.assert_replays_match(now);
}

#[test]
fn resolve_of_unknown_transaction_refuses_late_prepare() {
    let mut home = Shard::new(HOME);
    let now = start_ms();
    let segments = vec![home_ids()[0].clone(), remote_ids()[0].clone()];
    let home_slot = slot(&segments[0]);
    let resolve = ShardOp::Resolve {
        txn: 0x55,
        home_slot,
    };

    let outcome = home.handle(resolve, now);
    assert_eq!(outcome, Ok(ShardReply::Outcome { committed: false }));

    let prepare = ShardOp::Prepare {
        txn: 0x55,
        home_slot,
        segments: segments[..1].to_vec(),
        seats: 1,
        deadline_ms: now + 5_000,
        participant_slots: trip_slots(),
        booking: Some(request(&segments, 1)),
        claim: None,
    };
    let rejected = home.handle(prepare, now);
    assert!(is_aborted_error(&rejected), "{rejected:?}");
    assert_eq!(home.seats_left(&segments[0]), CAPACITY);
    assert!(home.audit().pending.is_empty());
    home.assert_replay_matches(now);
}

#[test]
fn late_prepare_after_release_is_rejected() {
    let mut remote = Shard::new(REMOTE);
    let now = start_ms();
    let ids = remote_ids();
    let home_slot = slot(&home_ids()[0]);

    let finish = ShardOp::Finish {
        txn: 0x56,
        commit: false,
        slots: vec![remote_slot()],
    };
    assert_eq!(remote.handle(finish, now), Ok(ShardReply::Ack));
    assert_eq!(
        remote.log,
        [Record::Finished {
            txn: 0x56,
            commit: false
        }]
    );

    let prepare = ShardOp::Prepare {
        txn: 0x56,
        home_slot,
        segments: ids[..1].to_vec(),
        seats: 1,
        deadline_ms: now + 5_000,
        participant_slots: trip_slots(),
        booking: None,
        claim: None,
    };
    let rejected = remote.handle(prepare, now);
    assert!(is_aborted_error(&rejected), "{rejected:?}");
    assert_eq!(remote.seats_left(&ids[0]), CAPACITY);
    assert!(remote.audit().reservations.is_empty());

    let commit = ShardOp::Finish {
        txn: 0x56,
        commit: true,
        slots: vec![remote_slot()],
    };
    assert_eq!(remote.handle(commit, now), Ok(ShardReply::Ack));
    assert_eq!(
        remote.log.len(),
        1,
        "a commit after the release changes nothing"
    );
    remote.assert_replay_matches(now);
}

#[test]
fn participant_deadline_returns_due_resolve() {
    let mut trip = Trip::prepared(0x57, None);
    let deadline = trip.deadline_ms;

    assert!(trip.remote.tick(deadline - 1).is_empty());
    let due = trip.remote.tick(deadline);
    let expected = DueResolve {
        txn: trip.txn,
        home_slot: trip.home_slot,
    };
    assert_eq!(due, [expected]);
    assert!(
        trip.remote.tick(deadline + 1).is_empty(),
        "each deadline is reported once"
    );
    assert_eq!(
        trip.remote_seats(),
        CAPACITY - 2,
        "seats stay counted until the outcome"
    );

    // After a restart before the outcome arrived, the replayed deadline is
    // reported again.
    let mut replayed = fresh_state(REMOTE, 11);
    for record in &trip.remote.log {
        replayed.apply(record).expect("the journal replays");
    }
    let mut records = Vec::new();
    let again = replayed
        .tick(deadline + 1, &mut records)
        .expect("timers run");
    assert_eq!(again, [expected]);
    assert!(records.is_empty());

    trip.remote
        .state
        .apply_outcome(trip.txn, false, &mut trip.remote.log)
        .expect("the outcome applies");
    assert_eq!(trip.remote_seats(), CAPACITY);
    assert!(trip.remote.audit().reservations.is_empty());
    trip.remote.assert_replay_matches(deadline + 1);
}

#[test]
fn home_deadline_aborts_pending_transaction() {
    let mut trip = Trip::prepared(0x58, None);
    let deadline = trip.deadline_ms;

    assert!(trip.home.tick(deadline - 1).is_empty());
    assert_eq!(trip.home.audit().pending, [trip.txn]);
    let due = trip.home.tick(deadline);

    assert!(due.is_empty(), "the home resolves its own transactions");
    assert!(trip.home.audit().pending.is_empty());
    assert_eq!(trip.home_seats(), CAPACITY);
    let expected = FinishJob {
        txn: trip.txn,
        commit: false,
        slots: vec![remote_slot()],
    };
    assert_eq!(trip.home.state.outbox_jobs(), [expected]);
    trip.deliver_finishes(deadline);
    assert_eq!(trip.remote_seats(), CAPACITY);
    let rejected = trip.decide(true, deadline - 1);
    assert!(is_aborted_error(&rejected), "{rejected:?}");
    trip.assert_replays_match(deadline);
}

#[test]
fn unacknowledged_finish_survives_restart() {
    let mut trip = Trip::prepared(0x59, None);
    let now = start_ms() + 100;
    booking_of(trip.decide(true, now));
    trip.home.state.take_finishes();

    let mut restarted = fresh_state(HOME, 5);
    for record in &trip.home.log {
        restarted.apply(record).expect("the journal replays");
    }

    let expected = FinishJob {
        txn: trip.txn,
        commit: true,
        slots: vec![remote_slot()],
    };
    assert_eq!(restarted.outbox_jobs(), [expected]);
    assert!(
        restarted.next_timer().is_none(),
        "a decided transaction has no deadline"
    );
    trip.assert_replays_match(now);
}

#[test]
fn cancel_releases_seats_on_every_participant() {
    let mut trip = Trip::prepared(0x5a, None);
    let now = start_ms() + 100;
    let booking = booking_of(trip.decide(true, now));
    trip.deliver_finishes(now);
    let locator = locator_of(&booking);

    let cancelled = booking_of(trip.home.cancel(locator, DOCUMENT, now));

    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    assert_eq!(trip.home_seats(), CAPACITY);
    assert_eq!(
        trip.remote_seats(),
        CAPACITY - 2,
        "until the release arrives"
    );
    assert_eq!(
        trip.home.audit().unacknowledged,
        [(trip.txn, remote_slot())]
    );
    trip.deliver_finishes(now);
    assert_eq!(trip.remote_seats(), CAPACITY);
    assert!(trip.remote.audit().reservations.is_empty());
    assert!(trip.home.audit().unacknowledged.is_empty());
    trip.assert_replays_match(now);
}

#[test]
fn cancel_before_commit_finish_replaces_it() {
    let mut trip = Trip::prepared(0x5b, None);
    let now = start_ms() + 100;
    let booking = booking_of(trip.decide(true, now));
    let commit_jobs = trip.home.state.take_finishes();
    booking_of(trip.home.cancel(locator_of(&booking), DOCUMENT, now));

    let release = FinishJob {
        txn: trip.txn,
        commit: false,
        slots: vec![remote_slot()],
    };
    assert_eq!(trip.home.state.outbox_jobs(), [release]);

    // The commit finish still in flight arrives and is acknowledged: the
    // release stays queued.
    let commit = ShardOp::Finish {
        txn: trip.txn,
        commit: true,
        slots: vec![remote_slot()],
    };
    assert_eq!(trip.remote.handle(commit, now), Ok(ShardReply::Ack));
    let records = trip.home.log.len();
    let acked = &commit_jobs[0];
    trip.home
        .state
        .acknowledge(acked.txn, remote_slot(), acked.commit, &mut trip.home.log)
        .expect("the stale acknowledgement is ignored");
    assert_eq!(trip.home.log.len(), records);
    assert_eq!(
        trip.home.audit().unacknowledged,
        [(trip.txn, remote_slot())]
    );

    trip.deliver_finishes(now);
    assert_eq!(trip.remote_seats(), CAPACITY);
    assert!(trip.home.audit().unacknowledged.is_empty());
    trip.assert_replays_match(now);
}

#[test]
fn multi_shard_hold_expiry_releases_every_participant() {
    let mut trip = Trip::prepared(0x5c, Some(60));
    let now = start_ms() + 100;
    let held = booking_of(trip.decide(true, now));
    assert_eq!(held.status, BookingStatus::Held);
    trip.deliver_finishes(now);

    trip.home.tick(now + 60_000);

    let expired = booking_of(trip.home.get(locator_of(&held), DOCUMENT, now + 60_000));
    assert_eq!(expired.status, BookingStatus::Expired);
    assert_eq!(trip.home_seats(), CAPACITY);
    trip.deliver_finishes(now + 60_000);
    assert_eq!(trip.remote_seats(), CAPACITY);
    trip.assert_replays_match(now + 60_000);
}

#[test]
fn retried_prepare_aborts_first_attempt() {
    let mut trip = Trip::new(0x5d, None, Some("r-9"));
    let now = start_ms();
    let home_segments = trip.request.segments[..1].to_vec();
    let op = trip.prepare_op(&home_segments, true);
    assert_eq!(trip.home.handle(op, now), Ok(ShardReply::Prepared));

    trip.txn = 0x5e;
    let op = trip.prepare_op(&home_segments, true);
    assert_eq!(trip.home.handle(op, now + 10), Ok(ShardReply::Prepared));

    let audit = trip.home.audit();
    assert_eq!(audit.pending, [0x5e], "the retry aborted the first attempt");
    assert_eq!(
        trip.home_seats(),
        CAPACITY - 2,
        "only the retry counts its seats"
    );
    let release = FinishJob {
        txn: 0x5d,
        commit: false,
        slots: vec![remote_slot()],
    };
    assert_eq!(trip.home.state.outbox_jobs(), [release]);

    let booking = booking_of(trip.decide(true, now + 20));
    let retried = trip.prepare_op(&home_segments, true);
    trip.txn = 0x5f;
    let third = trip.prepare_op(&home_segments, true);
    assert_eq!(booking_of(trip.home.handle(retried, now + 30)), booking);
    assert_eq!(
        booking_of(trip.home.handle(third, now + 30)),
        booking,
        "a new attempt after the commit gets the booking"
    );
    assert_eq!(trip.home_seats(), CAPACITY - 2);
    trip.home.assert_replay_matches(now + 30);
}

/// A prepare that only claims `request_id` for `fingerprint`, as the router
/// sends to the shard of the passenger's document.
fn claim_op(txn: TxnId, request_id: &str, fingerprint: u64, now_ms: i64) -> ShardOp {
    ShardOp::Prepare {
        txn,
        home_slot: slot(&home_ids()[0]),
        segments: Vec::new(),
        seats: 1,
        deadline_ms: now_ms + 5_000,
        participant_slots: trip_slots(),
        booking: None,
        claim: Some(trecho_common::internal::Claim {
            document: remote_document(),
            request_id: request_id.to_owned(),
            fingerprint,
        }),
    }
}

fn finish_op(txn: TxnId, commit: bool) -> ShardOp {
    ShardOp::Finish {
        txn,
        commit,
        slots: Vec::new(),
    }
}

#[test]
fn claim_binds_request_id_to_first_params() {
    let now = start_ms();
    let mut shard = Shard::new(REMOTE);
    let reused = Error::RequestIdReused {
        request_id: "r-1".to_owned(),
    };

    assert_eq!(
        shard.handle(claim_op(0x100, "r-1", 1, now), now),
        Ok(ShardReply::Prepared)
    );
    let other = shard.handle(claim_op(0x101, "r-1", 2, now), now);
    assert_eq!(client_error(other), reused.clone());

    // Retries with the same params prepare again. Whatever the order in
    // which their outcomes arrive, the claim stays: here a retry is
    // released before the first attempt's commit reaches this shard.
    assert_eq!(
        shard.handle(claim_op(0x102, "r-1", 1, now), now),
        Ok(ShardReply::Prepared)
    );
    assert_eq!(
        shard.handle(finish_op(0x102, false), now),
        Ok(ShardReply::Ack)
    );
    assert_eq!(
        shard.handle(finish_op(0x100, true), now),
        Ok(ShardReply::Ack)
    );
    let other = shard.handle(claim_op(0x103, "r-1", 2, now), now);
    assert_eq!(client_error(other), reused.clone());

    // A cancel releases the seats but not the request id.
    assert_eq!(
        shard.handle(finish_op(0x100, false), now),
        Ok(ShardReply::Ack)
    );
    let other = shard.handle(claim_op(0x104, "r-1", 2, now), now);
    assert_eq!(client_error(other), reused);

    // Like the home shard's entry, a claim whose only attempt failed stays
    // bound to that attempt's params.
    assert_eq!(
        shard.handle(claim_op(0x200, "r-2", 5, now), now),
        Ok(ShardReply::Prepared)
    );
    assert_eq!(
        shard.handle(finish_op(0x200, false), now),
        Ok(ShardReply::Ack)
    );
    let other = shard.handle(claim_op(0x201, "r-2", 6, now), now);
    assert!(matches!(client_error(other), Error::RequestIdReused { .. }));

    shard.assert_replay_matches(now);
}

#[test]
fn claim_is_checked_when_this_shard_is_home() {
    let now = start_ms();
    let mut shard = Shard::new(REMOTE);
    assert_eq!(
        shard.handle(claim_op(0x300, "r-3", 1, now), now),
        Ok(ShardReply::Prepared)
    );
    assert_eq!(
        shard.handle(finish_op(0x300, true), now),
        Ok(ShardReply::Ack)
    );

    let mut request = request(&remote_ids()[..1], 1);
    request.request_id = Some("r-3".to_owned());
    request.passenger.document = remote_document();
    let error = client_error(shard.book(request, now));
    let expected = Error::RequestIdReused {
        request_id: "r-3".to_owned(),
    };
    assert_eq!(error, expected);
    assert_eq!(shard.seats_left(&remote_ids()[0]), CAPACITY);
    shard.assert_replay_matches(now);
}

#[test]
fn cluster_map_returns_held_map() {
    let mut shard = Shard::new(HOME);

    let reply = shard.handle(ShardOp::ClusterMap, start_ms());

    assert_eq!(reply, Ok(ShardReply::ClusterMap { map: shard_map() }));
    assert!(shard.log.is_empty());
}

#[test]
fn finish_for_slot_owned_elsewhere_is_not_owner() {
    let mut trip = Trip::prepared(0x5e, None);
    let now = start_ms() + 100;
    let home_slot = trip.home_slot;
    let records = trip.remote.log.len();

    let misrouted = ShardOp::Finish {
        txn: trip.txn,
        commit: false,
        slots: vec![remote_slot(), home_slot],
    };
    let rejected = trip.remote.handle(misrouted, now);

    assert!(
        matches!(rejected, Err(ShardError::NotOwner { slot, .. }) if slot == home_slot),
        "{rejected:?}"
    );
    assert_eq!(trip.remote.log.len(), records, "nothing was recorded");
    assert_eq!(trip.remote_seats(), CAPACITY - 2, "the seats stay prepared");
}

#[test]
fn single_shard_booking_queues_no_finishes() {
    let mut shard = Shard::new(HOME);
    let now = start_ms();
    let segments = home_ids()[..2].to_vec();
    let booking = booking_of(shard.book(request(&segments, 1), now));

    let cancelled = shard.cancel(locator_of(&booking), DOCUMENT, now + 10);

    assert!(cancelled.is_ok(), "{cancelled:?}");
    assert!(shard.state.take_finishes().is_empty());
    assert!(shard.audit().unacknowledged.is_empty());
    shard.assert_replay_matches(now + 10);
}

#[test]
fn request_id_elsewhere_is_not_owner() {
    let mut shard = Shard::new(REMOTE);
    let now = start_ms();
    let mut request = request(&remote_ids()[..1], 1);
    request.request_id = Some("r-9".to_owned());
    let document_slot = slot(&request.passenger.document);
    assert!(shard_map().owns(HOME, document_slot));

    let rejected = shard.book(request, now);

    assert!(
        matches!(rejected, Err(ShardError::NotOwner { slot, .. }) if slot == document_slot),
        "{rejected:?}"
    );
    assert!(shard.log.is_empty());
    let mut claim = claim_op(0x400, "r-9", 1, now);
    if let ShardOp::Prepare {
        claim: Some(claim), ..
    } = &mut claim
    {
        claim.document = DOCUMENT.to_owned();
    }
    let rejected = shard.handle(claim, now);
    assert!(
        matches!(rejected, Err(ShardError::NotOwner { slot, .. }) if slot == document_slot),
        "{rejected:?}"
    );
    assert!(shard.log.is_empty());
}

#[test]
fn cancel_returns_the_releases_still_owed() {
    let mut trip = Trip::prepared(0x5f, None);
    let now = start_ms() + 100;
    let booking = booking_of(trip.decide(true, now));
    trip.deliver_finishes(now);
    let locator = locator_of(&booking);

    let cancelled = trip.home.cancel(locator, DOCUMENT, now + 10);

    let expected = Release {
        txn: trip.txn,
        slots: vec![remote_slot()],
    };
    assert!(
        matches!(&cancelled, Ok(ShardReply::Cancelled { release: Some(release), .. }) if *release == expected),
        "{cancelled:?}"
    );
    trip.deliver_finishes(now + 10);
    let again = trip.home.cancel(locator, DOCUMENT, now + 20);
    assert!(
        matches!(&again, Ok(ShardReply::Cancelled { release: None, .. })),
        "a cancel after the release was acknowledged owes nothing: {again:?}"
    );
    assert_eq!(trip.remote_seats(), CAPACITY);
}

#[test]
fn home_prepare_needs_the_document_owner() {
    let mut trip = Trip::new(0x60, None, Some("r-10"));
    trip.request.passenger.document = remote_document();
    let now = start_ms();
    let segments = trip.request.segments.clone();
    let document_slot = slot(&remote_document());

    // The request id's owner takes no part: the home must not keep it.
    let without_claim = trip.prepare_op(&segments[..1], true);
    let rejected = trip.home.handle(without_claim, now);
    assert!(
        matches!(rejected, Err(ShardError::NotOwner { slot, .. }) if slot == document_slot),
        "{rejected:?}"
    );
    assert!(trip.home.log.is_empty());

    let mut with_claim = trip.prepare_op(&segments[..1], true);
    if let ShardOp::Prepare {
        participant_slots, ..
    } = &mut with_claim
    {
        participant_slots.push(document_slot);
    }
    assert_eq!(trip.home.handle(with_claim, now), Ok(ShardReply::Prepared));
}

mod moves;
