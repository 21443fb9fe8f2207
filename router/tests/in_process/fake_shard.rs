//! A tiny in-memory shard that answers the internal protocol, enough to
//! test the router's framing, forwarding, two-phase commit and its side of
//! slot moves. It keeps seats per segment, books without a journal, and
//! records every operation it receives in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use trecho_common::error::Error;
use trecho_common::hashing::slot;
use trecho_common::internal::{
    InternalRequest, InternalResponse, InternalResult, ShardError, ShardOp, ShardReply,
    ShardStatus, TxnId,
};
use trecho_common::protocol::methods::BookRequest;
use trecho_common::shardmap::ShardMap;
use trecho_common::time::{format_rfc3339, now_unix};
use trecho_common::types::{Booking, BookingStatus, Locator, Segment};

/// What the fake shard holds.
#[derive(Default)]
pub struct State {
    pub segments: HashMap<String, Segment>,
    pub bookings: Vec<Booking>,
    /// Every operation received, in arrival order.
    pub received: Vec<ShardOp>,
    /// Home-side pending bookings of prepared transactions.
    pending: HashMap<TxnId, BookRequest>,
    /// Answer every prepare that carries a booking with this booking, as a
    /// shard does for a request id that already produced one.
    pub existing: Option<Booking>,
    /// The slot ranges the router's map gives this shard, for `status`.
    pub slots: Vec<[u16; 2]>,
    /// The reply to `cluster_map`. Without one the shard rejects it.
    pub map: Option<ShardMap>,
    /// While set, requests about segments and bookings are rejected with
    /// `slot_moving`, as during a move's pause.
    pub moving: Option<Moving>,
    /// The reply to `move_slots`: rows and pause in milliseconds.
    pub moved: Option<(u64, u64)>,
}

/// A pause of the shard's slots.
#[derive(Debug, Clone, Copy)]
pub struct Moving {
    /// Rejections left before the shard serves again, or `None` for no
    /// end.
    pub refusals_left: Option<u32>,
    /// Retry delay in milliseconds that the rejections suggest.
    pub retry_after_ms: u64,
}

/// A running fake shard.
#[derive(Clone)]
pub struct FakeShard {
    pub id: u32,
    pub address: String,
    pub state: Arc<Mutex<State>>,
    /// While set, requests are read and recorded but never answered.
    pub silent: Arc<AtomicBool>,
    /// While set, prepares are recorded but never answered.
    pub ignore_prepares: Arc<AtomicBool>,
    next_locator: Arc<AtomicU64>,
}

impl FakeShard {
    /// Starts a fake shard on a free loopback port.
    pub async fn start(id: u32) -> FakeShard {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shard = FakeShard {
            id,
            address: listener.local_addr().unwrap().to_string(),
            state: Arc::default(),
            silent: Arc::default(),
            ignore_prepares: Arc::default(),
            next_locator: Arc::new(AtomicU64::new(1)),
        };
        let server = shard.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().serve(stream));
            }
        });
        shard
    }

    /// Adds a segment with `seats_left` seats.
    pub fn add_segment(&self, id: &str, seats_left: u32) {
        let segment = Segment {
            id: id.into(),
            flight: id[..id.len() - 11].into(),
            origin: "GRU".into(),
            destination: "SSA".into(),
            departure: "2030-01-01T10:00:00-03:00".into(),
            arrival: "2030-01-01T12:30:00-03:00".into(),
            capacity: 100,
            seats_left,
        };
        self.state
            .lock()
            .unwrap()
            .segments
            .insert(id.into(), segment);
    }

    pub fn seats_left(&self, id: &str) -> u32 {
        self.state.lock().unwrap().segments[id].seats_left
    }

    /// Returns the operations received so far, except pings.
    pub fn received(&self) -> Vec<ShardOp> {
        let state = self.state.lock().unwrap();
        let ops = state.received.iter().filter(|op| **op != ShardOp::Ping);
        ops.cloned().collect()
    }

    async fn serve(self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let request: InternalRequest = serde_json::from_str(&line).unwrap();
            let is_prepare = matches!(request.op, ShardOp::Prepare { .. });
            let result = self.apply(request.op);
            if self.silent.load(Ordering::SeqCst)
                || (is_prepare && self.ignore_prepares.load(Ordering::SeqCst))
            {
                continue;
            }
            let response = InternalResponse {
                id: request.id,
                result,
            };
            let mut out = serde_json::to_vec(&response).unwrap();
            out.push(b'\n');
            if write.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    /// Returns the `slot_moving` rejection of `op` while the shard pauses,
    /// and counts it.
    fn refuse_while_moving(&self, state: &mut State, op: &ShardOp) -> Option<ShardError> {
        let pausable = !matches!(
            op,
            ShardOp::Ping | ShardOp::Status | ShardOp::ClusterMap | ShardOp::MoveSlots { .. }
        );
        let moving = state.moving.as_mut().filter(|_| pausable)?;
        match &mut moving.refusals_left {
            Some(0) => return None,
            Some(left) => *left -= 1,
            None => {}
        }
        Some(ShardError::SlotMoving {
            slot: 0,
            shard: self.id,
            retry_after_ms: moving.retry_after_ms,
        })
    }

    fn apply(&self, op: ShardOp) -> InternalResult {
        let mut state = self.state.lock().unwrap();
        state.received.push(op.clone());
        if let Some(refusal) = self.refuse_while_moving(&mut state, &op) {
            return InternalResult::Err(refusal);
        }
        let answer = match op {
            ShardOp::Ping => Ok(ShardReply::Pong),
            ShardOp::ClusterMap => match &state.map {
                Some(map) => Ok(ShardReply::ClusterMap { map: map.clone() }),
                None => Err(Error::internal("the fake shard holds no shard map")),
            },
            ShardOp::Status => Ok(ShardReply::Status(ShardStatus {
                shard_id: self.id,
                map_version: 1,
                slots: state.slots.clone(),
                segments: state.segments.len() as u64,
                bookings: state.bookings.len() as u64,
                moving: None,
            })),
            ShardOp::Search { origin, limit, .. } => {
                let mut segments: Vec<Segment> = state
                    .segments
                    .values()
                    .filter(|s| origin.as_ref().is_none_or(|o| *o == s.origin))
                    .cloned()
                    .collect();
                segments.sort_by(|a, b| a.id.cmp(&b.id));
                segments.truncate(limit as usize);
                Ok(ShardReply::Segments { segments })
            }
            ShardOp::GetSegment { id } => match state.segments.get(&id) {
                Some(segment) => Ok(ShardReply::Segment {
                    segment: segment.clone(),
                }),
                None => Err(Error::UnknownSegment { segment: id }),
            },
            ShardOp::Seats { ids } => Ok(ShardReply::Seats {
                seats: ids
                    .iter()
                    .map(|id| state.segments.get(id).map(|s| s.seats_left))
                    .collect(),
            }),
            ShardOp::Book { request } => self
                .take_seats(&mut state, &request.segments, request.seats)
                .map(|()| ShardReply::Booking {
                    booking: self.create_booking(&mut state, request),
                }),
            ShardOp::Prepare {
                txn,
                segments,
                seats,
                booking,
                ..
            } => match (&state.existing, booking) {
                (Some(existing), Some(_)) => Ok(ShardReply::Booking {
                    booking: existing.clone(),
                }),
                (_, booking) => self.take_seats(&mut state, &segments, seats).map(|()| {
                    if let Some(request) = booking {
                        state.pending.insert(txn, request);
                    }
                    ShardReply::Prepared
                }),
            },
            ShardOp::Decide { txn, commit, .. } => match state.pending.remove(&txn) {
                Some(request) if commit => Ok(ShardReply::Booking {
                    booking: self.create_booking(&mut state, request),
                }),
                _ if commit => Err(Error::internal("decide commit for an unknown transaction")),
                _ => Ok(ShardReply::Ack),
            },
            ShardOp::ListBookings { document } => Ok(ShardReply::Bookings {
                bookings: state
                    .bookings
                    .iter()
                    .filter(|b| b.passenger.document == document)
                    .cloned()
                    .collect(),
            }),
            ShardOp::GetBooking { locator, document } | ShardOp::Confirm { locator, document } => {
                find_booking(&state, locator, &document)
                    .map(|booking| ShardReply::Booking { booking })
            }
            ShardOp::Cancel { locator, document } => {
                find_booking(&state, locator, &document).map(|booking| ShardReply::Cancelled {
                    booking,
                    release: None,
                })
            }
            ShardOp::MoveSlots { version, .. } => match state.moved {
                Some((rows, pause_ms)) => Ok(ShardReply::Moved {
                    version,
                    rows,
                    pause_ms,
                }),
                None => Err(Error::internal("the fake shard moves no slots")),
            },
            ShardOp::Finish { .. }
            | ShardOp::Resolve { .. }
            | ShardOp::Audit
            | ShardOp::ImportSlots(_) => Err(Error::internal(
                "the fake shard does not implement this operation",
            )),
        };
        match answer {
            Ok(reply) => InternalResult::Ok(reply),
            Err(error) => InternalResult::Err(ShardError::Client { error }),
        }
    }

    /// Checks every segment in order, then takes the seats.
    fn take_seats(&self, state: &mut State, segments: &[String], seats: u32) -> Result<(), Error> {
        for id in segments {
            let Some(segment) = state.segments.get(id) else {
                return Err(Error::UnknownSegment {
                    segment: id.clone(),
                });
            };
            if segment.seats_left < seats {
                return Err(Error::SoldOut {
                    segment: id.clone(),
                    requested: seats,
                    left: segment.seats_left,
                });
            }
        }
        for id in segments {
            if let Some(segment) = state.segments.get_mut(id) {
                segment.seats_left -= seats;
            }
        }
        Ok(())
    }

    fn create_booking(&self, state: &mut State, request: BookRequest) -> Booking {
        let index = self.next_locator.fetch_add(1, Ordering::SeqCst);
        let booking = Booking {
            id: Locator::new(slot(&request.segments[0]), index).to_string(),
            status: match request.hold_seconds {
                Some(_) => BookingStatus::Held,
                None => BookingStatus::Confirmed,
            },
            passenger: request.passenger,
            seats: request.seats,
            segments: request.segments,
            created_at: format_rfc3339(now_unix(), 0),
            expires_at: None,
        };
        state.bookings.push(booking.clone());
        booking
    }
}

/// Returns a copy of the booking with this locator and document.
fn find_booking(state: &State, locator: u64, document: &str) -> Result<Booking, Error> {
    let id = Locator(locator).to_string();
    state
        .bookings
        .iter()
        .find(|b| b.id == id && b.passenger.document == document)
        .cloned()
        .ok_or(Error::UnknownBooking { booking: id })
}
