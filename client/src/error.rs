//! Errors of calls to the router.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use trecho_common::Error;

/// A failed call: the router could not be reached, the connection broke,
/// or the router returned a JSON-RPC error.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection to the router could not be opened.
    #[error(
        "cannot connect to the trecho router at {addr}: {source}; start a local cluster \
         with `trecho cluster`, or give the router's address with --router or TRECHO_ROUTER"
    )]
    Connect {
        /// The address tried.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading from or writing to an open connection failed.
    #[error("connection to the router at {addr} failed: {source}")]
    Io {
        /// The router's address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection closed before the response arrived. A write may or
    /// may not have taken effect: a booking retried with the same
    /// `request_id` on a new connection returns the booking if it was made.
    #[error(
        "the connection to the router at {addr} was lost ({reason}) before the response \
         arrived; a booking may or may not have been made, so retry it with the same \
         request_id on a new connection"
    )]
    ConnectionLost {
        /// The router's address.
        addr: String,
        /// The cause of the close.
        reason: String,
    },
    /// No response arrived within the request timeout. As with
    /// [`ClientError::ConnectionLost`], a write may or may not have taken
    /// effect.
    #[error(
        "no response from the router at {addr} to {method} within {timeout:?}; a booking \
         may or may not have been made, so retry it with the same request_id"
    )]
    Timeout {
        /// The router's address.
        addr: String,
        /// The method called.
        method: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The router returned a JSON-RPC error (boxed, because it is large
    /// next to the other variants).
    #[error(transparent)]
    Rpc(Box<RpcError>),
    /// The router sent something that is not a valid response.
    #[error("invalid response from the router at {addr}: {message}")]
    Protocol {
        /// The router's address.
        addr: String,
        /// The problem found.
        message: String,
    },
}

impl ClientError {
    /// Returns the JSON-RPC error, if the router returned one.
    pub fn rpc(&self) -> Option<&RpcError> {
        match self {
            ClientError::Rpc(error) => Some(error.as_ref()),
            _ => None,
        }
    }

    /// Returns the typed trecho error, if the router returned one whose
    /// `data.kind` (or standard code) this version of the client reads.
    pub fn trecho_error(&self) -> Option<&Error> {
        self.rpc().and_then(|rpc| rpc.error.as_ref())
    }

    /// Returns `data.kind` of a JSON-RPC error, such as `sold_out`.
    pub fn kind(&self) -> Option<&str> {
        self.rpc().and_then(RpcError::kind)
    }
}

/// A JSON-RPC error object as the router sent it, with the typed error
/// when its kind is known.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The JSON-RPC error code, such as -32602 or 1001.
    pub code: i64,
    /// The human-readable message.
    pub message: String,
    /// The `data` member, if any: `{"kind": ..., ...fields}` for trecho's
    /// own errors.
    pub data: Option<Value>,
    /// The typed error: read from `data` for trecho's own errors, or built
    /// from the code and message for the standard JSON-RPC errors. `None`
    /// for a kind this version does not know.
    pub error: Option<Error>,
}

impl RpcError {
    /// Builds the error from the members of a JSON-RPC error object.
    pub fn new(code: i64, message: String, data: Option<Value>) -> Self {
        let error = typed_error(code, &message, data.as_ref());
        RpcError {
            code,
            message,
            data,
            error,
        }
    }

    /// Returns `data.kind`, such as `sold_out`, or `None` for the standard
    /// JSON-RPC errors.
    pub fn kind(&self) -> Option<&str> {
        self.data.as_ref()?.get("kind")?.as_str()
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RpcError {}

/// The `error` member of a response line.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorObject {
    code: i64,
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

impl From<ErrorObject> for RpcError {
    fn from(object: ErrorObject) -> Self {
        RpcError::new(object.code, object.message, object.data)
    }
}

/// Reads trecho's error from `data`, or rebuilds a standard JSON-RPC error
/// from its code. The router prefixes standard messages with their name
/// ("invalid params: ..."), which is stripped so that the typed error
/// prints the same text again.
fn typed_error(code: i64, message: &str, data: Option<&Value>) -> Option<Error> {
    if let Some(data) = data {
        return Error::deserialize(data).ok();
    }
    let detail = |prefix: &str| message.strip_prefix(prefix).unwrap_or(message).to_owned();
    match code {
        -32700 => Some(Error::Parse {
            message: detail("parse error: "),
        }),
        -32600 => Some(Error::InvalidRequest {
            message: detail("invalid request: "),
        }),
        -32601 => Some(Error::MethodNotFound {
            method: method_from_message(message),
        }),
        -32602 => Some(Error::invalid_params(detail("invalid params: "))),
        -32603 => Some(Error::internal(detail("internal error: "))),
        _ => None,
    }
}

/// Extracts the method name from "method not found: NAME; ...".
fn method_from_message(message: &str) -> String {
    let rest = message
        .strip_prefix("method not found: ")
        .unwrap_or(message);
    rest.split(';').next().unwrap_or(rest).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_kind_becomes_typed_error() {
        let original = Error::SoldOut {
            segment: "AD1-2026-12-20".into(),
            requested: 2,
            left: 1,
        };
        let object = original.to_json();
        let rpc = RpcError::new(
            object["code"].as_i64().unwrap(),
            object["message"].as_str().unwrap().to_owned(),
            Some(object["data"].clone()),
        );
        assert_eq!(rpc.kind(), Some("sold_out"));
        assert_eq!(rpc.error, Some(original));
    }

    #[test]
    fn unknown_kind_keeps_raw_error() {
        let data = json!({"kind": "seat_map_locked", "seat": "12C"});
        let rpc = RpcError::new(1999, "seat map locked".into(), Some(data.clone()));
        assert_eq!(rpc.kind(), Some("seat_map_locked"));
        assert_eq!(rpc.error, None);
        assert_eq!(rpc.data, Some(data));
        assert_eq!(rpc.to_string(), "seat map locked");
    }

    #[test]
    fn standard_errors_round_trip_their_text() {
        let originals = [
            Error::invalid_params("seats must be from 1 to 9, got 10"),
            Error::internal("the journal is full"),
            Error::Parse {
                message: "the line is not valid JSON".into(),
            },
            Error::InvalidRequest {
                message: "method must be a string".into(),
            },
            Error::MethodNotFound {
                method: "bookings.delete".into(),
            },
        ];
        for original in originals {
            let rpc = RpcError::new(original.code(), original.to_string(), None);
            assert_eq!(rpc.error.as_ref(), Some(&original));
        }
    }
}
