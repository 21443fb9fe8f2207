//! The client commands: each connects to the router, makes its calls and
//! prints the result.

use std::time::Duration;

use anyhow::Context;
use trecho_client::{BookParams, Client, ClientError, ClientOptions, Passenger};
use trecho_common::protocol::methods::{Route, RoutesParams, SearchParams};
use trecho_common::types::Booking;
use trecho_common::Error;

use super::args::{BookArgs, ClientArgs, ClientCommand, PassengerArgs, TripArgs};
use super::output::{note, print_result};
use super::{request_id, view};

/// Time allowed for each response. A booking across shards waits for every
/// shard's journal, so this is far above a normal response time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a client command.
pub(crate) async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Airports(client) => {
            let result = connect(&client).await?.airports().await?;
            print_result(client.json, &result, view::airports)
        }
        ClientCommand::Search(args) => {
            let params = SearchParams {
                origin: Some(args.origin),
                destination: args.destination,
                date: args.date,
                limit: args.limit,
            };
            let result = connect(&args.client).await?.search(params).await?;
            warn_partial(&result.coverage);
            print_result(args.client.json, &result, |r| view::segments(&r.segments))
        }
        ClientCommand::Routes(args) => {
            let params = RoutesParams {
                origin: args.origin,
                destination: args.destination,
                date: args.date,
                seats: args.seats,
                max_stops: args.stops,
                limit: args.limit,
            };
            let result = connect(&args.client).await?.routes(params).await?;
            warn_partial(&result.coverage);
            if result.routes.is_empty() && !args.client.json {
                note("no routes found; try another date, or allow more connections with --stops");
            }
            print_result(args.client.json, &result, view::routes)
        }
        ClientCommand::Book(args) => book(args, None).await,
        ClientCommand::Hold(args) => book(args.book, Some(args.hold_seconds)).await,
        ClientCommand::Confirm(args) => {
            let client = connect(&args.client).await?;
            let booking = client.confirm(&args.id, &args.document).await?;
            print_result(args.client.json, &booking, view::booking)
        }
        ClientCommand::Cancel(args) => {
            let client = connect(&args.client).await?;
            let booking = client.cancel(&args.id, &args.document).await?;
            print_result(args.client.json, &booking, view::booking)
        }
        ClientCommand::Booking(args) => {
            let client = connect(&args.client).await?;
            let booking = client.booking(&args.id, &args.document).await?;
            print_result(args.client.json, &booking, view::booking)
        }
        ClientCommand::Bookings(args) => {
            let result = connect(&args.client)
                .await?
                .bookings(&args.document)
                .await?;
            warn_partial(&result.coverage);
            print_result(args.client.json, &result, view::bookings)
        }
        ClientCommand::Status(client) => {
            let result = connect(&client).await?.status().await?;
            print_result(client.json, &result, view::status)
        }
        ClientCommand::Trip(args) => trip(args).await,
    }
}

async fn connect(args: &ClientArgs) -> Result<Client, ClientError> {
    let options = ClientOptions {
        request_timeout: Some(REQUEST_TIMEOUT),
        ..ClientOptions::default()
    };
    Client::connect_with(&args.router, options).await
}

fn warn_partial(coverage: &trecho_common::protocol::methods::Coverage) {
    if let Some(warning) = view::coverage_warning(coverage) {
        note(&warning);
    }
}

/// `book` and `hold`: `hold_seconds` is `Some` for a hold.
async fn book(args: BookArgs, hold_seconds: Option<Option<u32>>) -> anyhow::Result<()> {
    let request_id = args.request_id.unwrap_or_else(|| {
        let generated = request_id::generate();
        note(&format!("request id: {generated}"));
        generated
    });
    let params = BookParams {
        passenger: passenger(&args.passenger),
        segments: args.segments,
        seats: args.passenger.seats,
        request_id: Some(request_id.clone()),
        hold_seconds: hold_seconds.flatten(),
    };
    let client = connect(&args.client).await?;
    let result = match hold_seconds {
        Some(_) => client.hold(params).await,
        None => client.create(params).await,
    };
    let booking = result.map_err(|e| with_retry_hint(e, &request_id))?;
    print_result(args.client.json, &booking, view::booking)
}

fn passenger(args: &PassengerArgs) -> Passenger {
    Passenger {
        name: args.name.clone(),
        document: args.document.clone(),
    }
}

/// Adds how to learn the outcome to an error after which a booking may or
/// may not exist.
fn with_retry_hint(error: ClientError, request_id: &str) -> anyhow::Error {
    let retry = format!("run the same command again with --request-id {request_id}");
    with_retry(error, &retry)
}

/// Adds `retry`, a command that returns the booking if it was made and
/// books once otherwise, to an error after which a booking may or may not
/// exist.
fn with_retry(error: ClientError, retry: &str) -> anyhow::Error {
    let uncertain = matches!(
        error,
        ClientError::ConnectionLost { .. } | ClientError::Timeout { .. }
    ) || matches!(error.trecho_error(), Some(Error::OutcomeUnknown { .. }));
    if uncertain {
        let hint = format!(
            "the booking may or may not have been made; {retry} to get it without booking twice"
        );
        anyhow::Error::new(error).context(hint)
    } else {
        error.into()
    }
}

/// Returns the `trecho book` command that retries `params` exactly.
fn book_command(params: &BookParams) -> String {
    let quote = |text: &str| format!("'{}'", text.replace('\'', "'\\''"));
    let mut command = format!("run `trecho book {}", params.segments.join(" "));
    command.push_str(&format!(" --name {}", quote(&params.passenger.name)));
    command.push_str(&format!(" --document {}", params.passenger.document));
    if let Some(seats) = params.seats {
        command.push_str(&format!(" --seats {seats}"));
    }
    if let Some(request_id) = &params.request_id {
        command.push_str(&format!(" --request-id {request_id}"));
    }
    command.push('`');
    command
}

/// `trip`: books the earliest-arriving route with enough seats. When the
/// seats of a route sell out between the search and the booking, the next
/// route is tried.
async fn trip(args: TripArgs) -> anyhow::Result<()> {
    let client = connect(&args.client).await?;
    let params = RoutesParams {
        origin: args.origin.clone(),
        destination: args.destination.clone(),
        date: args.date,
        seats: args.passenger.seats,
        max_stops: args.stops,
        limit: None,
    };
    let found = client.routes(params).await?;
    warn_partial(&found.coverage);
    let seats = args.passenger.seats.unwrap_or(1);
    let candidates: Vec<&Route> = found
        .routes
        .iter()
        .filter(|route| route.seats_left >= seats)
        .collect();
    if candidates.is_empty() {
        let stops = args.stops.unwrap_or(1);
        anyhow::bail!(
            "no route from {} to {} on {} has {seats} free {} with at most {stops} {}; \
             try another date, or allow more connections with --stops",
            args.origin,
            args.destination,
            args.date,
            if seats == 1 { "seat" } else { "seats" },
            if stops == 1 { "stop" } else { "stops" },
        );
    }
    let (route, booking) = book_first_available(&client, &args, &candidates).await?;
    print_trip(args.client.json, route, &booking)
}

/// Books the first of `routes` that still has the seats, each attempt with
/// its own request id.
async fn book_first_available<'a>(
    client: &Client,
    args: &TripArgs,
    routes: &[&'a Route],
) -> anyhow::Result<(&'a Route, Booking)> {
    let mut last_error = None;
    for route in routes {
        let request_id = request_id::generate();
        let params = BookParams {
            passenger: passenger(&args.passenger),
            segments: route.segments.iter().map(|s| s.id.clone()).collect(),
            seats: args.passenger.seats,
            request_id: Some(request_id.clone()),
            hold_seconds: None,
        };
        let retry = book_command(&params);
        match client.create(params).await {
            Ok(booking) => return Ok((route, booking)),
            Err(error) if is_gone(&error) => {
                note(&format!("{error}; trying the next route"));
                last_error = Some(error);
            }
            Err(error) => {
                let hint = format!("booking {}", view::route_summary(route));
                return Err(with_retry(error, &retry).context(hint));
            }
        }
    }
    let error = last_error.map_or_else(|| anyhow::anyhow!("no route to book"), Into::into);
    Err(error.context("every route found sold out before it could be booked"))
}

/// Returns whether the route's seats went to someone else, so that another
/// route may still work.
fn is_gone(error: &ClientError) -> bool {
    matches!(
        error.trecho_error(),
        Some(Error::SoldOut { .. } | Error::SalesClosed { .. })
    )
}

fn print_trip(json: bool, route: &Route, booking: &Booking) -> anyhow::Result<()> {
    let result = serde_json::json!({ "route": route, "booking": booking });
    print_result(json, &result, |_| {
        format!(
            "{}\n{}\n{}",
            view::route_summary(route),
            view::segments(&route.segments),
            view::booking(booking)
        )
    })
    .context("cannot print the trip")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_command_repeats_the_trip_exactly() {
        let params = BookParams {
            passenger: Passenger {
                name: "Ana D'Ávila".into(),
                document: "X123".into(),
            },
            segments: vec!["LA3013-2026-12-05".into(), "G31020-2026-12-05".into()],
            seats: Some(2),
            request_id: Some("cli-1".into()),
            hold_seconds: None,
        };
        assert_eq!(
            book_command(&params),
            "run `trecho book LA3013-2026-12-05 G31020-2026-12-05 --name 'Ana D'\\''Ávila' \
             --document X123 --seats 2 --request-id cli-1`"
        );
    }
}
