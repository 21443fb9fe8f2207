//! One connection that sends bytes as given and reads response lines, for
//! protocol tests.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::client::open;
use crate::error::ClientError;

/// A connection to the router with no request ids or parsing of its own:
/// the caller writes whatever bytes it wants and reads the lines that come
/// back.
///
/// Reads are cancellation safe: a [`RawConnection::read_line`] dropped by a
/// timeout keeps the bytes it had read for the next call.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), trecho_client::ClientError> {
/// use trecho_client::RawConnection;
///
/// let mut raw = RawConnection::connect("127.0.0.1:7878").await?;
/// raw.send_line(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).await?;
/// let response = raw.read_json().await?.expect("a response");
/// assert_eq!(response["result"]["pong"], true);
/// # Ok(())
/// # }
/// ```
pub struct RawConnection {
    addr: String,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Bytes of the line being read, kept across cancelled reads.
    partial: Vec<u8>,
}

impl RawConnection {
    /// Connects to `addr`, allowing five seconds.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Connect`] when the connection cannot be
    /// opened.
    pub async fn connect(addr: &str) -> Result<RawConnection, ClientError> {
        let stream = open(addr, Duration::from_secs(5)).await?;
        let (read_half, writer) = stream.into_split();
        Ok(RawConnection {
            addr: addr.to_owned(),
            reader: BufReader::new(read_half),
            writer,
            partial: Vec::new(),
        })
    }

    /// Writes `line` followed by a newline.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Io`] when the write fails.
    pub async fn send_line(&mut self, line: &[u8]) -> Result<(), ClientError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
        self.send_bytes(&bytes).await
    }

    /// Writes `bytes` exactly as given, with no newline added.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Io`] when the write fails.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let written = self.writer.write_all(bytes).await;
        written.map_err(|source| self.io(source))
    }

    /// Closes the writing side, so the router reads end of stream while
    /// responses can still be read.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Io`] when the shutdown fails.
    pub async fn shutdown_write(&mut self) -> Result<(), ClientError> {
        let result = self.writer.shutdown().await;
        result.map_err(|source| self.io(source))
    }

    /// Reads the next line without its `\n` (or `\r\n`). Returns `None` at
    /// end of stream; a last line without a newline is returned as is.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Io`] when the read fails.
    pub async fn read_line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        // `read_until` appends to `partial` as bytes arrive, so a read
        // cancelled half-way loses nothing.
        let read = self.reader.read_until(b'\n', &mut self.partial).await;
        read.map_err(|source| self.io(source))?;
        if self.partial.is_empty() {
            return Ok(None);
        }
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        Ok(Some(line))
    }

    /// Reads the next line and parses it as JSON. Returns `None` at end of
    /// stream.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Io`] when the read fails and
    /// [`ClientError::Protocol`] when the line is not JSON.
    pub async fn read_json(&mut self) -> Result<Option<Value>, ClientError> {
        let Some(line) = self.read_line().await? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&line).map_err(|error| ClientError::Protocol {
            addr: self.addr.clone(),
            message: format!(
                "the line {:?} is not JSON: {error}",
                String::from_utf8_lossy(&line)
            ),
        })?;
        Ok(Some(value))
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            source,
        }
    }
}
