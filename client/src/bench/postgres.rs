//! The PostgreSQL baseline: one statement per booking that takes the seats
//! with `UPDATE ... WHERE taken + seats <= capacity` and inserts the
//! booking, committed as its own transaction.
//!
//! With the server's defaults (`fsync` and `synchronous_commit` on), every
//! commit waits for its WAL flush before the reply. tokio-postgres
//! pipelines the statements that the tasks of one connection send at once.

use anyhow::Context;
use tokio_postgres::{Client, NoTls, Statement};

use super::workload::Catalog;

const SCHEMA: &str = "
DROP TABLE IF EXISTS bench_bookings;
DROP TABLE IF EXISTS bench_segments;
CREATE TABLE bench_segments (
    id text PRIMARY KEY,
    capacity integer NOT NULL,
    taken integer NOT NULL DEFAULT 0 CHECK (taken <= capacity)
);
CREATE TABLE bench_bookings (
    id bigserial PRIMARY KEY,
    segment text NOT NULL REFERENCES bench_segments (id),
    seats integer NOT NULL,
    name text NOT NULL,
    document text NOT NULL
);";

/// Takes the seats and records the booking in one implicit transaction;
/// no row back means the segment had too few seats left.
const BOOK: &str = "
WITH taken AS (
    UPDATE bench_segments SET taken = taken + $2
    WHERE id = $1 AND taken + $2 <= capacity
    RETURNING id
)
INSERT INTO bench_bookings (segment, seats, name, document)
SELECT id, $2, 'Bench Passenger', $3 FROM taken
RETURNING id";

/// Segments inserted per statement while loading.
const LOAD_BATCH: usize = 5000;

/// One PostgreSQL connection with the booking statement prepared.
pub(crate) struct PgConnection {
    client: Client,
    book: Statement,
}

impl PgConnection {
    /// Connects to `address` as `user` (trust or peer authentication, no
    /// TLS) and prepares the booking statement.
    pub(crate) async fn connect(address: &str, user: &str) -> anyhow::Result<Self> {
        let client = connect_client(address, user).await?;
        let book = client
            .prepare(BOOK)
            .await
            .context("preparing the booking statement failed; run the bench's setup first")?;
        Ok(PgConnection { client, book })
    }

    /// Books `seats` on `segment` and returns the booking id, or the error
    /// kind.
    pub(crate) async fn book(
        &self,
        segment: &str,
        seats: u32,
        document: &str,
    ) -> Result<i64, String> {
        let seats = seats as i32;
        match self
            .client
            .query_opt(&self.book, &[&segment, &seats, &document])
            .await
        {
            Ok(Some(row)) => Ok(row.get(0)),
            Ok(None) => Err("sold_out".to_owned()),
            Err(error) if error.is_closed() => Err("connection_lost".to_owned()),
            Err(error) => Err(match error.code() {
                Some(code) => format!("postgres_{}", code.code()),
                None => "postgres_error".to_owned(),
            }),
        }
    }
}

async fn connect_client(address: &str, user: &str) -> anyhow::Result<Client> {
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("expected HOST:PORT for PostgreSQL, got {address:?}"))?;
    let mut config = tokio_postgres::Config::new();
    config.host(host).port(
        port.parse()
            .with_context(|| format!("invalid port in {address:?}"))?,
    );
    config.user(user).dbname(user);
    let (client, connection) = config.connect(NoTls).await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {address} as {user}; start it, or give its \
                 address with --address and a user that trust authentication admits with \
                 --pg-user"
        )
    })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// Recreates the bench's tables and loads `bookable` with their full
/// capacity.
pub(crate) async fn prepare(
    address: &str,
    user: &str,
    catalog: &Catalog,
    bookable: &[usize],
) -> anyhow::Result<()> {
    let client = connect_client(address, user).await?;
    client
        .batch_execute(SCHEMA)
        .await
        .context("creating the bench's tables failed")?;
    for chunk in bookable.chunks(LOAD_BATCH) {
        let ids: Vec<&str> = chunk
            .iter()
            .map(|&i| catalog.segments[i].id.as_str())
            .collect();
        let capacities: Vec<i32> = chunk
            .iter()
            .map(|&i| catalog.segments[i].capacity as i32)
            .collect();
        client
            .execute(
                "INSERT INTO bench_segments (id, capacity) SELECT * FROM unnest($1::text[], $2::int[])",
                &[&ids, &capacities],
            )
            .await
            .context("loading segments into PostgreSQL failed")?;
    }
    client
        .batch_execute("VACUUM ANALYZE bench_segments")
        .await
        .context("VACUUM ANALYZE failed")?;
    Ok(())
}

/// Returns the seats taken over every segment and the number of booking
/// records.
pub(crate) async fn totals(address: &str, user: &str) -> anyhow::Result<(u64, u64)> {
    let client = connect_client(address, user).await?;
    let row = client
        .query_one(
            "SELECT (SELECT coalesce(sum(taken), 0)::bigint FROM bench_segments), \
                    (SELECT count(*) FROM bench_bookings)",
            &[],
        )
        .await
        .context("reading the totals failed")?;
    let taken: i64 = row.get(0);
    let bookings: i64 = row.get(1);
    Ok((taken as u64, bookings as u64))
}
