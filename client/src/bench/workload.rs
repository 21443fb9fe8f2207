//! The segments a run books and the request each load task sends next.

use std::sync::Arc;

use anyhow::Context;
use trecho_common::schedule::{Schedule, SegmentSpec};
use trecho_common::time::{now_unix, Date};

use super::args::{BenchArgs, Workload};

/// Segments that depart sooner than this after the run starts are left out,
/// because the shards stop selling 30 minutes before departure.
const SALES_MARGIN_SECONDS: i64 = 3 * 3600;
/// Shortest connection between two segments of a trip, in seconds.
const MIN_CONNECTION_SECONDS: i64 = 45 * 60;
/// Longest connection between two segments of a trip, in seconds.
const MAX_CONNECTION_SECONDS: i64 = 8 * 3600;

/// One request of a load task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Books `seats` on these segments (indexes into [`Catalog::segments`]).
    Book { segments: Vec<usize> },
    /// `segments.search` from an airport on a date.
    Search { origin: String, date: Date },
    /// `routes.find` with up to one stop.
    Routes {
        origin: String,
        destination: String,
        date: Date,
    },
    /// `bookings.get` of a booking this task made, by its position in the
    /// task's list.
    Get { booking: usize },
}

/// Every segment on sale during the run, with trips built from them.
pub(crate) struct Catalog {
    pub(crate) segments: Vec<SegmentSpec>,
    /// The segments of the `hot` workload.
    hot: Vec<usize>,
    /// Connecting pairs and triples for the `trip` workload.
    trips: Vec<Vec<usize>>,
}

impl Catalog {
    /// Builds the segments of the schedule and dates in `args`, leaving out
    /// those too close to departure.
    ///
    /// # Errors
    ///
    /// Fails when the schedule file cannot be read or no segment is on
    /// sale.
    pub(crate) fn load(args: &BenchArgs) -> anyhow::Result<Arc<Catalog>> {
        let schedule = match &args.schedule {
            Some(path) => Schedule::load(path)
                .with_context(|| format!("cannot read the schedule file {}", path.display()))?,
            None => Schedule::builtin(),
        };
        let start = args.start_date.unwrap_or_else(Date::today_utc);
        let open_after = now_unix() + SALES_MARGIN_SECONDS;
        let segments: Vec<SegmentSpec> = schedule
            .segments(start, args.days)
            .into_iter()
            .filter(|segment| segment.departure > open_after)
            .collect();
        if segments.is_empty() {
            anyhow::bail!(
                "no segment of the schedule departs more than {} hours from now in the {} days \
                 from {}; give the cluster's --start-date and --days",
                SALES_MARGIN_SECONDS / 3600,
                args.days,
                start
            );
        }
        Ok(Arc::new(Catalog::new(segments, args)))
    }

    fn new(segments: Vec<SegmentSpec>, args: &BenchArgs) -> Catalog {
        let mut rng = Rng::new(args.seed);
        let hot_count = (args.hot_segments as usize).min(segments.len());
        let mut hot = Vec::with_capacity(hot_count);
        while hot.len() < hot_count {
            let index = rng.below(segments.len());
            if !hot.contains(&index) {
                hot.push(index);
            }
        }
        let trips = match args.workload {
            Workload::Trip => connecting_trips(&segments),
            _ => Vec::new(),
        };
        Catalog {
            segments,
            hot,
            trips,
        }
    }

    /// Returns the segments that the run may book, for loading a peer.
    pub(crate) fn bookable(&self, workload: Workload) -> Vec<usize> {
        match workload {
            Workload::Hot => self.hot.clone(),
            _ => (0..self.segments.len()).collect(),
        }
    }

    /// Returns the next request of a task, or `None` when the workload has
    /// nothing to send (a `trip` run over a schedule with no connection).
    pub(crate) fn next(&self, workload: Workload, rng: &mut Rng, made: usize) -> Option<Request> {
        match workload {
            Workload::Book => Some(self.single(rng)),
            Workload::Hot => Some(Request::Book {
                segments: vec![self.hot[rng.below(self.hot.len())]],
            }),
            Workload::Trip => {
                if self.trips.is_empty() {
                    return None;
                }
                let trip = &self.trips[rng.below(self.trips.len())];
                Some(Request::Book {
                    segments: trip.clone(),
                })
            }
            Workload::Mixed => Some(self.mixed(rng, made)),
        }
    }

    fn single(&self, rng: &mut Rng) -> Request {
        Request::Book {
            segments: vec![rng.below(self.segments.len())],
        }
    }

    /// Returns a read four times in five, else a single-segment booking.
    fn mixed(&self, rng: &mut Rng, made: usize) -> Request {
        let roll = rng.below(100);
        if roll >= 80 {
            return self.single(rng);
        }
        let segment = &self.segments[rng.below(self.segments.len())];
        let date = local_date(segment);
        match roll % 3 {
            0 => Request::Search {
                origin: segment.origin.clone(),
                date,
            },
            1 => Request::Routes {
                origin: segment.origin.clone(),
                destination: segment.destination.clone(),
                date,
            },
            _ if made > 0 => Request::Get {
                booking: rng.below(made),
            },
            _ => Request::Search {
                origin: segment.origin.clone(),
                date,
            },
        }
    }
}

/// Returns the local departure date of `segment`, the date in its id.
fn local_date(segment: &SegmentSpec) -> Date {
    trecho_common::time::local_date(segment.departure, segment.departure_offset_minutes)
}

/// Builds one two-segment and one three-segment trip from each segment
/// where a connection exists: the next segment leaves the arrival airport
/// between 45 minutes and 8 hours later and does not fly back.
fn connecting_trips(segments: &[SegmentSpec]) -> Vec<Vec<usize>> {
    let mut by_origin: rustc_hash::FxHashMap<&str, Vec<usize>> = Default::default();
    for (index, segment) in segments.iter().enumerate() {
        by_origin.entry(&segment.origin).or_default().push(index);
    }
    for departures in by_origin.values_mut() {
        departures.sort_by_key(|&index| segments[index].departure);
    }
    let next_leg = |from: usize, avoid: &str| -> Option<usize> {
        let arriving = &segments[from];
        let departures = by_origin.get(arriving.destination.as_str())?;
        let earliest = arriving.arrival + MIN_CONNECTION_SECONDS;
        let start = departures.partition_point(|&i| segments[i].departure < earliest);
        departures[start..]
            .iter()
            .copied()
            .take_while(|&i| segments[i].departure <= arriving.arrival + MAX_CONNECTION_SECONDS)
            .find(|&i| {
                segments[i].destination != avoid && segments[i].destination != arriving.origin
            })
    };
    let mut trips = Vec::new();
    for (first, segment) in segments.iter().enumerate() {
        let origin = segment.origin.as_str();
        let Some(second) = next_leg(first, origin) else {
            continue;
        };
        trips.push(vec![first, second]);
        if let Some(third) = next_leg(second, origin) {
            trips.push(vec![first, second, third]);
        }
    }
    trips
}

/// SplitMix64: a small, fast generator, good enough to spread requests and
/// repeatable from a seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Starts a generator from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..bound`; `bound` must not be zero.
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        // The multiply-shift maps 64 random bits onto the range with a bias
        // below 2^-32 for any bound this bench uses.
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_stays_below_bound_and_repeats() {
        let mut first = Rng::new(7);
        let mut second = Rng::new(7);
        for bound in [1usize, 2, 3, 10, 1000] {
            for _ in 0..1000 {
                let value = first.below(bound);
                assert!(value < bound);
                assert_eq!(value, second.below(bound));
            }
        }
    }

    #[test]
    fn trips_connect_in_time_and_place() {
        let schedule = Schedule::builtin();
        let segments = schedule.segments(Date::from_ymd(2030, 1, 10).unwrap(), 2);
        let trips = connecting_trips(&segments);
        assert!(trips.iter().any(|t| t.len() == 2));
        assert!(trips.iter().any(|t| t.len() == 3));
        for trip in &trips {
            for pair in trip.windows(2) {
                let (a, b) = (&segments[pair[0]], &segments[pair[1]]);
                assert_eq!(a.destination, b.origin);
                assert!(b.departure >= a.arrival + MIN_CONNECTION_SECONDS);
                assert!(b.departure <= a.arrival + MAX_CONNECTION_SECONDS);
            }
            assert_ne!(
                segments[trip[0]].origin,
                segments[*trip.last().unwrap()].destination
            );
        }
    }
}
