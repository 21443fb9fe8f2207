//! Method names, their params and their results.
//!
//! Params are parsed strictly: an unknown member is rejected with -32602
//! naming it, and ranges are checked, never clamped. Defaults are filled in
//! here, so everything downstream sees complete values.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Error;
use crate::time::Date;
use crate::types::{
    validate_airport, validate_document, validate_segment_id, Booking, Locator, Passenger, Segment,
};

/// Default and range of `hold_seconds`.
pub const HOLD_SECONDS_DEFAULT: u32 = 600;
/// Longest hold a client may ask for, in seconds.
pub const HOLD_SECONDS_MAX: u32 = 3600;
/// Most segments in one booking.
pub const MAX_SEGMENTS_PER_BOOKING: usize = 6;
/// Most seats in one booking.
pub const MAX_SEATS: u32 = 9;
/// Longest `request_id`, in characters.
pub const MAX_REQUEST_ID: usize = 64;

/// `segments.search` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Origin airport code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Destination airport code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Local departure date at the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<Date>,
    /// 1..=1000, default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `segments.get` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRef {
    /// The segment id.
    pub id: String,
}

/// `routes.find` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesParams {
    /// Origin airport code.
    pub origin: String,
    /// Destination airport code.
    pub destination: String,
    /// Local departure date at the origin.
    pub date: Date,
    /// Seats needed on every segment, 1..=9, default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    /// Connections allowed, 0..=3, default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stops: Option<u32>,
    /// 1..=50, default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `bookings.create` and `bookings.hold` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookParams {
    /// Who travels.
    pub passenger: Passenger,
    /// Segment ids, 1..=6, no duplicates.
    pub segments: Vec<String>,
    /// Seats on every segment, 1..=9, default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    /// Idempotency key scoped to the passenger's document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Only for `bookings.hold`: 1..=3600, default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_seconds: Option<u32>,
}

/// `bookings.get`, `bookings.confirm` and `bookings.cancel` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingRef {
    /// The locator.
    pub id: String,
    /// The passenger's document, which must match.
    pub document: String,
}

/// `bookings.list` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentRef {
    /// The passenger's document.
    pub document: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

/// Admin token sent by a caller. Its `Debug` form hides the text, so that
/// a request logged with `{:?}` does not show the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// Returns whether the token equals `expected`. The comparison time
    /// depends only on the length of `expected`, so the response time does
    /// not reveal how much of a guessed token was right.
    pub fn matches(&self, expected: &str) -> bool {
        let given = self.0.as_bytes();
        let expected = expected.as_bytes();
        let mut difference = given.len() ^ expected.len();
        for (index, byte) in expected.iter().enumerate() {
            let other = given.get(index).copied().unwrap_or(0);
            difference |= usize::from(byte ^ other);
        }
        difference == 0
    }
}

/// `admin.move_slots` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveSlotsParams {
    /// The admin token from the router's configuration.
    pub token: AdminToken,
    /// First slot.
    pub first: u16,
    /// Last slot, inclusive. All of `first..=last` must belong to one
    /// shard.
    pub last: u16,
    /// Id of the shard that receives the slots.
    pub to: u32,
}

/// `admin.move_slots` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveSlotsResult {
    /// Id of the shard the slots came from.
    pub from: u32,
    /// Id of the shard that owns them now.
    pub to: u32,
    /// Map version at which the target owns the slots.
    pub map_version: u64,
    /// Rows copied.
    pub rows: u64,
    /// Time in milliseconds during which writes to the slots waited.
    pub pause_ms: u64,
}

/// `admin.add_shard` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddShardParams {
    /// The admin token from the router's configuration.
    pub token: AdminToken,
    /// Address, as `HOST:PORT`, at which the new shard accepts connections
    /// from routers and shards.
    pub address: String,
}

/// `admin.add_shard` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddShardResult {
    /// The new shard's id, from its own configuration.
    pub id: u32,
    /// Inclusive slot ranges it owns, empty until slots move to it.
    pub slots: Vec<[u16; 2]>,
}

/// A validated booking request with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookRequest {
    /// Who travels.
    pub passenger: Passenger,
    /// Segment ids in the client's order.
    pub segments: Vec<String>,
    /// Seats on every segment.
    pub seats: u32,
    /// Idempotency key.
    pub request_id: Option<String>,
    /// `Some` for a hold, `None` for a confirmed booking.
    pub hold_seconds: Option<u32>,
}

impl BookRequest {
    /// Returns a stable 64-bit fingerprint of the parameters, used to tell a
    /// retry from a reuse of the same request id (FNV-1a over a canonical
    /// encoding).
    pub fn fingerprint(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &byte in bytes.iter().chain([0xffu8].iter()) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        feed(self.passenger.name.as_bytes());
        feed(self.passenger.document.as_bytes());
        for segment in &self.segments {
            feed(segment.as_bytes());
        }
        feed(&self.seats.to_le_bytes());
        feed(&self.hold_seconds.map_or(0, |s| s + 1).to_le_bytes());
        hash
    }
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `ping`
    Ping,
    /// `airports.list`
    AirportsList,
    /// `segments.search`, limit filled in.
    SegmentsSearch(SearchParams),
    /// `segments.get`
    SegmentsGet(SegmentRef),
    /// `routes.find`, defaults filled in.
    RoutesFind(RoutesParams),
    /// `bookings.create` (hold_seconds `None`) or `bookings.hold`.
    Book(BookRequest),
    /// `bookings.confirm`
    Confirm(Locator, String),
    /// `bookings.cancel`
    Cancel(Locator, String),
    /// `bookings.get`
    Get(Locator, String),
    /// `bookings.list`
    List(String),
    /// `cluster.status`
    ClusterStatus,
    /// `admin.move_slots`
    MoveSlots(MoveSlotsParams),
    /// `admin.add_shard`
    AddShard(AddShardParams),
}

impl Call {
    /// Parses and validates `params` for `method`.
    ///
    /// # Errors
    ///
    /// Returns -32601 for an unknown method and -32602 naming the field for
    /// any invalid, missing or unknown parameter.
    pub fn parse(method: &str, params: Option<&RawValue>) -> Result<Call, Error> {
        match method {
            "ping" => no_params(params).map(|()| Call::Ping),
            "airports.list" => no_params(params).map(|()| Call::AirportsList),
            "cluster.status" => no_params(params).map(|()| Call::ClusterStatus),
            "segments.search" => search(parse_params(params)?),
            "segments.get" => {
                let params: SegmentRef = parse_params(params)?;
                validate_segment_id("id", &params.id).map_err(Error::invalid_params)?;
                Ok(Call::SegmentsGet(params))
            }
            "routes.find" => routes(parse_params(params)?),
            "bookings.create" => book(parse_params(params)?, false),
            "bookings.hold" => book(parse_params(params)?, true),
            "bookings.confirm" => booking_ref(params).map(|(l, d)| Call::Confirm(l, d)),
            "bookings.cancel" => booking_ref(params).map(|(l, d)| Call::Cancel(l, d)),
            "bookings.get" => booking_ref(params).map(|(l, d)| Call::Get(l, d)),
            "admin.move_slots" => {
                let params: MoveSlotsParams = parse_params(params)?;
                if params.first > params.last || params.last >= crate::hashing::SLOT_COUNT {
                    return Err(Error::invalid_params(format!(
                        "slot range {}-{} is not valid: first and last must be slots from 0 \
                         to 16383, with first not above last",
                        params.first, params.last
                    )));
                }
                Ok(Call::MoveSlots(params))
            }
            "admin.add_shard" => Ok(Call::AddShard(parse_params(params)?)),
            "bookings.list" => {
                let params: DocumentRef = parse_params(params)?;
                validate_document(&params.document).map_err(Error::invalid_params)?;
                Ok(Call::List(params.document))
            }
            _ => Err(Error::MethodNotFound {
                method: method.to_owned(),
            }),
        }
    }

    /// Returns the method name.
    pub fn method(&self) -> &'static str {
        match self {
            Call::Ping => "ping",
            Call::AirportsList => "airports.list",
            Call::SegmentsSearch(_) => "segments.search",
            Call::SegmentsGet(_) => "segments.get",
            Call::RoutesFind(_) => "routes.find",
            Call::Book(b) if b.hold_seconds.is_some() => "bookings.hold",
            Call::Book(_) => "bookings.create",
            Call::Confirm(..) => "bookings.confirm",
            Call::Cancel(..) => "bookings.cancel",
            Call::Get(..) => "bookings.get",
            Call::List(_) => "bookings.list",
            Call::ClusterStatus => "cluster.status",
            Call::MoveSlots(_) => "admin.move_slots",
            Call::AddShard(_) => "admin.add_shard",
        }
    }
}

fn parse_params<T: DeserializeOwned>(params: Option<&RawValue>) -> Result<T, Error> {
    let text = params.map_or("{}", RawValue::get);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends " at line 1 column 9"; the position means
        // nothing to a client that sent one line, so it is dropped.
        let text = inner.to_string();
        let reason = text.split(" at line ").next().unwrap_or(&text);
        if path == "." {
            Error::invalid_params(reason.to_owned())
        } else {
            Error::invalid_params(format!("{path}: {reason}"))
        }
    })
}

fn no_params(params: Option<&RawValue>) -> Result<(), Error> {
    parse_params::<NoParams>(params).map(|_| ())
}

fn check_range(
    field: &str,
    value: Option<u32>,
    min: u32,
    max: u32,
    default: u32,
) -> Result<u32, Error> {
    let value = value.unwrap_or(default);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::invalid_params(format!(
            "{field} must be from {min} to {max}, got {value}"
        )))
    }
}

fn search(mut params: SearchParams) -> Result<Call, Error> {
    if params.origin.is_none() && params.destination.is_none() {
        return Err(Error::invalid_params(
            "give at least one of origin and destination",
        ));
    }
    for (field, code) in [
        ("origin", &params.origin),
        ("destination", &params.destination),
    ] {
        if let Some(code) = code {
            validate_airport(field, code).map_err(Error::invalid_params)?;
        }
    }
    params.limit = Some(check_range("limit", params.limit, 1, 1000, 100)?);
    Ok(Call::SegmentsSearch(params))
}

fn routes(mut params: RoutesParams) -> Result<Call, Error> {
    validate_airport("origin", &params.origin).map_err(Error::invalid_params)?;
    validate_airport("destination", &params.destination).map_err(Error::invalid_params)?;
    params.seats = Some(check_range("seats", params.seats, 1, MAX_SEATS, 1)?);
    params.max_stops = Some(check_range("max_stops", params.max_stops, 0, 3, 1)?);
    params.limit = Some(check_range("limit", params.limit, 1, 50, 10)?);
    Ok(Call::RoutesFind(params))
}

fn book(params: BookParams, hold: bool) -> Result<Call, Error> {
    params.passenger.validate().map_err(Error::invalid_params)?;
    let count = params.segments.len();
    if count == 0 || count > MAX_SEGMENTS_PER_BOOKING {
        return Err(Error::invalid_params(format!(
            "segments must list 1 to {MAX_SEGMENTS_PER_BOOKING} segment ids, got {count}"
        )));
    }
    for (index, id) in params.segments.iter().enumerate() {
        validate_segment_id(&format!("segments[{index}]"), id).map_err(Error::invalid_params)?;
        if params.segments[..index].contains(id) {
            return Err(Error::invalid_params(format!(
                "segments[{index}] repeats segment {id}; list each segment once"
            )));
        }
    }
    let seats = check_range("seats", params.seats, 1, MAX_SEATS, 1)?;
    if let Some(request_id) = &params.request_id {
        let length = request_id.chars().count();
        if length == 0 || length > MAX_REQUEST_ID {
            return Err(Error::invalid_params(format!(
                "request_id must be 1 to {MAX_REQUEST_ID} characters, got {length}"
            )));
        }
    }
    let hold_seconds = match (hold, params.hold_seconds) {
        (true, value) => Some(check_range(
            "hold_seconds",
            value,
            1,
            HOLD_SECONDS_MAX,
            HOLD_SECONDS_DEFAULT,
        )?),
        (false, None) => None,
        (false, Some(_)) => {
            return Err(Error::invalid_params(
                "unknown field `hold_seconds`: only bookings.hold takes it",
            ))
        }
    };
    Ok(Call::Book(BookRequest {
        passenger: params.passenger,
        segments: params.segments,
        seats,
        request_id: params.request_id,
        hold_seconds,
    }))
}

fn booking_ref(params: Option<&RawValue>) -> Result<(Locator, String), Error> {
    let params: BookingRef = parse_params(params)?;
    let locator =
        Locator::parse(&params.id).map_err(|e| Error::invalid_params(format!("id: {e}")))?;
    validate_document(&params.document).map_err(Error::invalid_params)?;
    Ok((locator, params.document))
}

/// `ping` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// Always true.
    pub pong: bool,
}

/// One airport in `airports.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AirportView {
    /// IATA code.
    pub code: String,
    /// Airport name.
    pub name: String,
    /// City served.
    pub city: String,
}

/// `airports.list` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AirportsResult {
    /// Every airport of the schedule, by code.
    pub airports: Vec<AirportView>,
}

/// Result of a request that fans out to every shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// True when some shards did not answer in time.
    pub partial: bool,
    /// Ids of the shards that did not answer.
    pub unavailable_shards: Vec<u32>,
}

/// `segments.search` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    /// Matching segments by departure time, then id.
    pub segments: Vec<Segment>,
    /// Which shards answered.
    #[serde(flatten)]
    pub coverage: Coverage,
}

/// One itinerary in `routes.find`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The segments in travel order.
    pub segments: Vec<Segment>,
    /// Departure of the first segment.
    pub departure: String,
    /// Arrival of the last segment.
    pub arrival: String,
    /// From first departure to last arrival.
    pub duration_minutes: u32,
    /// Connections: segments minus one.
    pub stops: u32,
    /// The smallest `seats_left` of the segments.
    pub seats_left: u32,
}

/// `routes.find` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesResult {
    /// By arrival, then duration, then fewer stops.
    pub routes: Vec<Route>,
    /// Which shards answered.
    #[serde(flatten)]
    pub coverage: Coverage,
}

/// `bookings.list` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingsResult {
    /// Newest first.
    pub bookings: Vec<Booking>,
    /// Which shards answered.
    #[serde(flatten)]
    pub coverage: Coverage,
}

/// One shard in `cluster.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStatusView {
    /// Shard id.
    pub id: u32,
    /// Internal address.
    pub address: String,
    /// Inclusive slot ranges.
    pub slots: Vec<[u16; 2]>,
    /// Whether the router reached it just now.
    pub healthy: bool,
    /// Segments it owns; `null` when it did not answer.
    pub segments: Option<u64>,
    /// Bookings whose home it is; `null` when it did not answer.
    pub bookings: Option<u64>,
    /// The move out of this shard in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<crate::internal::MoveView>,
}

/// `cluster.status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Always 16384.
    pub slots_total: u16,
    /// The shard map's version.
    pub map_version: u64,
    /// Every shard.
    pub shards: Vec<ShardStatusView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: &str, params: &str) -> Result<Call, Error> {
        let raw = RawValue::from_string(params.to_owned()).unwrap();
        Call::parse(method, Some(&raw))
    }

    const PASSENGER: &str = r#""passenger":{"name":"Ana","document":"X1"}"#;

    #[test]
    fn create_fills_defaults() {
        let call = parse(
            "bookings.create",
            &format!(r#"{{{PASSENGER},"segments":["AD1-2026-12-20"]}}"#),
        )
        .unwrap();
        let Call::Book(book) = call else {
            panic!("expected a booking")
        };
        assert_eq!(book.seats, 1);
        assert_eq!(book.hold_seconds, None);
        let call = parse(
            "bookings.hold",
            &format!(r#"{{{PASSENGER},"segments":["AD1-2026-12-20"]}}"#),
        )
        .unwrap();
        let Call::Book(book) = call else {
            panic!("expected a hold")
        };
        assert_eq!(book.hold_seconds, Some(600));
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse(
            "bookings.create",
            &format!(r#"{{{PASSENGER},"segments":["AD1-2026-12-20"],"seat":2}}"#),
        )
        .unwrap_err();
        assert_eq!(err.code(), -32602);
        assert!(err.to_string().contains("seat"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_rejected_not_clamped() {
        let err = parse(
            "bookings.create",
            &format!(r#"{{{PASSENGER},"segments":["AD1-2026-12-20"],"seats":10}}"#),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("seats must be from 1 to 9"),
            "{err}"
        );
        let err = parse("segments.search", r#"{"origin":"GRU","limit":1001}"#).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        let err = parse(
            "routes.find",
            r#"{"origin":"GRU","destination":"SSA","date":"2026-12-20","max_stops":4}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_stops"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = parse(
            "bookings.create",
            &format!(r#"{{{PASSENGER},"segments":["AD1-2026-12-20"],"seats":"2"}}"#),
        )
        .unwrap_err();
        assert!(err.to_string().contains("seats"), "{err}");
        let err = parse(
            "routes.find",
            r#"{"origin":"GRU","destination":"SSA","date":"20-12-2026"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("date"), "{err}");
    }

    #[test]
    fn duplicate_segments_and_unknown_methods_are_rejected() {
        let err = parse(
            "bookings.create",
            &format!(r#"{{{PASSENGER},"segments":["AD1-2026-12-20","AD1-2026-12-20"]}}"#),
        )
        .unwrap_err();
        assert!(err.to_string().contains("repeats"), "{err}");
        assert_eq!(parse("bookings.delete", "{}").unwrap_err().code(), -32601);
        assert_eq!(parse("ping", r#"{"x":1}"#).unwrap_err().code(), -32602);
    }

    #[test]
    fn fingerprint_changes_with_params() {
        let base = BookRequest {
            passenger: Passenger {
                name: "Ana".into(),
                document: "X1".into(),
            },
            segments: vec!["AD1-2026-12-20".into()],
            seats: 1,
            request_id: Some("r".into()),
            hold_seconds: None,
        };
        let mut other = base.clone();
        other.seats = 2;
        assert_ne!(base.fingerprint(), other.fingerprint());
        let mut same = base.clone();
        same.request_id = Some("other".into());
        assert_eq!(base.fingerprint(), same.fingerprint());
    }
}
