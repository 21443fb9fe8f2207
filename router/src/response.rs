//! Results of client requests and how their response lines are written.

use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use trecho_common::error::Error;
use trecho_common::protocol::envelope::{write_error, write_result};
use trecho_common::protocol::methods::{
    AddShardResult, BookingsResult, ClusterStatus, MoveSlotsResult, Pong, RoutesResult,
    SearchResult,
};
use trecho_common::protocol::RequestId;
use trecho_common::types::{Booking, Segment};

/// The `result` of any method.
#[derive(Debug)]
pub(crate) enum Reply {
    /// `ping`
    Pong,
    /// A result encoded ahead of time (`airports.list`).
    Encoded(Arc<RawValue>),
    /// `segments.search`
    Search(SearchResult),
    /// `segments.get`
    Segment(Segment),
    /// `routes.find`
    Routes(RoutesResult),
    /// `bookings.create`, `hold`, `confirm`, `cancel` and `get`
    Booking(Booking),
    /// `bookings.list`
    Bookings(BookingsResult),
    /// `cluster.status`
    Status(ClusterStatus),
    /// `admin.move_slots`
    MoveSlots(MoveSlotsResult),
    /// `admin.add_shard`
    AddShard(AddShardResult),
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Reply::Pong => Pong { pong: true }.serialize(serializer),
            Reply::Encoded(raw) => RawValue::serialize(raw, serializer),
            Reply::Search(result) => result.serialize(serializer),
            Reply::Segment(segment) => segment.serialize(serializer),
            Reply::Routes(result) => result.serialize(serializer),
            Reply::Booking(booking) => booking.serialize(serializer),
            Reply::Bookings(result) => result.serialize(serializer),
            Reply::Status(status) => status.serialize(serializer),
            Reply::MoveSlots(result) => result.serialize(serializer),
            Reply::AddShard(result) => result.serialize(serializer),
        }
    }
}

/// What a request produced.
pub(crate) type Outcome = Result<Reply, Error>;

/// A finished unit of a connection's work.
pub(crate) enum Finished {
    /// One request; `id` is `None` for a notification.
    Single {
        id: Option<RequestId>,
        outcome: Outcome,
    },
    /// A batch, in request order, and how many of its requests were in
    /// flight.
    Batch {
        entries: Vec<(Option<RequestId>, Outcome)>,
        in_flight: usize,
    },
}

/// Appends the response object for `id` to `out`, without a newline.
fn write_object(out: &mut Vec<u8>, id: &RequestId, outcome: &Outcome) {
    match outcome {
        Ok(reply) => write_result(out, id, reply),
        Err(error) => write_error(out, id, error),
    }
}

/// Appends one response line for `id` to `out`.
pub(crate) fn write_line(out: &mut Vec<u8>, id: &RequestId, outcome: &Outcome) {
    write_object(out, id, outcome);
    out.push(b'\n');
}

/// Appends a batch's response line to `out`: an array of the responses of
/// the entries that have an id, in request order. A batch of notifications
/// writes nothing at all.
pub(crate) fn write_batch(out: &mut Vec<u8>, entries: &[(Option<RequestId>, Outcome)]) {
    let mut first = true;
    for (id, outcome) in entries {
        let Some(id) = id else { continue };
        out.push(if first { b'[' } else { b',' });
        first = false;
        write_object(out, id, outcome);
    }
    if !first {
        out.extend_from_slice(b"]\n");
    }
}

/// Appends what `finished` produced to `out`; returns how many requests it
/// held in flight.
pub(crate) fn write_finished(out: &mut Vec<u8>, finished: &Finished) -> usize {
    match finished {
        Finished::Single { id, outcome } => {
            if let Some(id) = id {
                write_line(out, id, outcome);
            }
            1
        }
        Finished::Batch { entries, in_flight } => {
            write_batch(out, entries);
            *in_flight
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn parse_line(out: &[u8]) -> Value {
        assert_eq!(out.last(), Some(&b'\n'), "a response ends with a newline");
        serde_json::from_slice(out).unwrap()
    }

    #[test]
    fn single_response_is_one_line() {
        let mut out = Vec::new();
        write_line(&mut out, &RequestId::number(4), &Ok(Reply::Pong));
        assert_eq!(
            out,
            b"{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"pong\":true}}\n"
        );
    }

    #[test]
    fn batch_skips_notifications_and_keeps_order() {
        let entries = vec![
            (Some(RequestId::number(1)), Ok(Reply::Pong)),
            (None, Ok(Reply::Pong)),
            (
                Some(RequestId::number(3)),
                Err(Error::invalid_params("seats must be from 1 to 9, got 0")),
            ),
        ];
        let mut out = Vec::new();
        write_batch(&mut out, &entries);
        let value = parse_line(&out);
        let items = value.as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["id"], 1);
        assert_eq!(items[0]["result"]["pong"], true);
        assert_eq!(items[1]["id"], 3);
        assert_eq!(items[1]["error"]["code"], -32602);
    }

    #[test]
    fn batch_of_notifications_writes_nothing() {
        let entries = vec![(None, Ok(Reply::Pong)), (None, Err(Error::internal("x")))];
        let mut out = Vec::new();
        write_batch(&mut out, &entries);
        assert!(out.is_empty());
        let finished = Finished::Batch {
            entries,
            in_flight: 2,
        };
        assert_eq!(write_finished(&mut out, &finished), 2);
        assert!(out.is_empty());
    }

    #[test]
    fn notification_writes_nothing_but_frees_its_slot() {
        let mut out = Vec::new();
        let finished = Finished::Single {
            id: None,
            outcome: Ok(Reply::Pong),
        };
        assert_eq!(write_finished(&mut out, &finished), 1);
        assert!(out.is_empty());
    }

    #[test]
    fn encoded_reply_is_written_verbatim() {
        let raw: Arc<RawValue> =
            Arc::from(RawValue::from_string(r#"{"airports":[]}"#.into()).unwrap());
        let mut out = Vec::new();
        write_line(&mut out, &RequestId::null(), &Ok(Reply::Encoded(raw)));
        let value = parse_line(&out);
        assert_eq!(value["result"]["airports"], Value::Array(Vec::new()));
        assert_eq!(value["id"], Value::Null);
    }
}
