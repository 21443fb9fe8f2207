//! The client protocol: JSON-RPC 2.0 over newline-delimited JSON.
//!
//! [`framing`] splits a byte stream into lines, [`envelope`] checks the
//! JSON-RPC envelope and writes responses, and [`methods`] turns a method
//! name and its params into a validated [`methods::Call`].

pub mod envelope;
pub mod framing;
pub mod methods;

pub use envelope::{parse_message, Message, RequestEnvelope, RequestId};
pub use framing::{Frame, LineReader};
pub use methods::Call;

/// Default TCP address of the router.
pub const DEFAULT_ROUTER_ADDR: &str = "127.0.0.1:7878";
/// Default maximum length of one line, in bytes, before the newline.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
