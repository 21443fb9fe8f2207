//! Errors a client can see, with their JSON-RPC codes and `data.kind`.
//!
//! One exhaustive `match` maps every variant to its code, so a new variant
//! does not compile until it has one.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Every error that reaches a client, as JSON-RPC 2.0 error objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Error {
    /// The line is not valid UTF-8 or not valid JSON.
    #[error("parse error: {message}")]
    Parse {
        /// What the parser found.
        message: String,
    },
    /// The value is not a valid JSON-RPC 2.0 request.
    #[error("invalid request: {message}")]
    InvalidRequest {
        /// What was wrong.
        message: String,
    },
    /// No method has that name.
    #[error("method not found: {method}; see docs/protocol.md for the list")]
    MethodNotFound {
        /// The name the client sent.
        method: String,
    },
    /// A parameter is missing, unknown or out of range.
    #[error("invalid params: {message}")]
    InvalidParams {
        /// Names the field and what was wrong.
        message: String,
    },
    /// A bug or an unexpected condition inside trecho.
    #[error("internal error: {message}")]
    Internal {
        /// What failed.
        message: String,
    },
    /// Not enough seats left on a segment.
    #[error("sold out: segment {segment} has {left} seats left, {requested} requested")]
    SoldOut {
        /// The first segment, in request order, that lacks seats.
        segment: String,
        /// Seats requested.
        requested: u32,
        /// Seats left.
        left: u32,
    },
    /// No segment has that id.
    #[error("unknown segment {segment}; find segment ids with segments.search")]
    UnknownSegment {
        /// The id the client sent.
        segment: String,
    },
    /// No booking has that locator with that document.
    #[error("unknown booking {booking}; check the locator and the passenger's document")]
    UnknownBooking {
        /// The locator the client sent.
        booking: String,
    },
    /// The hold ran out before it was confirmed; its seats are released.
    #[error("hold {booking} expired at {expired_at}; its seats were released, book again")]
    HoldExpired {
        /// The booking's locator.
        booking: String,
        /// When the hold ran out, RFC 3339.
        expired_at: String,
    },
    /// The shard that owns the data cannot be reached; nothing changed.
    #[error("shard {shard} is unavailable; nothing changed, retry after {retry_after_ms} ms")]
    ShardUnavailable {
        /// The shard's id.
        shard: u32,
        /// Suggested wait before a retry.
        retry_after_ms: u64,
    },
    /// The shard was lost mid-request; the change may or may not have happened.
    #[error("outcome unknown: shard {shard} was lost mid-request; send the same request again (a booking with the same request_id) to learn the outcome")]
    OutcomeUnknown {
        /// The shard's id.
        shard: u32,
    },
    /// Too much load; nothing changed.
    #[error("overloaded: {message}; nothing changed, retry later")]
    Overloaded {
        /// Which limit was reached.
        message: String,
    },
    /// The request id was used before with other parameters.
    #[error("request_id {request_id} was already used with different parameters; use a new request_id for a new booking")]
    RequestIdReused {
        /// The reused id.
        request_id: String,
    },
    /// The booking's status does not allow that change.
    #[error("booking {booking} is {status}; it cannot be {action}")]
    InvalidState {
        /// The booking's locator.
        booking: String,
        /// Its current status.
        status: String,
        /// The change requested, as a past participle ("confirmed").
        action: String,
    },
    /// The segment departs in less than 30 minutes or has departed.
    #[error("sales closed for segment {segment}: it departs at {departure}, and sales close 30 minutes before")]
    SalesClosed {
        /// The segment's id.
        segment: String,
        /// Its departure, RFC 3339.
        departure: String,
    },
    /// The slot moved to another shard while the request was on its way,
    /// twice in a row; nothing changed.
    #[error("slot {slot} changed shards while the request was on its way (last asked shard {shard}); nothing changed, retry")]
    MapChanged {
        /// The slot of the segment or booking.
        slot: u16,
        /// The shard that no longer owns it.
        shard: u32,
    },
    /// An admin method without the right admin token.
    #[error("{message}")]
    Unauthorized {
        /// Why, and where the token is configured.
        message: String,
    },
}

impl Error {
    /// Returns the JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            Error::Parse { .. } => -32700,
            Error::InvalidRequest { .. } => -32600,
            Error::MethodNotFound { .. } => -32601,
            Error::InvalidParams { .. } => -32602,
            Error::Internal { .. } => -32603,
            Error::SoldOut { .. } => 1001,
            Error::UnknownSegment { .. } => 1002,
            Error::UnknownBooking { .. } => 1003,
            Error::HoldExpired { .. } => 1004,
            Error::ShardUnavailable { .. } => 1005,
            Error::OutcomeUnknown { .. } => 1006,
            Error::Overloaded { .. } => 1007,
            Error::RequestIdReused { .. } => 1008,
            Error::InvalidState { .. } => 1009,
            Error::SalesClosed { .. } => 1010,
            Error::MapChanged { .. } => 1011,
            Error::Unauthorized { .. } => 1012,
        }
    }

    /// Returns `data.kind`, or `None` for the standard JSON-RPC errors.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Error::Parse { .. }
            | Error::InvalidRequest { .. }
            | Error::MethodNotFound { .. }
            | Error::InvalidParams { .. }
            | Error::Internal { .. } => None,
            Error::SoldOut { .. } => Some("sold_out"),
            Error::UnknownSegment { .. } => Some("unknown_segment"),
            Error::UnknownBooking { .. } => Some("unknown_booking"),
            Error::HoldExpired { .. } => Some("hold_expired"),
            Error::ShardUnavailable { .. } => Some("shard_unavailable"),
            Error::OutcomeUnknown { .. } => Some("outcome_unknown"),
            Error::Overloaded { .. } => Some("overloaded"),
            Error::RequestIdReused { .. } => Some("request_id_reused"),
            Error::InvalidState { .. } => Some("invalid_state"),
            Error::SalesClosed { .. } => Some("sales_closed"),
            Error::MapChanged { .. } => Some("map_changed"),
            Error::Unauthorized { .. } => Some("unauthorized"),
        }
    }

    /// Returns whether sending the same request again is safe and may
    /// succeed: nothing changed, and the cause may pass.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::ShardUnavailable { .. }
                | Error::OutcomeUnknown { .. }
                | Error::Overloaded { .. }
                | Error::MapChanged { .. }
        )
    }

    /// Builds the JSON-RPC `error` object: `{code, message, data?}`.
    pub fn to_json(&self) -> Value {
        let mut object = json!({ "code": self.code(), "message": self.to_string() });
        if self.kind().is_some() {
            // The tagged serde form is `{kind, ...fields}`: exactly `data`.
            let data = serde_json::to_value(self).unwrap_or(Value::Null);
            object["data"] = data;
        }
        object
    }

    /// Builds an [`Error::InvalidParams`] from anything printable.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Error::InvalidParams {
            message: message.into(),
        }
    }

    /// Builds an [`Error::Internal`] from anything printable.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sold_out_json_has_code_kind_and_segment() {
        let err = Error::SoldOut {
            segment: "AD1-2026-12-20".into(),
            requested: 2,
            left: 1,
        };
        let value = err.to_json();
        assert_eq!(value["code"], 1001);
        assert_eq!(value["data"]["kind"], "sold_out");
        assert_eq!(value["data"]["segment"], "AD1-2026-12-20");
        assert!(value["message"]
            .as_str()
            .unwrap()
            .contains("AD1-2026-12-20"));
    }

    #[test]
    fn standard_errors_have_no_data() {
        let value = Error::Parse {
            message: "x".into(),
        }
        .to_json();
        assert_eq!(value["code"], -32700);
        assert!(value.get("data").is_none());
    }

    #[test]
    fn error_round_trips_through_json() {
        let err = Error::ShardUnavailable {
            shard: 2,
            retry_after_ms: 500,
        };
        let text = serde_json::to_string(&err).unwrap();
        let back: Error = serde_json::from_str(&text).unwrap();
        assert_eq!(back, err);
    }
}
