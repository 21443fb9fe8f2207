//! `routes.find`: itineraries searched over the schedule in the router, with
//! seats asked from the shards that own the segments.
//!
//! A route starts with a flight from the origin departing on the requested
//! local date. Each connection is at the airport the previous flight reached
//! and departs from 45 minutes to 12 hours (both inclusive) after its
//! arrival. A route has at most `max_stops` connections and never visits an
//! airport twice. Routes are sorted by arrival, then duration, then fewer
//! stops, then segment ids.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use rustc_hash::FxHashMap;
use trecho_common::internal::{ShardOp, ShardReply};
use trecho_common::link::LinkError;
use trecho_common::protocol::methods::{Coverage, Route, RoutesParams, RoutesResult};
use trecho_common::schedule::{Schedule, SegmentSpec};
use trecho_common::time::{local_date, Date};
use trecho_common::types::Segment;

use crate::cluster::Cluster;
use crate::dispatch::Pending;
use crate::response::Reply;
use crate::retry::{Refusal, Retries};
use crate::shard_error::reply_type;

/// Shortest connection, in seconds.
pub(crate) const MIN_CONNECTION_SECONDS: i64 = 45 * 60;
/// Longest connection, in seconds.
pub(crate) const MAX_CONNECTION_SECONDS: i64 = 12 * 3600;
/// Candidate routes kept per search before seats are asked.
// NOTE: the walk stops at this many candidates, earliest departures first,
// so on a schedule dense enough to reach it a later-departing route that
// arrives earlier can be missed.
const MAX_CANDIDATES: usize = 10_000;

/// One flight leaving an airport.
#[derive(Debug, Clone, Copy)]
struct Departure {
    flight: usize,
    destination: usize,
    /// Local departure time, minutes after midnight.
    minutes: u32,
    /// Block time, in minutes.
    duration: u32,
}

/// The schedule arranged for route search: airports by index, their
/// departures by time of day, and which airports fly into each.
pub(crate) struct RouteIndex {
    codes: FxHashMap<String, usize>,
    offsets: Vec<i32>,
    departures: Vec<Vec<Departure>>,
    inbound: Vec<Vec<usize>>,
}

/// One flight on one day of a candidate route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leg {
    /// Index into the schedule's flights.
    pub(crate) flight: usize,
    /// Local departure date at the origin.
    pub(crate) date: Date,
    /// Unix seconds.
    departure: i64,
    /// Unix seconds.
    arrival: i64,
}

impl RouteIndex {
    /// Indexes `schedule`; flights naming unknown airports are left out.
    pub(crate) fn new(schedule: &Schedule) -> Self {
        let codes: FxHashMap<String, usize> = schedule
            .airports
            .iter()
            .enumerate()
            .map(|(index, airport)| (airport.code.clone(), index))
            .collect();
        let count = schedule.airports.len();
        let mut departures = vec![Vec::new(); count];
        let mut inbound = vec![Vec::new(); count];
        for (flight, f) in schedule.flights.iter().enumerate() {
            let (Some(&from), Some(&to)) = (codes.get(&f.origin), codes.get(&f.destination)) else {
                continue;
            };
            departures[from].push(Departure {
                flight,
                destination: to,
                minutes: f.departure_minutes,
                duration: f.duration_minutes,
            });
            inbound[to].push(from);
        }
        for list in &mut departures {
            list.sort_by_key(|d: &Departure| (d.minutes, d.flight));
        }
        for list in &mut inbound {
            list.sort_unstable();
            list.dedup();
        }
        RouteIndex {
            offsets: schedule
                .airports
                .iter()
                .map(|a| a.utc_offset_minutes)
                .collect(),
            codes,
            departures,
            inbound,
        }
    }

    /// Returns every route from `origin` to `destination` leaving on local
    /// `date` with at most `max_stops` connections, up to a fixed cap.
    pub(crate) fn candidates(
        &self,
        origin: &str,
        destination: &str,
        date: Date,
        max_stops: u32,
    ) -> Vec<Vec<Leg>> {
        let (Some(&from), Some(&to)) = (self.codes.get(origin), self.codes.get(destination)) else {
            return Vec::new();
        };
        if from == to {
            return Vec::new();
        }
        let mut walk = Walk {
            index: self,
            destination: to,
            distance: self.legs_to(to),
            visited: vec![false; self.offsets.len()],
            path: Vec::new(),
            found: Vec::new(),
            max_legs: max_stops as usize + 1,
        };
        walk.visited[from] = true;
        walk.explore(from, (date, date), (i64::MIN, i64::MAX));
        walk.found
    }

    /// Returns the fewest flights from each airport to `to`, ignoring times,
    /// or `u32::MAX` when it cannot be reached.
    fn legs_to(&self, to: usize) -> Vec<u32> {
        let mut distance = vec![u32::MAX; self.offsets.len()];
        distance[to] = 0;
        let mut queue = VecDeque::from([to]);
        while let Some(airport) = queue.pop_front() {
            for &from in &self.inbound[airport] {
                if distance[from] == u32::MAX {
                    distance[from] = distance[airport] + 1;
                    queue.push_back(from);
                }
            }
        }
        distance
    }
}

/// A depth-first walk over flights, earliest departures first.
struct Walk<'a> {
    index: &'a RouteIndex,
    destination: usize,
    /// Fewest flights from each airport to the destination, to prune
    /// airports that cannot reach it with the flights left.
    distance: Vec<u32>,
    visited: Vec<bool>,
    path: Vec<Leg>,
    found: Vec<Vec<Leg>>,
    max_legs: usize,
}

impl Walk<'_> {
    /// Tries every departure from `airport` on local dates `dates` that
    /// leaves within `window` (Unix seconds, inclusive).
    fn explore(&mut self, airport: usize, dates: (Date, Date), window: (i64, i64)) {
        let index = self.index;
        let offset = index.offsets[airport];
        let mut date = dates.0;
        while date <= dates.1 {
            let midnight = date.midnight_unix(offset);
            for departure in &index.departures[airport] {
                let leaves = midnight + i64::from(departure.minutes) * 60;
                if leaves < window.0 {
                    continue;
                }
                if leaves > window.1 || self.found.len() >= MAX_CANDIDATES {
                    break;
                }
                let leg = Leg {
                    flight: departure.flight,
                    date,
                    departure: leaves,
                    arrival: leaves + i64::from(departure.duration) * 60,
                };
                self.take(leg, departure.destination);
            }
            date = date.add_days(1);
        }
    }

    /// Adds `leg` to the path: records a route at the destination, or looks
    /// for connections at `next`.
    fn take(&mut self, leg: Leg, next: usize) {
        if self.visited[next] {
            return;
        }
        if next == self.destination {
            let mut route = self.path.clone();
            route.push(leg);
            self.found.push(route);
            return;
        }
        let legs_left = self.max_legs - (self.path.len() + 1);
        if legs_left == 0 || self.distance[next] as usize > legs_left {
            return;
        }
        let earliest = leg.arrival + MIN_CONNECTION_SECONDS;
        let latest = leg.arrival + MAX_CONNECTION_SECONDS;
        let offset = self.index.offsets[next];
        let dates = (local_date(earliest, offset), local_date(latest, offset));
        self.visited[next] = true;
        self.path.push(leg);
        self.explore(next, dates, (earliest, latest));
        self.path.pop();
        self.visited[next] = false;
    }
}

/// The distinct segments of the candidate routes, and each route as
/// indices into them.
pub(crate) struct Candidates {
    pub(crate) segments: Vec<SegmentSpec>,
    pub(crate) routes: Vec<Vec<usize>>,
}

impl Candidates {
    /// Resolves every leg to its segment, once per distinct segment.
    pub(crate) fn build(schedule: &Schedule, routes: &[Vec<Leg>]) -> Self {
        let mut position: FxHashMap<(usize, Date), usize> = FxHashMap::default();
        let mut segments = Vec::new();
        let mut resolved = Vec::with_capacity(routes.len());
        'routes: for route in routes {
            let mut indices = Vec::with_capacity(route.len());
            for leg in route {
                let index = match position.get(&(leg.flight, leg.date)) {
                    Some(&index) => index,
                    None => {
                        let flight = &schedule.flights[leg.flight];
                        let Some(spec) = schedule.segment(flight, leg.date) else {
                            continue 'routes;
                        };
                        segments.push(spec);
                        position.insert((leg.flight, leg.date), segments.len() - 1);
                        segments.len() - 1
                    }
                };
                indices.push(index);
            }
            resolved.push(indices);
        }
        Candidates {
            segments,
            routes: resolved,
        }
    }

    /// Keeps the routes whose every segment has known seats, at least
    /// `seats` on each; sorts them and returns the first `limit`.
    pub(crate) fn rank(&self, seats_left: &[Option<u32>], seats: u32, limit: usize) -> Vec<Route> {
        let mut kept: Vec<(&Vec<usize>, u32)> = self
            .routes
            .iter()
            .filter_map(|route| {
                let fewest = route.iter().map(|&i| seats_left[i]).min()??;
                (fewest >= seats).then_some((route, fewest))
            })
            .collect();
        kept.sort_by(|(a, _), (b, _)| {
            let key = |route: &Vec<usize>| {
                let first = &self.segments[route[0]];
                let last = &self.segments[route[route.len() - 1]];
                (last.arrival, last.arrival - first.departure, route.len())
            };
            key(a).cmp(&key(b)).then_with(|| {
                let ids = |route: &'_ Vec<usize>| {
                    route
                        .iter()
                        .map(|&i| self.segments[i].id.as_str())
                        .collect::<Vec<_>>()
                };
                ids(a).cmp(&ids(b))
            })
        });
        kept.truncate(limit);
        kept.into_iter()
            .map(|(route, fewest)| self.route(route, seats_left, fewest))
            .collect()
    }

    fn route(&self, route: &[usize], seats_left: &[Option<u32>], fewest: u32) -> Route {
        let first = &self.segments[route[0]];
        let last = &self.segments[route[route.len() - 1]];
        let segments = route
            .iter()
            .map(|&i| to_segment(&self.segments[i], seats_left[i].unwrap_or(0)))
            .collect();
        Route {
            segments,
            departure: first.departure_rfc3339(),
            arrival: last.arrival_rfc3339(),
            duration_minutes: ((last.arrival - first.departure) / 60) as u32,
            stops: (route.len() - 1) as u32,
            seats_left: fewest,
        }
    }
}

fn to_segment(spec: &SegmentSpec, seats_left: u32) -> Segment {
    Segment {
        id: spec.id.clone(),
        flight: spec.flight.clone(),
        origin: spec.origin.clone(),
        destination: spec.destination.clone(),
        departure: spec.departure_rfc3339(),
        arrival: spec.arrival_rfc3339(),
        capacity: spec.capacity,
        seats_left,
    }
}

/// A shard's answer to a seats request: its id, the candidates' indices
/// and the answer.
type SeatsAnswer = (u32, Vec<usize>, Result<ShardReply, LinkError>);

/// Sends each owning shard one request for the seats left on the
/// candidate segments of `wanted` (indices into `candidates.segments`).
/// Returns one future per shard.
fn ask_seats(
    cluster: &Cluster,
    candidates: &Candidates,
    wanted: impl IntoIterator<Item = usize>,
) -> Vec<impl Future<Output = SeatsAnswer>> {
    let mut by_link: Vec<Vec<usize>> = vec![Vec::new(); cluster.link_count()];
    for index in wanted {
        let segment = &candidates.segments[index];
        by_link[cluster.owner_of_segment(&segment.id)].push(index);
    }
    by_link
        .into_iter()
        .enumerate()
        .filter(|(_, indices)| !indices.is_empty())
        .map(|(link, indices)| {
            let link = cluster.link(link);
            let ids = indices
                .iter()
                .map(|&i| candidates.segments[i].id.clone())
                .collect();
            let answer = link.send(&ShardOp::Seats { ids });
            let shard = link.shard();
            async move { (shard, indices, answer.await) }
        })
        .collect()
}

/// Waits for `first` and, while shards refuse candidates whose slots they
/// do not own or are moving, refreshes the map and asks the new owners of
/// those candidates, as [`Retries`] allows. Returns the last answer for
/// every candidate.
async fn settle_seats(
    cluster: &Cluster,
    candidates: &Candidates,
    first: Vec<impl Future<Output = SeatsAnswer>>,
) -> Vec<SeatsAnswer> {
    let mut answers = join_all(first).await;
    let mut retries = Retries::default();
    loop {
        let refused = answers
            .iter()
            .filter_map(|(_, _, answer)| Refusal::of(answer));
        let Some(refusal) = Refusal::worst(refused) else {
            return answers;
        };
        if !retries.again(cluster, refusal).await {
            return answers;
        }
        let (retry, done): (Vec<_>, Vec<_>) = answers
            .into_iter()
            .partition(|(_, _, answer)| Refusal::of(answer).is_some());
        let wanted = retry.into_iter().flat_map(|(_, indices, _)| indices);
        let again = join_all(ask_seats(cluster, candidates, wanted)).await;
        answers = done;
        answers.extend(again);
    }
}

/// `routes.find`: searches the schedule now, asks each owning shard for
/// seats in one request (sent before returning), and returns the future of
/// the ranked routes.
pub(crate) fn find(cluster: &Arc<Cluster>, params: RoutesParams) -> Pending {
    let seats = params.seats.unwrap_or(1);
    let max_stops = params.max_stops.unwrap_or(1);
    let limit = params.limit.unwrap_or(10) as usize;
    let legs =
        cluster
            .routes()
            .candidates(&params.origin, &params.destination, params.date, max_stops);
    let candidates = Candidates::build(cluster.schedule(), &legs);
    let asks = ask_seats(cluster, &candidates, 0..candidates.segments.len());
    let cluster = cluster.clone();
    Box::pin(async move {
        let answers = settle_seats(&cluster, &candidates, asks).await;
        let mut seats_left = vec![None; candidates.segments.len()];
        let mut unavailable = Vec::new();
        for (shard, indices, answer) in answers {
            match answer {
                Ok(ShardReply::Seats { seats }) if seats.len() == indices.len() => {
                    for (index, left) in indices.into_iter().zip(seats) {
                        seats_left[index] = left;
                    }
                }
                Ok(other) => {
                    let got = reply_type(&other);
                    tracing::error!(
                        shard.id = shard,
                        got,
                        "unexpected answer to a seats request"
                    );
                    unavailable.push(shard);
                }
                Err(error) => {
                    tracing::debug!(shard.id = shard, %error, "shard left out of a route search");
                    unavailable.push(shard);
                }
            }
        }
        unavailable.sort_unstable();
        unavailable.dedup();
        let routes = candidates.rank(&seats_left, seats, limit);
        let coverage = Coverage {
            partial: !unavailable.is_empty(),
            unavailable_shards: unavailable,
        };
        Ok(Reply::Routes(RoutesResult { routes, coverage }))
    })
}

#[cfg(test)]
mod tests;
