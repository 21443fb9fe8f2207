//! Home-shard booking requests: the single-shard fast path, request ids,
//! confirm, cancel, reads, and hold expiry.

use trecho_common::error::Error;
use trecho_common::hashing::slot;
use trecho_common::internal::{Release, ShardError, ShardReply, TxnId};
use trecho_common::protocol::methods::BookRequest;
use trecho_common::time::format_rfc3339;
use trecho_common::types::{Booking, BookingStatus, Locator};

use super::{check_shape, request_key, BookingRecord, Outcome, RecordSink, State};
use crate::record::Record;

/// What an earlier use of a request id means for a new attempt.
pub(super) enum Prior {
    /// Go on with the new attempt.
    Proceed,
    /// The request id already produced this booking.
    Booked(Locator),
}

/// Formats Unix milliseconds as RFC 3339 in UTC, milliseconds included, so
/// that bookings made within one second still list newest first.
fn rfc3339_utc(unix_ms: i64) -> String {
    let seconds = format_rfc3339(unix_ms.div_euclid(1000), 0);
    format!(
        "{}.{:03}Z",
        seconds.trim_end_matches('Z'),
        unix_ms.rem_euclid(1000)
    )
}

impl State {
    /// Books every segment on this shard in one record, or takes nothing.
    pub(super) fn book(
        &mut self,
        request: BookRequest,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<ShardReply, ShardError> {
        check_shape(&request.segments, request.seats)?;
        self.check_owns_all(&request.segments)?;
        if request.request_id.is_some() {
            // A single-shard booking with a request id is sent here only
            // when this shard also owns the document's slot, where the
            // request ids of that document are kept.
            self.check_slot(slot(&request.passenger.document))?;
        }
        if let Prior::Booked(locator) = self.prior_attempt(&request, None, sink)? {
            return Ok(self.booking_reply(locator, now_ms));
        }
        self.check_segments(&request.segments, request.seats, now_ms)?;
        let txn = self.new_txn();
        let locator = self.new_locator(slot(&request.segments[0]))?;
        let expires_ms = request
            .hold_seconds
            .map(|seconds| now_ms + i64::from(seconds) * 1000);
        let record = Record::Booked {
            txn,
            locator,
            request,
            created_ms: now_ms,
            expires_ms,
        };
        self.emit(record, sink)?;
        tracing::debug!(shard.id = self.shard_id, booking = %locator, txn, "booked");
        Ok(self.booking_reply(locator, now_ms))
    }

    /// Looks up the request id of `request`. A different fingerprint is a
    /// reuse. A booking it produced is returned as it is now. A first
    /// attempt still pending (other than `current`) is aborted, so the new
    /// attempt can go on.
    pub(super) fn prior_attempt(
        &mut self,
        request: &BookRequest,
        current: Option<TxnId>,
        sink: &mut dyn RecordSink,
    ) -> Result<Prior, ShardError> {
        let Some(request_id) = &request.request_id else {
            return Ok(Prior::Proceed);
        };
        let key = request_key(&request.passenger.document, request_id);
        // A claim made here for a booking whose home is another shard.
        let claimed = self.claims.get(&key).copied();
        if claimed.is_some_and(|fingerprint| fingerprint != request.fingerprint()) {
            return Err(Error::RequestIdReused {
                request_id: request_id.clone(),
            }
            .into());
        }
        let Some(entry) = self.request_ids.get(&key) else {
            return Ok(Prior::Proceed);
        };
        if entry.fingerprint != request.fingerprint() {
            return Err(Error::RequestIdReused {
                request_id: request_id.clone(),
            }
            .into());
        }
        let earlier = entry.txn;
        let outcome = self.txns.get(&earlier).map(|home| &home.outcome);
        match outcome {
            Some(Outcome::Committed(locator)) => Ok(Prior::Booked(*locator)),
            Some(Outcome::Pending { .. }) if Some(earlier) != current => {
                tracing::debug!(
                    shard.id = self.shard_id,
                    txn = earlier,
                    "retry aborts the first attempt"
                );
                self.emit(
                    Record::Aborted {
                        txn: earlier,
                        participant_slots: Vec::new(),
                        home_slot: None,
                    },
                    sink,
                )?;
                Ok(Prior::Proceed)
            }
            _ => Ok(Prior::Proceed),
        }
    }

    /// `bookings.confirm`: held becomes confirmed; confirmed stays.
    pub(super) fn confirm(
        &mut self,
        locator: Locator,
        document: &str,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<ShardReply, ShardError> {
        let status = self.current_status(locator, document, now_ms, sink)?;
        match status {
            BookingStatus::Held => self.emit(Record::Confirmed { locator }, sink)?,
            BookingStatus::Confirmed => {}
            BookingStatus::Expired => {
                let expires_ms = self.bookings.get(&locator).and_then(|b| b.expires_ms);
                return Err(Error::HoldExpired {
                    booking: locator.to_string(),
                    expired_at: rfc3339_utc(expires_ms.unwrap_or(now_ms)),
                }
                .into());
            }
            BookingStatus::Cancelled => return Err(invalid_state(locator, status, "confirmed")),
        }
        Ok(self.booking_reply(locator, now_ms))
    }

    /// `bookings.cancel`: held or confirmed becomes cancelled, releasing
    /// the seats; cancelled stays.
    pub(super) fn cancel(
        &mut self,
        locator: Locator,
        document: &str,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<ShardReply, ShardError> {
        let status = self.current_status(locator, document, now_ms, sink)?;
        match status {
            BookingStatus::Held | BookingStatus::Confirmed => {
                self.emit(Record::Cancelled { locator }, sink)?;
            }
            BookingStatus::Cancelled => {}
            BookingStatus::Expired => return Err(invalid_state(locator, status, "cancelled")),
        }
        let Some(booking) = self.booking_view(locator, now_ms) else {
            return Ok(ShardReply::Ack);
        };
        let release = self.bookings.get(&locator).and_then(|record| {
            let txn = record.txn;
            let slots: Vec<u16> = self
                .outbox
                .range((txn, 0)..=(txn, u16::MAX))
                .filter(|(_, &commit)| !commit)
                .map(|(&(_, slot), _)| slot)
                .collect();
            (!slots.is_empty()).then_some(Release { txn, slots })
        });
        Ok(ShardReply::Cancelled { booking, release })
    }

    /// `bookings.get`.
    pub(super) fn get_booking(
        &self,
        locator: Locator,
        document: &str,
        now_ms: i64,
    ) -> Result<ShardReply, ShardError> {
        self.check_slot(locator.slot())?;
        self.find_booking(locator, document)?;
        Ok(self.booking_reply(locator, now_ms))
    }

    /// Every booking of `document` whose home is this shard, newest first.
    pub(super) fn list_bookings(&self, document: &str, now_ms: i64) -> ShardReply {
        let mut found: Vec<(u64, Locator)> = self
            .by_document
            .get(document)
            .into_iter()
            .flatten()
            .filter_map(|locator| self.bookings.get(locator).map(|b| (b.seq, *locator)))
            .collect();
        found.sort_unstable_by(|a, b| b.cmp(a));
        let bookings = found
            .into_iter()
            .filter_map(|(_, locator)| self.booking_view(locator, now_ms))
            .collect();
        ShardReply::Bookings { bookings }
    }

    /// Finds the booking and its status, writing the expiry of a hold that
    /// ran out before the timer got to it.
    fn current_status(
        &mut self,
        locator: Locator,
        document: &str,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<BookingStatus, ShardError> {
        self.check_slot(locator.slot())?;
        let booking = self.find_booking(locator, document)?;
        if is_past_hold(booking, now_ms) {
            self.emit(Record::Expired { locator }, sink)?;
            return Ok(BookingStatus::Expired);
        }
        Ok(booking.status)
    }

    /// Returns the booking when its document matches; a wrong document
    /// gets the same error as a missing locator, so locators cannot be
    /// probed.
    fn find_booking(&self, locator: Locator, document: &str) -> Result<&BookingRecord, ShardError> {
        self.bookings
            .get(&locator)
            .filter(|booking| booking.passenger.document == document)
            .ok_or_else(|| {
                Error::UnknownBooking {
                    booking: locator.to_string(),
                }
                .into()
            })
    }

    /// Expires every hold due at `now_ms`.
    pub(super) fn expire_due(
        &mut self,
        now_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Result<(), ShardError> {
        while let Some(&(expires_ms, locator)) = self.holds.first() {
            if expires_ms > now_ms {
                break;
            }
            tracing::debug!(shard.id = self.shard_id, booking = %locator, "hold expired");
            self.emit(Record::Expired { locator }, sink)?;
        }
        Ok(())
    }

    pub(super) fn booking_reply(&self, locator: Locator, now_ms: i64) -> ShardReply {
        match self.booking_view(locator, now_ms) {
            Some(booking) => ShardReply::Booking { booking },
            None => ShardReply::Ack,
        }
    }

    /// Builds the client view, showing a hold past its expiry as expired.
    pub(super) fn booking_view(&self, locator: Locator, now_ms: i64) -> Option<Booking> {
        let record = self.bookings.get(&locator)?;
        let status = if is_past_hold(record, now_ms) {
            BookingStatus::Expired
        } else {
            record.status
        };
        let expires_at = match status {
            BookingStatus::Held => record.expires_ms.map(rfc3339_utc),
            _ => None,
        };
        Some(Booking {
            id: locator.to_string(),
            status,
            passenger: record.passenger.clone(),
            seats: record.seats,
            segments: record.segments.clone(),
            created_at: rfc3339_utc(record.created_ms),
            expires_at,
        })
    }
}

fn is_past_hold(booking: &BookingRecord, now_ms: i64) -> bool {
    booking.status == BookingStatus::Held && booking.expires_ms.is_some_and(|at| at <= now_ms)
}

fn invalid_state(locator: Locator, status: BookingStatus, action: &str) -> ShardError {
    Error::InvalidState {
        booking: locator.to_string(),
        status: status.to_string(),
        action: action.to_owned(),
    }
    .into()
}
