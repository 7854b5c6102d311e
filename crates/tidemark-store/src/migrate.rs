//! Copying a whole SQLite store into an empty PostgreSQL store (`tidemark migrate`).
//!
//! Both stores keep one row model (explicit ids, times as 64-bit microseconds, flags, digests
//! as bytes; see `migrations/postgres/0001_initial.sql`), so the copy moves every row as it
//! is, table by table, and the PostgreSQL store then reads back exactly what the SQLite store
//! held: the same ids, the same streams with the same sequence numbers, the same API key and
//! token digests, and the same cursor key, so every cursor handed out before the move still
//! works after it.
//!
//! # Guarantees
//! - **A consistent snapshot**: the SQLite file is opened read-only and read in one read
//!   transaction, so a copy taken while the old service still runs is a state the store was in
//!   (activity committed after the snapshot began is not copied: stop the service first).
//! - **All or nothing**: every row is written in one PostgreSQL transaction; a copy that fails
//!   for any reason leaves no row behind.
//! - **An empty target only**: a target that holds any Tidemark data is refused before
//!   anything is written (the tables are locked while checked, so no node can add some
//!   meanwhile).
//! - **Every column**: the copy names each table and column it moves, and checks that both
//!   databases have exactly those, so a schema change that forgets this module fails loudly
//!   instead of dropping data.
//! - **New nodes take over**: subscription leases and webhook and backfill claims are copied
//!   as free (their fencing tokens are kept, so a claim from before the move stays stale);
//!   every identity is restarted after the highest copied id, so new rows never collide.
//! - **Bounded memory**: rows travel from a reader thread to `COPY ... FROM STDIN (FORMAT
//!   binary)` in batches through a bounded channel, whatever the size of the activity table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::postgres::{describe_target, PgErrorExt as _};
use crate::{PostgresStore, StoreError, StoreResult};

/// Rows per batch handed from the SQLite reader to the PostgreSQL writer.
const BATCH_ROWS: usize = 1000;
/// Batches in flight between them (with ~1 KB activities: a few MB at most).
const CHANNEL_BATCHES: usize = 8;

/// One table the copy moves.
struct Table {
    name: &'static str,
    /// Every column, in the order copied.
    columns: &'static [&'static str],
    /// Columns copied as NULL: leases and claims, so the new nodes can take over at once.
    cleared: &'static [&'static str],
    /// The SQLite read order (the primary key).
    order_by: &'static str,
    /// Whether `id` is an identity to restart after the copied ids.
    identity: bool,
}

/// Every table of the store, parents before children (foreign keys hold at every row).
const TABLES: &[Table] = &[
    Table {
        name: "meta",
        columns: &["key", "value"],
        cleared: &[],
        order_by: "key",
        identity: false,
    },
    Table {
        name: "applications",
        columns: &[
            "id",
            "name",
            "track_activity",
            "retention_days",
            "max_subscriptions_per_account",
            "created",
            "allow_private_webhook_targets",
        ],
        cleared: &[],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "api_keys",
        columns: &[
            "id",
            "application_id",
            "digest",
            "hint",
            "created",
            "signing_key",
        ],
        cleared: &[],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "accounts",
        columns: &[
            "id",
            "application_id",
            "service",
            "admin",
            "config",
            "created",
            "modified",
        ],
        cleared: &[],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "account_tokens",
        columns: &["digest", "account_id", "created"],
        cleared: &[],
        order_by: "digest",
        identity: false,
    },
    Table {
        name: "subscriptions",
        columns: &[
            "id",
            "account_id",
            "subscription_type",
            "active",
            "disable_reason",
            "is_default",
            "expiry",
            "monitored_resources",
            "monitored_resource_api",
            "monitored_resource_object_type",
            "last_cursor",
            "last_cursor_updated_at",
            "last_cursor_position",
            "created",
            "modified",
            "last_sequence",
            "last_committed_at",
            "retained_count",
            "pruned_through",
            "watermark",
            "next_poll_at",
            "wake_counter",
            "lease_holder",
            "lease_token",
            "lease_expires_at",
            "consecutive_failures",
            "last_error",
        ],
        cleared: &["lease_holder", "lease_expires_at"],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "checkpoints",
        columns: &["subscription_id", "state", "updated_at"],
        cleared: &[],
        order_by: "subscription_id",
        identity: false,
    },
    Table {
        name: "activity",
        columns: &[
            "subscription_id",
            "sequence",
            "activity_id",
            "occurred_at",
            "committed_at",
            "body",
            "v1_type",
            "v1",
            "v1_target_at",
            "v1_target_len",
        ],
        cleared: &[],
        order_by: "subscription_id, sequence",
        identity: false,
    },
    Table {
        name: "webhook_endpoints",
        columns: &[
            "id",
            "application_id",
            "url",
            "filter",
            "enabled",
            "secret",
            "created",
            "modified",
        ],
        cleared: &[],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "webhook_deliveries",
        columns: &[
            "endpoint_id",
            "subscription_id",
            "notified_sequence",
            "given_up_sequence",
            "attempt_sequence",
            "claimed_until",
            "claim_token",
            "attempts",
            "failing_since",
            "next_attempt_at",
        ],
        cleared: &["claimed_until"],
        order_by: "endpoint_id, subscription_id",
        identity: false,
    },
    Table {
        name: "webhook_attempts",
        columns: &[
            "id",
            "endpoint_id",
            "subscription_id",
            "account_id",
            "sequence",
            "started_at",
            "latency_us",
            "status_code",
            "success",
            "error",
        ],
        cleared: &[],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "backfill_jobs",
        columns: &[
            "id",
            "subscription_id",
            "from_at",
            "until_at",
            "state",
            "checkpoint",
            "fetched",
            "appended",
            "error",
            "claimed_until",
            "claim_token",
            "retry_at",
            "created",
            "modified",
        ],
        cleared: &["claimed_until"],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "destinations",
        columns: &[
            "id",
            "application_id",
            "kind",
            "target",
            "filter",
            "payload",
            "batch_size",
            "enabled",
            "created",
            "modified",
        ],
        cleared: &[],
        order_by: "id",
        identity: true,
    },
    Table {
        name: "destination_positions",
        columns: &[
            "destination_id",
            "subscription_id",
            "published_sequence",
            "claimed_until",
            "claim_token",
            "attempts",
            "failing_since",
            "next_attempt_at",
            "pending_through",
        ],
        cleared: &["claimed_until"],
        order_by: "destination_id, subscription_id",
        identity: false,
    },
    Table {
        name: "destination_attempts",
        columns: &[
            "id",
            "destination_id",
            "subscription_id",
            "account_id",
            "first_sequence",
            "last_sequence",
            "published",
            "started_at",
            "latency_us",
            "success",
            "error",
        ],
        cleared: &[],
        order_by: "id",
        identity: true,
    },
];

/// PostgreSQL tables that belong to the schema machinery, not to the store's data.
const NOT_COPIED: &[&str] = &["schema_migrations"];

/// Where a copy is: reported when a table starts, after every batch, and when it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyProgress {
    /// The table being copied.
    pub table: &'static str,
    /// Its rows copied so far.
    pub copied: u64,
    /// Its rows in the snapshot.
    pub total: u64,
}

/// What a finished copy moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows per table, in the order copied.
    pub tables: Vec<(&'static str, u64)>,
    /// How long the whole copy took (reading, writing and committing).
    pub elapsed: Duration,
}

impl CopyReport {
    /// Rows copied into `table` (0 for a table the copy does not know).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(name, _)| *name == table)
            .map_or(0, |(_, rows)| *rows)
    }
}

/// Copies the whole SQLite store at `sqlite_path` into the empty PostgreSQL database at
/// `postgres_url`, calling `progress` as it goes. See the module doc for the guarantees.
///
/// The target's schema is brought up to date first (as [`PostgresStore::connect`] does);
/// then every row is copied in one transaction, and the identities are moved past the copied
/// ids. No node should use the target until this returns: a node started earlier would keep
/// the cursor key it found on the empty database.
///
/// # Errors
/// - [`StoreError::Backend`] if the file is missing, not SQLite, not a Tidemark store, or of
///   another schema version than this build's, or if PostgreSQL cannot be reached or fails;
///   nothing is written to PostgreSQL (beyond its schema) in any of these cases.
/// - [`StoreError::Conflict`] if the target already holds Tidemark data.
pub async fn copy_sqlite_to_postgres(
    sqlite_path: &Path,
    postgres_url: &str,
    mut progress: impl FnMut(CopyProgress) + Send,
) -> StoreResult<CopyReport> {
    let started = Instant::now();
    if !(postgres_url.starts_with("postgres://") || postgres_url.starts_with("postgresql://")) {
        return Err(StoreError::Backend(
            "invalid PostgreSQL URL: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
                .into(),
        ));
    }
    let config: tokio_postgres::Config = postgres_url
        .parse()
        .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
    let target = describe_target(&config);
    // The source is checked (and its snapshot taken) before the target is touched.
    let (sender, mut batches) = mpsc::channel(CHANNEL_BATCHES);
    let path = sqlite_path.to_path_buf();
    std::thread::Builder::new()
        .name("tidemark-migrate-reader".into())
        .spawn(move || read_snapshot(&path, &sender))
        .map_err(|e| StoreError::Backend(format!("cannot start the SQLite reader: {e}")))?;
    let totals = match batches.recv().await {
        Some(Ok(Batch::Totals(totals))) => totals,
        Some(Err(error)) => return Err(error),
        Some(Ok(_)) | None => return Err(reader_stopped()),
    };

    // Migrates the target's schema under the store's own lock, exactly as a node would.
    drop(PostgresStore::connect_with_pool_size(postgres_url, 1).await?);
    let (mut client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .backend(&format!("connecting to {target}"))?;
    let connection = tokio::spawn(connection);
    let result = copy_into(&mut client, &totals, &mut batches, &mut progress).await;
    drop(client);
    let _ = connection.await;
    let tables = result?;
    Ok(CopyReport {
        tables,
        elapsed: started.elapsed(),
    })
}

async fn copy_into(
    client: &mut tokio_postgres::Client,
    totals: &[u64],
    batches: &mut mpsc::Receiver<StoreResult<Batch>>,
    progress: &mut (impl FnMut(CopyProgress) + Send),
) -> StoreResult<Vec<(&'static str, u64)>> {
    let tx = client.transaction().await.backend("beginning the copy")?;
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    // No node may write while the target is checked and filled.
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        names.join(", ")
    ))
    .await
    .backend("locking the target's tables")?;
    check_target_schema(&tx).await?;
    refuse_non_empty_target(&tx).await?;
    // The only row of an empty store: the cursor key its first connection made up, replaced
    // by the source's.
    tx.batch_execute("DELETE FROM meta")
        .await
        .backend("clearing meta")?;

    let mut copied = Vec::with_capacity(TABLES.len());
    for (table, &total) in TABLES.iter().zip(totals) {
        let rows = copy_table(&tx, table, total, batches, progress).await?;
        copied.push((table.name, rows));
    }
    for table in TABLES.iter().filter(|t| t.identity) {
        let row = tx
            .query_one(
                &format!("SELECT COALESCE(MAX(id), 0) FROM {}", table.name),
                &[],
            )
            .await
            .backend(&format!("reading the highest id of {}", table.name))?;
        let highest: i64 = row
            .try_get(0)
            .backend(&format!("reading the highest id of {}", table.name))?;
        tx.batch_execute(&format!(
            "ALTER TABLE {} ALTER COLUMN id RESTART WITH {}",
            table.name,
            highest.saturating_add(1)
        ))
        .await
        .backend(&format!("moving the identity of {}", table.name))?;
    }
    // Fresh statistics, so the new nodes' first queries are planned for the real sizes.
    tx.batch_execute(&format!("ANALYZE {}", names.join(", ")))
        .await
        .backend("analyzing the copied tables")?;
    tx.commit().await.backend("committing the copy")?;
    Ok(copied)
}

/// Streams one table's batches into a binary `COPY`.
async fn copy_table(
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
    total: u64,
    batches: &mut mpsc::Receiver<StoreResult<Batch>>,
    progress: &mut (impl FnMut(CopyProgress) + Send),
) -> StoreResult<u64> {
    let columns = table.columns.join(", ");
    let doing = format!("copying {}", table.name);
    // The target's own column types say how each SQLite value is encoded.
    let shape = tx
        .prepare(&format!("SELECT {columns} FROM {}", table.name))
        .await
        .backend(&doing)?;
    let types: Vec<Type> = shape.columns().iter().map(|c| c.type_().clone()).collect();
    let sink = tx
        .copy_in(&format!(
            "COPY {} ({columns}) FROM STDIN (FORMAT binary)",
            table.name
        ))
        .await
        .backend(&doing)?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    let mut copied = 0u64;
    progress(CopyProgress {
        table: table.name,
        copied,
        total,
    });
    loop {
        match batches.recv().await {
            Some(Ok(Batch::Rows(rows))) => {
                for row in &rows {
                    writer
                        .as_mut()
                        .write_raw(row.iter())
                        .await
                        .backend(&doing)?;
                }
                copied += rows.len() as u64;
                progress(CopyProgress {
                    table: table.name,
                    copied,
                    total,
                });
            }
            Some(Ok(Batch::TableDone)) => break,
            Some(Err(error)) => return Err(error),
            Some(Ok(Batch::Totals(_))) | None => return Err(reader_stopped()),
        }
    }
    let written = writer.as_mut().finish().await.backend(&doing)?;
    if written != copied || copied != total {
        return Err(StoreError::Backend(format!(
            "{}: the snapshot counted {total} rows, {copied} were read and {written} written",
            table.name
        )));
    }
    Ok(copied)
}

fn reader_stopped() -> StoreError {
    StoreError::Backend("the SQLite reader stopped unexpectedly".into())
}

/// Every table and column of the target must be one the copy moves, and the other way round.
async fn check_target_schema(tx: &tokio_postgres::Transaction<'_>) -> StoreResult<()> {
    let rows = tx
        .query(
            "SELECT c.table_name::TEXT, c.column_name::TEXT FROM information_schema.columns c \
             JOIN information_schema.tables t \
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .backend("reading the target's schema")?;
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in &rows {
        let table: String = row.try_get(0).backend("reading the target's schema")?;
        let column: String = row.try_get(1).backend("reading the target's schema")?;
        if !NOT_COPIED.contains(&table.as_str()) {
            found.entry(table).or_default().insert(column);
        }
    }
    compare_schema("the PostgreSQL database", &found)
}

/// Fails unless `found` holds exactly the tables and columns of [`TABLES`].
fn compare_schema(database: &str, found: &BTreeMap<String, BTreeSet<String>>) -> StoreResult<()> {
    let mut differences = Vec::new();
    for table in TABLES {
        let Some(columns) = found.get(table.name) else {
            differences.push(format!("table {} is missing", table.name));
            continue;
        };
        let expected: BTreeSet<String> = table.columns.iter().map(|c| (*c).to_owned()).collect();
        for missing in expected.difference(columns) {
            differences.push(format!("column {}.{missing} is missing", table.name));
        }
        for extra in columns.difference(&expected) {
            differences.push(format!(
                "column {}.{extra} is not one migrate copies",
                table.name
            ));
        }
    }
    for table in found.keys() {
        if !TABLES.iter().any(|t| t.name == table) {
            differences.push(format!("table {table} is not one migrate copies"));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(StoreError::Backend(format!(
        "{database} does not have the schema this build copies: {}",
        differences.join("; ")
    )))
}

async fn refuse_non_empty_target(tx: &tokio_postgres::Transaction<'_>) -> StoreResult<()> {
    let probes: Vec<String> = TABLES
        .iter()
        .filter(|t| t.name != "meta")
        .map(|t| {
            format!(
                "SELECT '{0}'::TEXT WHERE EXISTS (SELECT 1 FROM {0})",
                t.name
            )
        })
        .collect();
    let rows = tx
        .query(&probes.join(" UNION ALL "), &[])
        .await
        .backend("checking that the target is empty")?;
    let mut holding = Vec::with_capacity(rows.len());
    for row in &rows {
        let table: String = row
            .try_get(0)
            .backend("checking that the target is empty")?;
        holding.push(table);
    }
    if holding.is_empty() {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "the target database already holds Tidemark data (in {}); migrate copies only into an \
         empty database: create a new one and point --to at it",
        holding.join(", ")
    )))
}

// ---- the SQLite side -----------------------------------------------------------------------

/// What the reader thread sends: first the snapshot's row counts (one per table of
/// [`TABLES`]), then for each table in order its rows in batches and a `TableDone`.
enum Batch {
    Totals(Vec<u64>),
    Rows(Vec<Vec<Cell>>),
    TableDone,
}

/// Reads the snapshot; an error is sent on as the last message.
fn read_snapshot(path: &Path, sender: &mpsc::Sender<StoreResult<Batch>>) {
    if let Err(error) = read_snapshot_or_fail(path, sender) {
        let _ = sender.blocking_send(Err(error));
    }
}

fn read_snapshot_or_fail(
    path: &Path,
    sender: &mpsc::Sender<StoreResult<Batch>>,
) -> StoreResult<()> {
    let send = |batch: Batch| {
        sender
            .blocking_send(Ok(batch))
            // The writer gave up (and reported why); stop reading.
            .map_err(|_| StoreError::Backend("the copy was abandoned".into()))
    };
    let mut conn = open_source(path)?;
    let display = path.display().to_string();
    let source = |e: rusqlite::Error| StoreError::Backend(format!("reading {display}: {e}"));
    // One read transaction: every table is read from the same snapshot.
    let snapshot = conn.transaction().map_err(source)?;
    check_source(&snapshot, path)?;
    let mut totals = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let count: i64 = snapshot
            .query_row(&format!("SELECT COUNT(*) FROM {}", table.name), [], |r| {
                r.get(0)
            })
            .map_err(source)?;
        totals.push(u64::try_from(count).unwrap_or(0));
    }
    send(Batch::Totals(totals))?;
    for table in TABLES {
        let expressions: Vec<&str> = table
            .columns
            .iter()
            .map(|c| if table.cleared.contains(c) { "NULL" } else { c })
            .collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            expressions.join(", "),
            table.name,
            table.order_by
        );
        let mut statement = snapshot.prepare(&sql).map_err(source)?;
        let mut rows = statement.query([]).map_err(source)?;
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        while let Some(row) = rows.next().map_err(source)? {
            let mut cells = Vec::with_capacity(table.columns.len());
            for (index, column) in table.columns.iter().enumerate() {
                let value = row.get_ref(index).map_err(source)?;
                cells.push(Cell::read(value, table.name, column)?);
            }
            batch.push(cells);
            if batch.len() == BATCH_ROWS {
                send(Batch::Rows(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(BATCH_ROWS),
                )))?;
            }
        }
        if !batch.is_empty() {
            send(Batch::Rows(batch))?;
        }
        send(Batch::TableDone)?;
    }
    Ok(())
}

/// Opens the source read-only (never creating it).
fn open_source(path: &Path) -> StoreResult<Connection> {
    let display = path.display();
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => {}
        Ok(_) => {
            return Err(StoreError::Backend(format!(
                "{display} is not a file (expected a Tidemark SQLite database)"
            )))
        }
        Err(e) => return Err(StoreError::Backend(format!("cannot read {display}: {e}"))),
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Backend(format!("cannot open {display}: {e}")))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| StoreError::Backend(format!("cannot open {display}: {e}")))?;
    Ok(conn)
}

/// The source must be a Tidemark store of exactly this build's schema, with a cursor key.
fn check_source(conn: &Connection, path: &Path) -> StoreResult<()> {
    let display = path.display();
    let not_tidemark = || {
        StoreError::Backend(format!(
            "{display} is not a Tidemark SQLite database (no Tidemark schema in it)"
        ))
    };
    // The first read: it also starts the snapshot.
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| StoreError::Backend(format!("{display} is not a SQLite database: {e}")))?;
    for table in tables {
        let columns: BTreeSet<String> = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .and_then(|mut s| s.query_map([&table], |r| r.get(0))?.collect())
            .map_err(|e| StoreError::Backend(format!("reading {display}: {e}")))?;
        found.insert(table, columns);
    }
    if !found.contains_key("meta") || !found.contains_key("applications") {
        return Err(not_tidemark());
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| StoreError::Backend(format!("reading {display}: {e}")))?;
    let expected = crate::sqlite::SCHEMA_VERSION;
    if usize::try_from(version).ok() != Some(expected) {
        return Err(StoreError::Backend(format!(
            "{display} has schema version {version}, this build copies version {expected}: \
             open it once with this build (e.g. `tidemark serve --db sqlite://{display}`) to \
             bring it up to date, then migrate"
        )));
    }
    compare_schema(&display.to_string(), &found)?;
    let key: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = 'cursor_key'", [], |r| {
            r.get(0)
        })
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })
        .map_err(|e| StoreError::Backend(format!("reading {display}: {e}")))?;
    match key {
        Some(bytes) if bytes.len() == 32 => Ok(()),
        Some(_) => Err(StoreError::Corrupt(format!(
            "{display}: the cursor key is not 32 bytes"
        ))),
        None => Err(StoreError::Corrupt(format!("{display} has no cursor key"))),
    }
}

/// One SQLite value on its way into a PostgreSQL column; the column's type (from the target)
/// decides its encoding.
#[derive(Debug)]
struct Cell(Value);

impl Cell {
    /// Takes a value out of a row (text must be UTF-8, as everything Tidemark writes is).
    fn read(value: ValueRef<'_>, table: &str, column: &str) -> StoreResult<Self> {
        Ok(Cell(match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Integer(v),
            ValueRef::Real(v) => Value::Real(v),
            ValueRef::Text(bytes) => {
                Value::Text(String::from_utf8(bytes.to_vec()).map_err(|_| {
                    StoreError::Corrupt(format!("{table}.{column} holds text that is not UTF-8"))
                })?)
            }
            ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
        }))
    }
}

impl ToSql for Cell {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (&self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(v), &Type::INT8) => v.to_sql(ty, out),
            (Value::Integer(v), &Type::INT4) => i32::try_from(*v)?.to_sql(ty, out),
            (Value::Integer(v), &Type::BOOL) => (*v != 0).to_sql(ty, out),
            (Value::Text(v), &Type::TEXT) => v.as_str().to_sql(ty, out),
            (Value::Blob(v), &Type::BYTEA) => v.as_slice().to_sql(ty, out),
            (value, ty) => Err(format!(
                "a SQLite {} cannot be stored in a PostgreSQL {ty} column",
                match value {
                    Value::Null => "NULL",
                    Value::Integer(_) => "integer",
                    Value::Real(_) => "real",
                    Value::Text(_) => "text",
                    Value::Blob(_) => "blob",
                }
            )
            .into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8 | Type::INT4 | Type::BOOL | Type::TEXT | Type::BYTEA
        )
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cleared_columns_and_read_orders_name_copied_columns() {
        for table in TABLES {
            for cleared in table.cleared {
                assert!(table.columns.contains(cleared), "{}.{cleared}", table.name);
            }
            for key in table.order_by.split(", ") {
                assert!(table.columns.contains(&key), "{}.{key}", table.name);
            }
            assert_eq!(table.identity, table.columns.first() == Some(&"id"));
        }
    }

    #[test]
    fn test_schema_differences_are_named() {
        let mut found: BTreeMap<String, BTreeSet<String>> = TABLES
            .iter()
            .map(|t| {
                (
                    t.name.to_owned(),
                    t.columns.iter().map(|c| (*c).to_owned()).collect(),
                )
            })
            .collect();
        assert!(compare_schema("db", &found).is_ok());
        found
            .get_mut("activity")
            .map(|columns| columns.insert("extra".to_owned()));
        found.insert("newer".to_owned(), BTreeSet::new());
        found.remove("meta");
        let error = compare_schema("db", &found).err().map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains("table meta is missing"), "{error}");
        assert!(error.contains("activity.extra is not one"), "{error}");
        assert!(error.contains("table newer is not one"), "{error}");
    }
}
