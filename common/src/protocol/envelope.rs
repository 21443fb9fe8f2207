//! The JSON-RPC 2.0 envelope: checking requests and writing responses.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::Error;

/// A request id exactly as the client wrote it (a JSON string, number or
/// `null`), echoed back byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Box<str>);

impl RequestId {
    /// The `null` id, used when the request's id cannot be read.
    pub fn null() -> Self {
        RequestId("null".into())
    }

    /// Returns the JSON text of the id.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// Builds an id from a number, as clients that count their requests do.
    pub fn number(value: u64) -> Self {
        RequestId(value.to_string().into_boxed_str())
    }
}

/// One request whose envelope is valid.
#[derive(Debug)]
pub struct RequestEnvelope<'a> {
    /// `None` for a notification, which gets no response.
    pub id: Option<RequestId>,
    /// The method name, borrowed from the line unless it had escapes.
    pub method: Cow<'a, str>,
    /// The params object, if any.
    pub params: Option<&'a RawValue>,
}

/// One parsed line: a single request or a batch, each entry checked.
#[derive(Debug)]
pub enum Message<'a> {
    /// A single request, or the error to send for it.
    Single(Result<RequestEnvelope<'a>, (RequestId, Error)>),
    /// A batch; each entry is a request or the error to send for it.
    Batch(Vec<Result<RequestEnvelope<'a>, (RequestId, Error)>>),
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    // `"id": null` must stay `Some`: a plain `Option` reads it as absent,
    // which would turn the request into a notification with no response.
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Parses one line into a message.
///
/// # Errors
///
/// Returns [`Error::Parse`] for invalid UTF-8 or JSON, and
/// [`Error::InvalidRequest`] for an empty batch; both are answered with id
/// `null`.
pub fn parse_message(line: &[u8]) -> Result<Message<'_>, Error> {
    let text = std::str::from_utf8(line).map_err(|e| Error::Parse {
        message: format!("the line is not valid UTF-8 ({e})"),
    })?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(parse_error)?;
        if items.is_empty() {
            return Err(Error::InvalidRequest {
                message: "an empty batch is not a request".into(),
            });
        }
        return Ok(Message::Batch(
            items.into_iter().map(check_request).collect(),
        ));
    }
    let raw: &RawValue = serde_json::from_str(text).map_err(parse_error)?;
    Ok(Message::Single(check_request(raw)))
}

fn parse_error(error: serde_json::Error) -> Error {
    Error::Parse {
        message: format!("the line is not valid JSON ({error})"),
    }
}

fn check_request(raw: &RawValue) -> Result<RequestEnvelope<'_>, (RequestId, Error)> {
    let invalid = |id: RequestId, message: &str| {
        Err((
            id,
            Error::InvalidRequest {
                message: message.into(),
            },
        ))
    };
    if !raw.get().starts_with('{') {
        return invalid(RequestId::null(), "a request must be a JSON object");
    }
    let Ok(envelope) = serde_json::from_str::<RawEnvelope<'_>>(raw.get()) else {
        return invalid(RequestId::null(), "the request object repeats a member");
    };
    let id = match envelope.id.map(read_id) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => return invalid(RequestId::null(), "id must be a string, a number or null"),
    };
    let reply_id = id.clone().unwrap_or_else(RequestId::null);
    if envelope.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
        return invalid(reply_id, "jsonrpc must be \"2.0\"");
    }
    let Some(method) = envelope.method.and_then(read_string) else {
        return invalid(reply_id, "method must be a string");
    };
    match envelope.params.map(|p| p.get().as_bytes()[0]) {
        None | Some(b'{') => {}
        Some(b'[') => {
            let error = Error::invalid_params("params must be an object, not an array");
            return Err((reply_id, error));
        }
        Some(_) => return invalid(reply_id, "params must be an object"),
    }
    Ok(RequestEnvelope {
        id,
        method,
        params: envelope.params,
    })
}

/// Reads a member that is present, `null` included, as `Some`.
fn present<'de, D>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(deserializer).map(Some)
}

fn read_id(raw: &RawValue) -> Option<RequestId> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'"' | b'-' | b'0'..=b'9' => Some(RequestId(text.into())),
        b'n' => Some(RequestId::null()),
        _ => None,
    }
}

/// Returns the contents of a JSON string, borrowed when it has no escapes.
fn read_string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// Appends a success response line for `id` to `out`.
pub fn write_result<T: serde::Serialize>(out: &mut Vec<u8>, id: &RequestId, result: &T) {
    let start = out.len();
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.as_json().as_bytes());
    out.extend_from_slice(b",\"result\":");
    if serde_json::to_writer(&mut *out, result).is_err() {
        out.truncate(start);
        let error = Error::internal("the result could not be encoded");
        write_error(out, id, &error);
        return;
    }
    out.extend_from_slice(b"}");
}

/// Appends an error response line for `id` to `out`.
pub fn write_error(out: &mut Vec<u8>, id: &RequestId, error: &Error) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.as_json().as_bytes());
    out.extend_from_slice(b",\"error\":");
    // Serializing a `Value` built from plain strings and numbers cannot fail.
    let _ = serde_json::to_writer(&mut *out, &error.to_json());
    out.extend_from_slice(b"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(line: &str) -> Result<RequestEnvelope<'_>, (RequestId, Error)> {
        match parse_message(line.as_bytes()).unwrap() {
            Message::Single(result) => result,
            Message::Batch(_) => panic!("expected a single request"),
        }
    }

    #[test]
    fn valid_request_keeps_id_text() {
        let req = single(r#"{"jsonrpc":"2.0","id":"a-1","method":"ping","params":{}}"#).unwrap();
        assert_eq!(req.id.unwrap().as_json(), "\"a-1\"");
        assert_eq!(req.method, "ping");
        let req = single(r#"{"jsonrpc":"2.0","method":"ping"}"#).unwrap();
        assert!(req.id.is_none());
        let req = single(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).unwrap();
        assert_eq!(req.id.unwrap().as_json(), "null");
    }

    #[test]
    fn invalid_envelopes_carry_readable_id() {
        let (id, err) = single(r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#).unwrap_err();
        assert_eq!(id.as_json(), "7");
        assert_eq!(err.code(), -32600);
        let (id, err) = single(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#).unwrap_err();
        assert_eq!(id.as_json(), "null");
        assert_eq!(err.code(), -32600);
        let (_, err) = single(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#).unwrap_err();
        assert_eq!(err.code(), -32602);
        let req = single(r#"{"jsonrpc":"2.0","id":1,"method":"pin\u0067"}"#).unwrap();
        assert_eq!(req.method, "ping", "escapes in the method name are decoded");
        let (_, err) = single(r#"{"jsonrpc":"2.0","id":1,"method":5}"#).unwrap_err();
        assert_eq!(err.code(), -32600);
        let (_, err) = single("42").unwrap_err();
        assert_eq!(err.code(), -32600);
    }

    #[test]
    fn parse_errors_and_empty_batch() {
        assert_eq!(parse_message(b"{").unwrap_err().code(), -32700);
        assert_eq!(parse_message(b"\xff").unwrap_err().code(), -32700);
        assert_eq!(parse_message(b"[]").unwrap_err().code(), -32600);
        match parse_message(br#"[1, {"jsonrpc":"2.0","method":"ping"}]"#).unwrap() {
            Message::Batch(items) => {
                assert!(items[0].is_err());
                assert!(items[1].is_ok());
            }
            Message::Single(_) => panic!("expected a batch"),
        }
    }

    #[test]
    fn responses_are_single_json_lines() {
        let mut out = Vec::new();
        write_result(
            &mut out,
            &RequestId::number(3),
            &serde_json::json!({"pong": true}),
        );
        assert_eq!(out, br#"{"jsonrpc":"2.0","id":3,"result":{"pong":true}}"#);
        out.clear();
        write_error(&mut out, &RequestId::null(), &Error::internal("x"));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["error"]["code"], -32603);
    }
}
