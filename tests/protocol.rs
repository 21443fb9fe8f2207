//! The client protocol over real TCP against real router and shard
//! processes: every method's result shape, every error code a client can
//! provoke, and framing, pipelining, batches and notifications.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde_json::{json, Value};
use tokio::time::{timeout, Instant};
use trecho_client::RawConnection;
use trecho_tests::{start_cluster, Cluster};

use common::{days_ahead, fill_until, CALL_TIMEOUT};

/// Maximum request line length the router accepts by default, in bytes.
const MAX_LINE: usize = 65_536;

/// Opens a raw connection to the router.
async fn connect(cluster: &Cluster) -> RawConnection {
    RawConnection::connect(cluster.router_addr())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()))
}

/// Reads the next response line as JSON, failing the test after
/// [`CALL_TIMEOUT`] or at end of stream.
async fn next_json(raw: &mut RawConnection) -> Value {
    timeout(CALL_TIMEOUT, raw.read_json())
        .await
        .expect("no response within the call timeout")
        .expect("reading a response failed")
        .expect("the router closed the connection")
}

/// Returns a request line for `method` with numeric `id`.
fn request(id: impl Into<Value>, method: &str, params: Value) -> Vec<u8> {
    let mut value = json!({"jsonrpc": "2.0", "id": id.into(), "method": method});
    if !params.is_null() {
        value["params"] = params;
    }
    serde_json::to_vec(&value).expect("a request encodes")
}

/// Sends one request and returns its response, checking the envelope.
async fn call(raw: &mut RawConnection, id: u64, method: &str, params: Value) -> Value {
    raw.send_line(&request(id, method, params))
        .await
        .expect("sending a request failed");
    let response = next_json(raw).await;
    assert_eq!(response["jsonrpc"], "2.0", "{response}");
    assert_eq!(response["id"], id, "{response}");
    response
}

/// Sends one request and returns its `result`, failing on an error.
async fn result(raw: &mut RawConnection, id: u64, method: &str, params: Value) -> Value {
    let response = call(raw, id, method, params).await;
    assert_eq!(
        keys(&response),
        ["id", "jsonrpc", "result"],
        "{method} failed: {response}"
    );
    response["result"].clone()
}

/// Sends one request and returns its `error`, failing on a result.
async fn error(raw: &mut RawConnection, id: u64, method: &str, params: Value) -> Value {
    let response = call(raw, id, method, params).await;
    assert_eq!(
        keys(&response),
        ["error", "id", "jsonrpc"],
        "{method} did not fail: {response}"
    );
    response["error"].clone()
}

/// Returns an object's member names in sorted order.
fn keys(value: &Value) -> Vec<&str> {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{value} is not an object"));
    let sorted: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    sorted.into_iter().collect()
}

/// Checks that `text` is `YYYY-MM-DDTHH:MM:SS` plus `Z` or `±HH:MM`.
fn assert_rfc3339(text: &Value) {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("{text} is not a string"));
    let bytes = text.as_bytes();
    let digits =
        |range: std::ops::Range<usize>| range.into_iter().all(|i| bytes[i].is_ascii_digit());
    assert!(text.len() >= 20, "{text} is too short for RFC 3339");
    assert!(
        digits(0..4) && digits(5..7) && digits(8..10),
        "{text}: date"
    );
    assert_eq!(&text[10..11], "T", "{text}");
    assert!(
        digits(11..13) && digits(14..16) && digits(17..19),
        "{text}: time"
    );
    let zone = &text[19..];
    let zone = zone.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset_ok =
        zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-')) && &zone[3..4] == ":";
    assert!(zone == "Z" || offset_ok, "{text}: zone {zone}");
}

fn assert_segment_shape(segment: &Value) {
    assert_eq!(
        keys(segment),
        [
            "arrival",
            "capacity",
            "departure",
            "destination",
            "flight",
            "id",
            "origin",
            "seats_left"
        ],
        "{segment}"
    );
    assert_rfc3339(&segment["departure"]);
    assert_rfc3339(&segment["arrival"]);
    let id = segment["id"].as_str().expect("id is a string");
    let flight = segment["flight"].as_str().expect("flight is a string");
    let departure = segment["departure"]
        .as_str()
        .expect("departure is a string");
    // The id is the flight number plus the local departure date.
    assert_eq!(id, format!("{flight}-{}", &departure[..10]), "{segment}");
    assert!(segment["capacity"].as_u64().expect("capacity is a number") > 0);
    assert!(segment["seats_left"].as_u64() <= segment["capacity"].as_u64());
}

fn assert_locator(id: &Value) {
    let id = id
        .as_str()
        .unwrap_or_else(|| panic!("{id} is not a string"));
    let symbol = |c: char| c.is_ascii_uppercase() || ('2'..='9').contains(&c);
    assert!(
        id.len() == 6 && id.chars().all(symbol),
        "{id} is not a locator"
    );
}

fn assert_booking_shape(booking: &Value, status: &str) {
    let mut expected = vec![
        "created_at",
        "id",
        "passenger",
        "seats",
        "segments",
        "status",
    ];
    // `expires_at` is set only while held; otherwise absent or null.
    if booking.get("expires_at").is_some() {
        expected.insert(1, "expires_at");
    }
    assert_eq!(keys(booking), expected, "{booking}");
    assert_locator(&booking["id"]);
    assert_eq!(booking["status"], status, "{booking}");
    assert_eq!(keys(&booking["passenger"]), ["document", "name"]);
    assert_rfc3339(&booking["created_at"]);
    if status == "held" {
        assert_rfc3339(&booking["expires_at"]);
    } else {
        assert!(
            matches!(booking.get("expires_at"), None | Some(Value::Null)),
            "{status} booking has expires_at: {booking}"
        );
    }
}

fn passenger(document: &str) -> Value {
    json!({"name": "Ana Souza", "document": document})
}

/// Returns the ids of segments from `origin` to `destination` on `date`.
async fn segment_ids(
    raw: &mut RawConnection,
    origin: &str,
    destination: &str,
    date: &str,
) -> Vec<String> {
    let params = json!({"origin": origin, "destination": destination, "date": date});
    let found = result(raw, 900, "segments.search", params).await;
    found["segments"]
        .as_array()
        .expect("segments is a list")
        .iter()
        .map(|s| s["id"].as_str().expect("id is a string").to_owned())
        .collect()
}

#[tokio::test]
async fn read_methods_return_documented_shapes() {
    let cluster = start_cluster(3).await;
    let mut raw = connect(&cluster).await;
    let date = days_ahead(3);

    let pong = result(&mut raw, 1, "ping", Value::Null).await;
    assert_eq!(pong, json!({"pong": true}));
    let pong = result(&mut raw, 2, "ping", json!({})).await;
    assert_eq!(pong, json!({"pong": true}));

    let airports = result(&mut raw, 3, "airports.list", json!({})).await;
    assert_eq!(keys(&airports), ["airports"]);
    let list = airports["airports"].as_array().expect("airports is a list");
    assert!(list.len() >= 25, "only {} airports", list.len());
    for airport in list {
        assert_eq!(keys(airport), ["city", "code", "name"], "{airport}");
    }
    let codes: Vec<&str> = list.iter().filter_map(|a| a["code"].as_str()).collect();
    for code in ["GRU", "SSA", "BSB", "POA"] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }

    let params = json!({"origin": "GRU", "destination": "SSA", "date": date});
    let search = result(&mut raw, 4, "segments.search", params).await;
    assert_eq!(keys(&search), ["partial", "segments", "unavailable_shards"]);
    assert_eq!(search["partial"], false);
    assert_eq!(search["unavailable_shards"], json!([]));
    let segments = search["segments"].as_array().expect("segments is a list");
    assert!(!segments.is_empty(), "no GRU-SSA segment on {date}");
    for segment in segments {
        assert_segment_shape(segment);
        assert_eq!(segment["origin"], "GRU");
        assert_eq!(segment["destination"], "SSA");
        assert_eq!(
            &segment["id"].as_str().unwrap()[segment["flight"].as_str().unwrap().len() + 1..],
            date
        );
    }

    let params = json!({"destination": "SSA", "date": date, "limit": 2});
    let limited = result(&mut raw, 5, "segments.search", params).await;
    assert_eq!(limited["segments"].as_array().map(Vec::len), Some(2));

    let params = json!({"origin": "ZZZ"});
    let nowhere = result(&mut raw, 6, "segments.search", params).await;
    assert_eq!(
        nowhere["segments"],
        json!([]),
        "a code no airport has gives no segments"
    );

    let first = segments[0].clone();
    let got = result(&mut raw, 7, "segments.get", json!({"id": first["id"]})).await;
    assert_eq!(got, first);

    let params = json!({"origin": "SSA", "destination": "POA", "date": date, "limit": 5});
    let routes = result(&mut raw, 8, "routes.find", params).await;
    assert_eq!(keys(&routes), ["partial", "routes", "unavailable_shards"]);
    assert_eq!(routes["partial"], false);
    let routes = routes["routes"].as_array().expect("routes is a list");
    assert!(!routes.is_empty(), "no SSA-POA route on {date}");
    assert!(routes.len() <= 5);
    for route in routes {
        assert_route(route, "SSA", "POA");
    }
    let order: Vec<(i64, u64, u64)> = routes.iter().map(route_order).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "routes are not sorted by arrival, duration, stops"
    );

    // Filters: `seats` keeps routes with that many seats on every segment,
    // and `max_stops` 0 keeps direct flights only.
    let params =
        json!({"origin": "GRU", "destination": "SSA", "date": date, "seats": 9, "max_stops": 0});
    let direct = result(&mut raw, 10, "routes.find", params).await;
    let direct = direct["routes"].as_array().expect("routes is a list");
    assert!(!direct.is_empty(), "no direct GRU-SSA route on {date}");
    for route in direct {
        assert_route(route, "GRU", "SSA");
        assert_eq!(route["stops"], 0, "{route}");
        assert!(route["seats_left"].as_u64() >= Some(9), "{route}");
    }
    let params = json!({"origin": "GRU", "destination": "ZZZ", "date": date});
    let nowhere = result(&mut raw, 11, "routes.find", params).await;
    assert_eq!(nowhere["routes"], json!([]));

    // Times carry the UTC offset of their airport: Manaus is UTC-4.
    let params = json!({"origin": "MAO", "date": date, "limit": 3});
    let manaus = result(&mut raw, 12, "segments.search", params).await;
    let manaus = manaus["segments"].as_array().expect("segments is a list");
    assert!(!manaus.is_empty(), "no departure from MAO on {date}");
    for segment in manaus {
        let departure = segment["departure"].as_str().expect("departure");
        assert!(departure.ends_with("-04:00"), "{segment}");
    }

    let status = result(&mut raw, 9, "cluster.status", json!({})).await;
    assert_eq!(keys(&status), ["map_version", "shards", "slots_total"]);
    assert_eq!(status["slots_total"], 16384);
    let shards = status["shards"].as_array().expect("shards is a list");
    assert_eq!(shards.len(), 3);
    let mut covered = 0;
    for shard in shards {
        assert_eq!(
            keys(shard),
            ["address", "bookings", "healthy", "id", "segments", "slots"],
            "{shard}"
        );
        assert_eq!(shard["healthy"], true);
        assert!(shard["segments"].as_u64() > Some(0), "{shard}");
        for range in shard["slots"].as_array().expect("slots is a list") {
            let first = range[0].as_u64().expect("first slot");
            let last = range[1].as_u64().expect("last slot");
            assert!(first <= last, "{range}");
            covered += last - first + 1;
        }
    }
    assert_eq!(
        covered, 16384,
        "the slot ranges do not cover every slot once"
    );
}

/// Returns Unix seconds of an RFC 3339 time with an offset.
fn parse_instant(text: &str) -> i64 {
    let field = |range: std::ops::Range<usize>| -> i64 { text[range].parse().expect("a number") };
    let date = trecho_common::time::Date::parse(&text[..10]).expect("a date");
    let local = date.midnight_unix(0) + field(11..13) * 3600 + field(14..16) * 60 + field(17..19);
    let zone = &text[19..];
    if zone == "Z" {
        return local;
    }
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let offset = field(20..22) * 60 + field(23..25);
    local - sign * offset * 60
}

/// Returns the sort key of a route: arrival instant, duration, stops.
fn route_order(route: &Value) -> (i64, u64, u64) {
    let arrival = route["arrival"].as_str().expect("arrival is a string");
    let duration = route["duration_minutes"].as_u64().expect("duration");
    let stops = route["stops"].as_u64().expect("stops");
    (parse_instant(arrival), duration, stops)
}

fn assert_route(route: &Value, origin: &str, destination: &str) {
    assert_eq!(
        keys(route),
        [
            "arrival",
            "departure",
            "duration_minutes",
            "seats_left",
            "segments",
            "stops"
        ],
        "{route}"
    );
    let legs = route["segments"].as_array().expect("segments is a list");
    for leg in legs {
        assert_segment_shape(leg);
    }
    let first = &legs[0];
    let last = &legs[legs.len() - 1];
    assert_eq!(first["origin"], origin);
    assert_eq!(last["destination"], destination);
    assert_eq!(route["departure"], first["departure"]);
    assert_eq!(route["arrival"], last["arrival"]);
    assert_eq!(route["stops"], legs.len() as u64 - 1);
    let minutes = (parse_instant(route["arrival"].as_str().unwrap())
        - parse_instant(route["departure"].as_str().unwrap()))
        / 60;
    assert_eq!(route["duration_minutes"], minutes, "{route}");
    let smallest = legs.iter().filter_map(|l| l["seats_left"].as_u64()).min();
    assert_eq!(route["seats_left"].as_u64(), smallest, "{route}");
    for pair in legs.windows(2) {
        assert_eq!(pair[0]["destination"], pair[1]["origin"], "{route}");
        let arrive = parse_instant(pair[0]["arrival"].as_str().unwrap());
        let leave = parse_instant(pair[1]["departure"].as_str().unwrap());
        let connection = (leave - arrive) / 60;
        assert!(
            (45..=720).contains(&connection),
            "a connection of {connection} minutes in {route}"
        );
    }
}

#[tokio::test]
async fn booking_methods_return_documented_shapes() {
    let cluster = start_cluster(3).await;
    let mut raw = connect(&cluster).await;
    let date = days_ahead(4);
    let ids = segment_ids(&mut raw, "GRU", "SSA", &date).await;
    let segment = ids[0].clone();
    let before = result(&mut raw, 1, "segments.get", json!({"id": segment})).await;
    let left = before["seats_left"].as_u64().expect("seats_left");

    let params = json!({"passenger": passenger("DOC-1"), "segments": [segment], "seats": 2});
    let created = result(&mut raw, 2, "bookings.create", params).await;
    assert_booking_shape(&created, "confirmed");
    assert_eq!(created["passenger"], passenger("DOC-1"));
    assert_eq!(created["seats"], 2);
    assert_eq!(created["segments"], json!([segment]));
    let after = result(&mut raw, 3, "segments.get", json!({"id": segment})).await;
    assert_eq!(after["seats_left"], left - 2);

    let params =
        json!({"passenger": passenger("DOC-1"), "segments": [segment], "hold_seconds": 600});
    let held = result(&mut raw, 4, "bookings.hold", params).await;
    assert_booking_shape(&held, "held");
    assert_eq!(held["seats"], 1, "seats defaults to 1");
    let reference = json!({"id": held["id"], "document": "DOC-1"});
    let confirmed = result(&mut raw, 5, "bookings.confirm", reference.clone()).await;
    assert_booking_shape(&confirmed, "confirmed");
    assert_eq!(confirmed["id"], held["id"]);
    let again = result(&mut raw, 6, "bookings.confirm", reference.clone()).await;
    assert_eq!(again, confirmed, "confirming twice changes nothing");

    let got = result(&mut raw, 7, "bookings.get", reference.clone()).await;
    assert_eq!(got, confirmed);

    let cancelled = result(&mut raw, 8, "bookings.cancel", reference.clone()).await;
    assert_booking_shape(&cancelled, "cancelled");
    let again = result(&mut raw, 9, "bookings.cancel", reference).await;
    assert_eq!(again, cancelled, "cancelling twice changes nothing");
    let after = result(&mut raw, 10, "segments.get", json!({"id": segment})).await;
    assert_eq!(
        after["seats_left"],
        left - 2,
        "the cancelled seat is released"
    );

    let list = result(&mut raw, 11, "bookings.list", json!({"document": "DOC-1"})).await;
    assert_eq!(keys(&list), ["bookings", "partial", "unavailable_shards"]);
    assert_eq!(list["partial"], false);
    let bookings = list["bookings"].as_array().expect("bookings is a list");
    assert_eq!(bookings.len(), 2);
    let listed: BTreeSet<&str> = bookings.iter().filter_map(|b| b["id"].as_str()).collect();
    let made: BTreeSet<&str> = [&created["id"], &held["id"]]
        .into_iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(listed, made);
    let nobody = result(&mut raw, 12, "bookings.list", json!({"document": "NOBODY"})).await;
    assert_eq!(nobody["bookings"], json!([]));
}

#[tokio::test]
async fn invalid_json_and_utf8_get_parse_errors_with_null_id() {
    let cluster = start_cluster(1).await;
    let mut raw = connect(&cluster).await;
    let lines: [&[u8]; 5] = [
        b"{bad",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"",
        b"\xff\xfe",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xc3\x28ng\"}",
        b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},",
    ];
    for (index, line) in lines.iter().enumerate() {
        raw.send_line(line).await.expect("send");
        let response = next_json(&mut raw).await;
        assert_eq!(response["id"], Value::Null, "line {index}: {response}");
        assert_eq!(
            response["error"]["code"], -32700,
            "line {index}: {response}"
        );
        // The connection stays usable after each.
        let pong = result(&mut raw, 100 + index as u64, "ping", Value::Null).await;
        assert_eq!(pong["pong"], true);
    }
}

#[tokio::test]
async fn invalid_envelopes_get_invalid_request() {
    let cluster = start_cluster(1).await;
    let mut raw = connect(&cluster).await;
    // (line, id the error must carry)
    let cases: [(&str, Value); 9] = [
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, json!(1)),
        (r#"{"id":2,"method":"ping"}"#, json!(2)),
        (
            r#"{"jsonrpc":2.0,"id":"three","method":"ping"}"#,
            json!("three"),
        ),
        (
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
            Value::Null,
        ),
        (r#"{"jsonrpc":"2.0","id":[4],"method":"ping"}"#, Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            Value::Null,
        ),
        (r#"{"jsonrpc":"2.0","id":5,"method":7}"#, json!(5)),
        (r#"{"jsonrpc":"2.0","id":6}"#, json!(6)),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","params":"x"}"#,
            json!(7),
        ),
    ];
    for (line, id) in cases {
        raw.send_line(line.as_bytes()).await.expect("send");
        let response = next_json(&mut raw).await;
        assert_eq!(response["error"]["code"], -32600, "{line}: {response}");
        assert_eq!(response["id"], id, "{line}: {response}");
    }
    for line in ["42", r#""ping""#, "null"] {
        raw.send_line(line.as_bytes()).await.expect("send");
        let response = next_json(&mut raw).await;
        assert_eq!(response["error"]["code"], -32600, "{line}: {response}");
        assert_eq!(response["id"], Value::Null, "{line}: {response}");
    }
    let pong = result(&mut raw, 8, "ping", Value::Null).await;
    assert_eq!(pong["pong"], true);
}

#[tokio::test]
async fn empty_batch_gets_one_invalid_request() {
    let cluster = start_cluster(1).await;
    let mut raw = connect(&cluster).await;
    raw.send_line(b"[]").await.expect("send");
    raw.send_line(b" [ ] ").await.expect("send");
    for _ in 0..2 {
        let response = next_json(&mut raw).await;
        assert!(
            response.is_object(),
            "an empty batch gets one error, not a list: {response}"
        );
        assert_eq!(response["error"]["code"], -32600, "{response}");
        assert_eq!(response["id"], Value::Null);
    }
    let pong = result(&mut raw, 1, "ping", Value::Null).await;
    assert_eq!(pong["pong"], true);
}

/// Returns a `ping` request of exactly `length` bytes, padded with JSON
/// whitespace.
fn ping_of_length(id: u64, length: usize) -> Vec<u8> {
    let head = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping""#);
    let mut line = head.into_bytes();
    line.resize(length - 1, b' ');
    line.push(b'}');
    assert_eq!(line.len(), length);
    line
}

#[tokio::test]
async fn line_of_exactly_64_kib_is_accepted() {
    let cluster = start_cluster(1).await;
    let mut raw = connect(&cluster).await;
    raw.send_line(&ping_of_length(1, MAX_LINE))
        .await
        .expect("send");
    let response = next_json(&mut raw).await;
    assert_eq!(response["id"], 1, "{response}");
    assert_eq!(response["result"]["pong"], true, "{response}");
    // With `\r\n` the line is one byte longer on the wire and still fits.
    let mut line = ping_of_length(2, MAX_LINE);
    line.extend_from_slice(b"\r\n");
    raw.send_bytes(&line).await.expect("send");
    let response = next_json(&mut raw).await;
    assert_eq!(response["result"]["pong"], true, "{response}");
}

#[tokio::test]
async fn overlong_line_gets_one_error_and_connection_stays_usable() {
    let cluster = start_cluster(1).await;
    let mut raw = connect(&cluster).await;
    for (id, length) in [(1, MAX_LINE + 1), (2, 1_000_000)] {
        // Sent in pieces, as a slow client would.
        let line = ping_of_length(id, length);
        for piece in line.chunks(40_000) {
            raw.send_bytes(piece).await.expect("send");
        }
        raw.send_bytes(b"\n").await.expect("send");
        let response = next_json(&mut raw).await;
        assert_eq!(response["id"], Value::Null, "{response}");
        assert_eq!(response["error"]["code"], -32600, "{response}");
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("65536"),
            "the message names the limit: {message}"
        );
        let pong = result(&mut raw, 10 + id, "ping", Value::Null).await;
        assert_eq!(
            pong["pong"], true,
            "the connection is usable after the long line"
        );
    }
}

#[tokio::test]
async fn unknown_method_gets_method_not_found() {
    let cluster = start_cluster(1).await;
    let mut raw = connect(&cluster).await;
    for method in ["bookings.delete", "Ping", "", "segments.search.all"] {
        let error = error(&mut raw, 1, method, json!({})).await;
        assert_eq!(error["code"], -32601, "{method}: {error}");
    }
}

#[tokio::test]
async fn invalid_params_get_an_error_naming_the_field() {
    let cluster = start_cluster(1).await;
    let mut raw = connect(&cluster).await;
    let date = days_ahead(3);
    let segment = format!("LA3012-{date}");
    let book = |extra: Value| {
        let mut params = json!({"passenger": passenger("DOC-1"), "segments": [segment]});
        for (key, value) in extra.as_object().expect("an object") {
            params[key] = value.clone();
        }
        params
    };
    let route = |extra: Value| {
        let mut params = json!({"origin": "GRU", "destination": "SSA", "date": date});
        for (key, value) in extra.as_object().expect("an object") {
            params[key] = value.clone();
        }
        params
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("bookings.create", book(json!({"seat": 2})), "seat"),
        ("bookings.create", book(json!({"seats": 0})), "seats"),
        ("bookings.create", book(json!({"seats": 10})), "seats"),
        ("bookings.create", book(json!({"seats": "2"})), "seats"),
        (
            "bookings.create",
            book(json!({"hold_seconds": 60})),
            "hold_seconds",
        ),
        (
            "bookings.create",
            book(json!({"request_id": "r".repeat(65)})),
            "request_id",
        ),
        (
            "bookings.create",
            book(json!({"request_id": ""})),
            "request_id",
        ),
        ("bookings.create", book(json!({"segments": []})), "segments"),
        (
            "bookings.create",
            book(json!({"segments": vec![segment.clone(); 2]})),
            "segments",
        ),
        (
            "bookings.create",
            book(
                json!({"segments": (1..=7).map(|n| format!("LA30{n}-{date}")).collect::<Vec<_>>()}),
            ),
            "segments",
        ),
        (
            "bookings.create",
            book(json!({"segments": ["not a segment"]})),
            "segments",
        ),
        (
            "bookings.create",
            book(json!({"passenger": {"name": "Ana"}})),
            "document",
        ),
        (
            "bookings.create",
            book(json!({"passenger": {"name": "Ana", "document": "X1", "age": 30}})),
            "age",
        ),
        (
            "bookings.create",
            book(json!({"passenger": {"name": "", "document": "X1"}})),
            "name",
        ),
        (
            "bookings.hold",
            book(json!({"hold_seconds": 0})),
            "hold_seconds",
        ),
        (
            "bookings.hold",
            book(json!({"hold_seconds": 3601})),
            "hold_seconds",
        ),
        (
            "segments.search",
            json!({"origin": "GRU", "limit": 0}),
            "limit",
        ),
        (
            "segments.search",
            json!({"origin": "GRU", "limit": 1001}),
            "limit",
        ),
        ("segments.search", json!({"origin": "gru"}), "origin"),
        (
            "segments.search",
            json!({"origin": "GRU", "date": "2026-13-01"}),
            "date",
        ),
        ("segments.search", json!({"date": date}), "origin"),
        (
            "segments.search",
            json!({"origin": "GRU", "when": date}),
            "when",
        ),
        ("segments.get", json!({}), "id"),
        ("routes.find", route(json!({"limit": 0})), "limit"),
        ("routes.find", route(json!({"limit": 51})), "limit"),
        ("routes.find", route(json!({"seats": 0})), "seats"),
        ("routes.find", route(json!({"seats": 10})), "seats"),
        ("routes.find", route(json!({"max_stops": 4})), "max_stops"),
        ("routes.find", route(json!({"date": "20-12-2026"})), "date"),
        (
            "routes.find",
            json!({"origin": "GRU", "destination": "SSA"}),
            "date",
        ),
        (
            "bookings.get",
            json!({"id": "AAAAA1", "document": "X1"}),
            "id",
        ),
        ("bookings.get", json!({"id": "AAAAAA"}), "document"),
        (
            "bookings.confirm",
            json!({"id": "AAAAAA", "document": "has space"}),
            "document",
        ),
        (
            "bookings.list",
            json!({"document": "X1", "limit": 5}),
            "limit",
        ),
        ("ping", json!({"verbose": true}), "verbose"),
        ("cluster.status", json!({"shard": 0}), "shard"),
        ("ping", json!([]), "params"),
    ];
    for (index, (method, params, field)) in cases.into_iter().enumerate() {
        let error = error(&mut raw, index as u64, method, params.clone()).await;
        assert_eq!(error["code"], -32602, "{method} {params}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{method} {params}: the message does not name {field}: {message}"
        );
    }
    // Nothing was booked by any of them.
    let list = result(&mut raw, 999, "bookings.list", json!({"document": "DOC-1"})).await;
    assert_eq!(list["bookings"], json!([]));
}

#[tokio::test]
async fn application_errors_carry_code_and_kind() {
    // Seeding from two days ago makes segments that departed already.
    let cluster = Cluster::builder(2)
        .shard_args(&["--start-date", &days_ahead(-2), "--days", "8"])
        .start()
        .await;
    let client = cluster.client().await;
    let mut raw = connect(&cluster).await;
    let date = days_ahead(3);
    let ids = segment_ids(&mut raw, "GRU", "SSA", &date).await;
    let segment = ids[0].clone();

    // 1001 sold_out: two seats left, three requested.
    fill_until(&client, &segment, 2, "FILLER").await;
    let params = json!({"passenger": passenger("DOC-1"), "segments": [segment], "seats": 3});
    let sold_out = error(&mut raw, 1, "bookings.create", params).await;
    assert_eq!(sold_out["code"], 1001, "{sold_out}");
    assert_eq!(sold_out["data"]["kind"], "sold_out");
    assert_eq!(sold_out["data"]["segment"], segment.as_str());
    let after = result(&mut raw, 2, "segments.get", json!({"id": segment})).await;
    assert_eq!(after["seats_left"], 2, "sold_out changed the seat count");

    // 1002 unknown_segment, for a read and for a booking.
    let unknown = format!("ZZ9999-{date}");
    let error_get = error(&mut raw, 3, "segments.get", json!({"id": unknown})).await;
    assert_eq!(error_get["code"], 1002, "{error_get}");
    assert_eq!(error_get["data"]["kind"], "unknown_segment");
    assert_eq!(error_get["data"]["segment"], unknown.as_str());
    let params = json!({"passenger": passenger("DOC-1"), "segments": [unknown]});
    let error_book = error(&mut raw, 4, "bookings.create", params).await;
    assert_eq!(
        error_book["data"]["kind"], "unknown_segment",
        "{error_book}"
    );

    // 1003 unknown_booking.
    let params = json!({"id": "AAAAAA", "document": "DOC-1"});
    let missing = error(&mut raw, 5, "bookings.get", params).await;
    assert_eq!(missing["code"], 1003, "{missing}");
    assert_eq!(missing["data"]["kind"], "unknown_booking");
    assert_eq!(missing["data"]["booking"], "AAAAAA");

    // 1004 hold_expired and 1009 invalid_state on an expired hold.
    let params = json!({"passenger": passenger("DOC-1"), "segments": [segment], "hold_seconds": 1});
    let held = result(&mut raw, 6, "bookings.hold", params).await;
    let reference = json!({"id": held["id"], "document": "DOC-1"});
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let booking = result(&mut raw, 7, "bookings.get", reference.clone()).await;
        if booking["status"] == "expired" {
            break;
        }
        assert_eq!(booking["status"], "held", "{booking}");
        assert!(
            Instant::now() < deadline,
            "a 1 s hold did not expire within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = result(&mut raw, 8, "segments.get", json!({"id": segment})).await;
    assert_eq!(
        after["seats_left"], 2,
        "the expired hold's seat is released"
    );
    let expired = error(&mut raw, 9, "bookings.confirm", reference.clone()).await;
    assert_eq!(expired["code"], 1004, "{expired}");
    assert_eq!(expired["data"]["kind"], "hold_expired");
    assert_eq!(expired["data"]["booking"], held["id"]);
    let invalid = error(&mut raw, 10, "bookings.cancel", reference).await;
    assert_eq!(invalid["code"], 1009, "{invalid}");
    assert_eq!(invalid["data"]["kind"], "invalid_state");

    // 1009 invalid_state: confirming a cancelled hold.
    let params = json!({"passenger": passenger("DOC-1"), "segments": [segment]});
    let held = result(&mut raw, 11, "bookings.hold", params).await;
    let reference = json!({"id": held["id"], "document": "DOC-1"});
    result(&mut raw, 12, "bookings.cancel", reference.clone()).await;
    let invalid = error(&mut raw, 13, "bookings.confirm", reference).await;
    assert_eq!(invalid["code"], 1009, "{invalid}");
    assert_eq!(invalid["data"]["kind"], "invalid_state");

    // 1008 request_id_reused.
    let params =
        json!({"passenger": passenger("DOC-2"), "segments": [segment], "request_id": "k-1"});
    result(&mut raw, 14, "bookings.create", params).await;
    let params = json!({
        "passenger": passenger("DOC-2"), "segments": [segment], "request_id": "k-1", "seats": 2
    });
    let reused = error(&mut raw, 15, "bookings.create", params).await;
    assert_eq!(reused["code"], 1008, "{reused}");
    assert_eq!(reused["data"]["kind"], "request_id_reused");

    // 1010 sales_closed: a segment that departed two days ago.
    let past = days_ahead(-2);
    let departed = segment_ids(&mut raw, "GRU", "SSA", &past).await;
    let departed = departed
        .first()
        .expect("segments seeded two days ago")
        .clone();
    let params = json!({"passenger": passenger("DOC-1"), "segments": [departed]});
    let closed = error(&mut raw, 16, "bookings.create", params).await;
    assert_eq!(closed["code"], 1010, "{closed}");
    assert_eq!(closed["data"]["kind"], "sales_closed");
    assert_eq!(closed["data"]["segment"], departed.as_str());
}

/// Connects and pings until the router admits the connection: the
/// readiness check's own connection may still count for a moment after it
/// closes.
async fn connect_admitted(cluster: &Cluster) -> RawConnection {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut raw = connect(cluster).await;
        raw.send_line(&request(1, "ping", Value::Null))
            .await
            .expect("send");
        let response = next_json(&mut raw).await;
        if response["result"]["pong"] == true {
            return raw;
        }
        assert_eq!(
            response["error"]["data"]["kind"], "overloaded",
            "{response}"
        );
        assert!(
            Instant::now() < deadline,
            "no connection admitted within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connection_over_the_limit_gets_overloaded() {
    let cluster = Cluster::builder(1)
        .router_args(&["--max-connections", "2"])
        .start()
        .await;
    let mut first = connect_admitted(&cluster).await;
    let _second = connect_admitted(&cluster).await;
    let mut third = connect(&cluster).await;
    // The router may close the connection before it reads this line.
    let _ = third.send_line(&request(1, "ping", Value::Null)).await;
    let response = next_json(&mut third).await;
    assert_eq!(response["id"], Value::Null, "{response}");
    assert_eq!(response["error"]["code"], 1007, "{response}");
    assert_eq!(response["error"]["data"]["kind"], "overloaded");
    let end = timeout(CALL_TIMEOUT, third.read_line())
        .await
        .expect("no close");
    assert!(
        matches!(end, Ok(None) | Err(_)),
        "the rejected connection stays open: {end:?}"
    );
    // The connections within the limit are unaffected.
    assert_eq!(
        result(&mut first, 2, "ping", Value::Null).await["pong"],
        true
    );
}

#[tokio::test]
async fn request_split_into_single_bytes_is_answered() {
    let cluster = start_cluster(2).await;
    let mut raw = connect(&cluster).await;
    let date = days_ahead(3);
    let mut line = request(
        7,
        "segments.search",
        json!({"origin": "GRU", "date": date, "limit": 3}),
    );
    line.push(b'\n');
    for byte in &line {
        raw.send_bytes(std::slice::from_ref(byte))
            .await
            .expect("send");
        tokio::task::yield_now().await;
    }
    let response = next_json(&mut raw).await;
    assert_eq!(response["id"], 7, "{response}");
    assert_eq!(
        response["result"]["segments"].as_array().map(Vec::len),
        Some(3)
    );
}

#[tokio::test]
async fn many_requests_in_one_write_are_all_answered() {
    let cluster = start_cluster(2).await;
    let mut raw = connect(&cluster).await;
    let date = days_ahead(3);
    let mut bytes = Vec::new();
    for id in 0..100u64 {
        let line = match id % 3 {
            0 => request(id, "ping", Value::Null),
            1 => request(
                id,
                "segments.search",
                json!({"origin": "GRU", "date": date, "limit": 1}),
            ),
            _ => request(id, "segments.get", json!({"id": format!("ZZ1-{date}")})),
        };
        bytes.extend_from_slice(&line);
        bytes.push(b'\n');
    }
    raw.send_bytes(&bytes).await.expect("send");
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        let response = next_json(&mut raw).await;
        let id = response["id"].as_u64().expect("a numeric id");
        match id % 3 {
            0 => assert_eq!(response["result"]["pong"], true, "{response}"),
            1 => assert_eq!(
                response["result"]["segments"].as_array().map(Vec::len),
                Some(1)
            ),
            _ => assert_eq!(response["error"]["code"], 1002, "{response}"),
        }
        assert!(seen.insert(id), "id {id} answered twice");
    }
    assert_eq!(seen, (0..100).collect());
}

#[tokio::test]
async fn pipelined_requests_are_matched_by_id() {
    let cluster = start_cluster(3).await;
    let mut raw = connect(&cluster).await;
    let date = days_ahead(3);
    let ids = segment_ids(&mut raw, "GRU", "SSA", &date).await;
    // 500 requests written back to back, each asking for one segment (or
    // none), so each response can be checked against its request.
    let mut expected = Vec::new();
    let mut bytes = Vec::new();
    for id in 0..500u64 {
        let segment = if id % 5 == 0 {
            format!("ZZ{id}-{date}")
        } else {
            ids[id as usize % ids.len()].clone()
        };
        bytes.extend_from_slice(&request(
            format!("req-{id}"),
            "segments.get",
            json!({"id": segment}),
        ));
        bytes.push(b'\n');
        expected.push(segment);
    }
    raw.send_bytes(&bytes).await.expect("send");
    let mut answered = vec![false; 500];
    for _ in 0..500 {
        let response = next_json(&mut raw).await;
        let id = response["id"].as_str().expect("a string id");
        let index: usize = id
            .strip_prefix("req-")
            .and_then(|n| n.parse().ok())
            .expect("an id sent");
        assert!(!answered[index], "{id} answered twice");
        answered[index] = true;
        if expected[index].starts_with("ZZ") {
            assert_eq!(
                response["error"]["data"]["segment"],
                expected[index].as_str(),
                "{response}"
            );
        } else {
            assert_eq!(
                response["result"]["id"],
                expected[index].as_str(),
                "{response}"
            );
        }
    }
    assert!(answered.iter().all(|a| *a));
}

#[tokio::test]
async fn pipelined_requests_on_one_segment_take_effect_in_order() {
    let cluster = start_cluster(2).await;
    let mut raw = connect(&cluster).await;
    let date = days_ahead(3);
    let ids = segment_ids(&mut raw, "GRU", "SSA", &date).await;
    let segment = ids[0].as_str();
    let before = result(&mut raw, 1, "segments.get", json!({"id": segment})).await;
    let capacity = before["seats_left"].as_u64().expect("seats_left");

    // Each read is written right after a change, in one write, and must
    // see every change written before it.
    let mut bytes = Vec::new();
    for round in 0..5u64 {
        let params = json!({"passenger": passenger("ORDER-1"), "segments": [segment], "seats": 1});
        bytes.extend_from_slice(&request(100 + round * 2, "bookings.create", params));
        bytes.push(b'\n');
        let read = json!({"id": segment});
        bytes.extend_from_slice(&request(101 + round * 2, "segments.get", read));
        bytes.push(b'\n');
    }
    raw.send_bytes(&bytes).await.expect("send");
    let mut reads = FxHashMap::default();
    for _ in 0..10 {
        let response = next_json(&mut raw).await;
        let id = response["id"].as_u64().expect("a numeric id");
        if id % 2 == 1 {
            reads.insert(id, response["result"]["seats_left"].clone());
        } else {
            assert_eq!(response["result"]["status"], "confirmed", "{response}");
        }
    }
    for round in 0..5u64 {
        assert_eq!(
            reads[&(101 + round * 2)],
            capacity - round - 1,
            "the read after booking {} saw another state",
            round + 1
        );
    }
}

#[tokio::test]
async fn batch_answers_requests_and_skips_notifications() {
    let cluster = start_cluster(2).await;
    let mut raw = connect(&cluster).await;
    let date = days_ahead(3);
    let ids = segment_ids(&mut raw, "GRU", "SSA", &date).await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "ping"},
        {"jsonrpc": "2.0", "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "segments.get", "params": {"id": ids[0]}},
        {"jsonrpc": "2.0", "id": 3, "method": "nope"},
        {"jsonrpc": "2.0", "method": "bookings.create", "params": {
            "passenger": passenger("BATCH-1"), "segments": [ids[0]], "request_id": "note-1"}},
        5,
        {"jsonrpc": "2.0", "id": 4, "method": "ping", "params": {"x": 1}},
    ]);
    raw.send_line(&serde_json::to_vec(&batch).unwrap())
        .await
        .expect("send");
    let response = next_json(&mut raw).await;
    let entries = response.as_array().expect("a batch gets a list");
    assert_eq!(
        entries.len(),
        5,
        "two notifications get no entry: {response}"
    );
    let by_id = |id: Value| {
        entries
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("no entry for {id} in {response}"))
    };
    assert_eq!(by_id(json!("a"))["result"]["pong"], true);
    assert_eq!(by_id(json!(2))["result"]["id"], ids[0].as_str());
    assert_eq!(by_id(json!(3))["error"]["code"], -32601);
    assert_eq!(by_id(json!(4))["error"]["code"], -32602);
    assert_eq!(
        by_id(Value::Null)["error"]["code"],
        -32600,
        "5 is not a request"
    );

    // A batch of only notifications gets nothing back, so the next line
    // read is the ping's.
    let only = json!([{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "ping"}]);
    raw.send_line(&serde_json::to_vec(&only).unwrap())
        .await
        .expect("send");
    let pong = call(&mut raw, 9, "ping", Value::Null).await;
    assert_eq!(pong["result"]["pong"], true);

    // The notification in the batch booked.
    let list = result(
        &mut raw,
        10,
        "bookings.list",
        json!({"document": "BATCH-1"}),
    )
    .await;
    assert_eq!(list["bookings"].as_array().map(Vec::len), Some(1), "{list}");
}

#[tokio::test]
async fn notification_is_executed_without_a_response() {
    let cluster = start_cluster(2).await;
    let mut raw = connect(&cluster).await;
    let date = days_ahead(3);
    let ids = segment_ids(&mut raw, "GRU", "SSA", &date).await;
    let notification = json!({
        "jsonrpc": "2.0",
        "method": "bookings.create",
        "params": {"passenger": passenger("NOTE-1"), "segments": [ids[0]]},
    });
    raw.send_line(&serde_json::to_vec(&notification).unwrap())
        .await
        .expect("send");
    let failing = json!({"jsonrpc": "2.0", "method": "nope"});
    raw.send_line(&serde_json::to_vec(&failing).unwrap())
        .await
        .expect("send");
    // Neither gets a response, so the next line read answers the ping.
    let pong = call(&mut raw, 1, "ping", Value::Null).await;
    assert_eq!(pong["result"]["pong"], true);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = result(&mut raw, 2, "bookings.list", json!({"document": "NOTE-1"})).await;
        if list["bookings"].as_array().map(Vec::len) == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the notification did not book: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn crlf_and_empty_lines_are_tolerated() {
    let cluster = start_cluster(1).await;
    let mut raw = connect(&cluster).await;
    let mut bytes = b"\n\r\n   \n".to_vec();
    bytes.extend_from_slice(&request(1, "ping", Value::Null));
    bytes.extend_from_slice(b"\r\n\n\n");
    bytes.extend_from_slice(&request(2, "ping", Value::Null));
    bytes.extend_from_slice(b"\r\n");
    raw.send_bytes(&bytes).await.expect("send");
    for id in [1, 2] {
        let response = next_json(&mut raw).await;
        assert_eq!(response["id"], id, "empty lines got a response: {response}");
        assert_eq!(response["result"]["pong"], true);
    }
}

#[tokio::test]
async fn null_id_is_answered_with_null_id() {
    let cluster = start_cluster(1).await;
    let mut raw = connect(&cluster).await;
    raw.send_line(&request(Value::Null, "ping", Value::Null))
        .await
        .expect("send");
    let response = next_json(&mut raw).await;
    assert_eq!(
        response,
        json!({"jsonrpc": "2.0", "id": null, "result": {"pong": true}})
    );
    raw.send_line(&request(Value::Null, "nope", Value::Null))
        .await
        .expect("send");
    let response = next_json(&mut raw).await;
    assert_eq!(response["id"], Value::Null, "{response}");
    assert_eq!(response["error"]["code"], -32601, "{response}");
    // Ids keep their JSON form: strings, negative and fractional numbers.
    for id in [json!("x-1"), json!(-5), json!(1.5), json!(0)] {
        raw.send_line(&request(id.clone(), "ping", Value::Null))
            .await
            .expect("send");
        let response = next_json(&mut raw).await;
        assert_eq!(response["id"], id, "{response}");
    }
}
