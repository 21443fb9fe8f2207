//! The Redis baseline: a Lua script checks and takes the seats of one
//! segment and records the booking in a hash, in one atomic step.
//!
//! Requests travel as hand-written RESP over one pipelined connection: a
//! writer task sends commands in order and a reader task hands each reply
//! to the oldest waiting caller, because Redis replies in request order.

use std::collections::VecDeque;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::workload::Catalog;

/// Checks the seats left, takes them, and records the booking. KEYS[1] is
/// the segment's hash, and ARGV contains seats, passenger name and document.
/// Returns the new booking number, or the error `SOLD_OUT` or
/// `UNKNOWN_SEGMENT`.
const BOOK_SCRIPT: &str = r#"
local counts = redis.call('HMGET', KEYS[1], 'capacity', 'taken')
if not counts[1] then return redis.error_reply('UNKNOWN_SEGMENT') end
local seats = tonumber(ARGV[1])
if tonumber(counts[2]) + seats > tonumber(counts[1]) then
  return redis.error_reply('SOLD_OUT')
end
redis.call('HINCRBY', KEYS[1], 'taken', seats)
local id = redis.call('INCR', 'booking:next')
redis.call('HSET', 'booking:' .. id, 'segment', KEYS[1], 'seats', seats,
  'name', ARGV[2], 'document', ARGV[3])
return id
"#;

/// Commands sent in one batch while loading segments.
const LOAD_BATCH: usize = 1000;

/// A RESP reply; arrays are not used by the bench's commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

type Waiter = oneshot::Sender<Result<Reply, String>>;

/// A pipelined connection to Redis, shared by the tasks of one bench
/// connection.
#[derive(Clone)]
pub(crate) struct RedisConnection {
    commands: mpsc::Sender<(Vec<u8>, Waiter)>,
}

impl RedisConnection {
    /// Connects to the Redis server at `address`.
    pub(crate) async fn connect(address: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address).await.with_context(|| {
            format!("cannot connect to Redis at {address}; is redis-server running?")
        })?;
        stream.set_nodelay(true)?;
        let (read_half, write_half) = stream.into_split();
        let (commands, queue) = mpsc::channel(4096);
        let (waiters, waiting) = mpsc::unbounded_channel();
        tokio::spawn(write_commands(write_half, queue, waiters));
        tokio::spawn(read_replies(read_half, waiting));
        Ok(RedisConnection { commands })
    }

    /// Sends one command and waits for its reply.
    pub(crate) async fn command(&self, parts: &[&[u8]]) -> Result<Reply, String> {
        let (waiter, reply) = oneshot::channel();
        self.commands
            .send((encode(parts), waiter))
            .await
            .map_err(|_| "connection_lost".to_owned())?;
        reply.await.map_err(|_| "connection_lost".to_owned())?
    }

    /// Runs the booking script on `segment` and returns the booking number,
    /// or the error kind.
    pub(crate) async fn book(
        &self,
        sha: &str,
        segment: &str,
        seats: u32,
        document: &str,
    ) -> Result<i64, String> {
        let seats = seats.to_string();
        let key = segment_key(segment);
        let parts: [&[u8]; 7] = [
            b"EVALSHA",
            sha.as_bytes(),
            b"1",
            key.as_bytes(),
            seats.as_bytes(),
            b"Bench Passenger",
            document.as_bytes(),
        ];
        match self.command(&parts).await? {
            Reply::Integer(id) => Ok(id),
            Reply::Error(message) if message.starts_with("SOLD_OUT") => Err("sold_out".to_owned()),
            Reply::Error(message) if message.starts_with("UNKNOWN_SEGMENT") => {
                Err("unknown_segment".to_owned())
            }
            Reply::Error(_) => Err("redis_error".to_owned()),
            _ => Err("protocol".to_owned()),
        }
    }
}

fn segment_key(segment: &str) -> String {
    format!("segment:{segment}")
}

/// Empties the database, loads `bookable` with their full capacity, and
/// loads the script. Returns the script's SHA1.
pub(crate) async fn prepare(
    connection: &RedisConnection,
    catalog: &Catalog,
    bookable: &[usize],
) -> anyhow::Result<String> {
    expect_ok(connection.command(&[b"FLUSHDB"]).await, "FLUSHDB")?;
    for chunk in bookable.chunks(LOAD_BATCH) {
        let writes = chunk.iter().map(|&index| {
            let segment = &catalog.segments[index];
            let key = segment_key(&segment.id);
            let capacity = segment.capacity.to_string();
            let connection = connection.clone();
            async move {
                let parts: [&[u8]; 6] = [
                    b"HSET",
                    key.as_bytes(),
                    b"capacity",
                    capacity.as_bytes(),
                    b"taken",
                    b"0",
                ];
                connection.command(&parts).await
            }
        });
        for reply in futures::future::join_all(writes).await {
            match reply {
                Ok(Reply::Integer(_)) => {}
                other => anyhow::bail!("loading segments into Redis failed: {other:?}"),
            }
        }
    }
    let reply = connection
        .command(&[b"SCRIPT", b"LOAD", BOOK_SCRIPT.as_bytes()])
        .await;
    match reply {
        Ok(Reply::Bulk(Some(sha))) => Ok(String::from_utf8_lossy(&sha).into_owned()),
        other => anyhow::bail!("loading the booking script into Redis failed: {other:?}"),
    }
}

/// Returns the seats taken over `bookable` and the number of booking
/// records.
pub(crate) async fn totals(
    connection: &RedisConnection,
    catalog: &Catalog,
    bookable: &[usize],
) -> anyhow::Result<(u64, u64)> {
    let mut taken = 0u64;
    for chunk in bookable.chunks(LOAD_BATCH) {
        let reads = chunk.iter().map(|&index| {
            let key = segment_key(&catalog.segments[index].id);
            let connection = connection.clone();
            async move {
                let parts: [&[u8]; 3] = [b"HGET", key.as_bytes(), b"taken"];
                connection.command(&parts).await
            }
        });
        for reply in futures::future::join_all(reads).await {
            taken += bulk_number(reply).context("reading a segment's seats taken")?;
        }
    }
    let bookings = connection.command(&[b"GET", b"booking:next"]).await;
    let bookings = match bookings {
        Ok(Reply::Bulk(None)) => 0,
        other => bulk_number(other).context("reading the booking count")?,
    };
    Ok((taken, bookings))
}

fn bulk_number(reply: Result<Reply, String>) -> anyhow::Result<u64> {
    match reply {
        Ok(Reply::Bulk(Some(bytes))) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .context("expected a number"),
        other => anyhow::bail!("unexpected reply {other:?}"),
    }
}

fn expect_ok(reply: Result<Reply, String>, command: &str) -> anyhow::Result<()> {
    match reply {
        Ok(Reply::Simple(_)) => Ok(()),
        other => anyhow::bail!("{command} failed: {other:?}"),
    }
}

/// Encodes a command as a RESP array of bulk strings.
fn encode(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + parts.iter().map(|p| p.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Writes commands in order, batching those that wait, and queues each
/// waiter for the reader before its command leaves.
async fn write_commands(
    mut stream: OwnedWriteHalf,
    mut queue: mpsc::Receiver<(Vec<u8>, Waiter)>,
    waiters: mpsc::UnboundedSender<Waiter>,
) {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Some((command, waiter)) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&command);
        let _ = waiters.send(waiter);
        while batch.len() < 256 * 1024 {
            let Ok((command, waiter)) = queue.try_recv() else {
                break;
            };
            batch.extend_from_slice(&command);
            let _ = waiters.send(waiter);
        }
        if stream.write_all(&batch).await.is_err() {
            return;
        }
    }
}

/// Reads replies and hands each to the oldest waiter. Dropping the
/// waiters when the connection ends fails their calls.
async fn read_replies(stream: OwnedReadHalf, mut waiting: mpsc::UnboundedReceiver<Waiter>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut pending: VecDeque<Waiter> = VecDeque::new();
    loop {
        let reply = match read_reply(&mut reader).await {
            Ok(reply) => reply,
            Err(error) => {
                tracing::debug!(%error, "Redis connection closed");
                return;
            }
        };
        while let Ok(waiter) = waiting.try_recv() {
            pending.push_back(waiter);
        }
        let waiter = match pending.pop_front() {
            Some(waiter) => waiter,
            None => match waiting.recv().await {
                Some(waiter) => waiter,
                None => return,
            },
        };
        let _ = waiter.send(Ok(reply));
    }
}

/// Reads one RESP reply of a type other than an array.
async fn read_reply<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let body = line
        .strip_suffix("\r\n")
        .ok_or_else(|| invalid("a RESP line did not end with CRLF"))?;
    let (kind, rest) = body.split_at(body.len().min(1));
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => rest
            .parse()
            .map(Reply::Integer)
            .map_err(|_| invalid("invalid RESP integer")),
        "$" => {
            let length: i64 = rest
                .parse()
                .map_err(|_| invalid("invalid RESP bulk length"))?;
            let Ok(length) = usize::try_from(length) else {
                return Ok(Reply::Bulk(None));
            };
            let mut bytes = vec![0; length + 2];
            reader.read_exact(&mut bytes).await?;
            bytes.truncate(length);
            Ok(Reply::Bulk(Some(bytes)))
        }
        _ => Err(invalid("unsupported RESP reply type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_writes_bulk_array() {
        let bytes = encode(&[b"GET", b"booking:next"]);
        assert_eq!(bytes, b"*2\r\n$3\r\nGET\r\n$12\r\nbooking:next\r\n");
    }

    #[tokio::test]
    async fn read_reply_parses_each_type() {
        let input: &[u8] = b"+OK\r\n-SOLD_OUT\r\n:42\r\n$3\r\nabc\r\n$-1\r\n";
        let mut reader = BufReader::new(input);
        assert_eq!(
            read_reply(&mut reader).await.unwrap(),
            Reply::Simple("OK".into())
        );
        assert_eq!(
            read_reply(&mut reader).await.unwrap(),
            Reply::Error("SOLD_OUT".into())
        );
        assert_eq!(read_reply(&mut reader).await.unwrap(), Reply::Integer(42));
        assert_eq!(
            read_reply(&mut reader).await.unwrap(),
            Reply::Bulk(Some(b"abc".to_vec()))
        );
        assert_eq!(read_reply(&mut reader).await.unwrap(), Reply::Bulk(None));
        assert!(read_reply(&mut reader).await.is_err());
    }
}
