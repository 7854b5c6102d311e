//! Forward-only schema migrations, tracked in `schema_migrations` and applied under an
//! advisory lock, so several nodes starting at once migrate exactly once.

use deadpool_postgres::GenericClient;

use super::PgErrorExt as _;
use crate::{StoreError, StoreResult};

/// Every migration in order; the index + 1 is the schema version it produces.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_initial.sql"),
    include_str!("../../migrations/postgres/0002_destinations.sql"),
    include_str!("../../migrations/postgres/0003_destination_pending.sql"),
    include_str!("../../migrations/postgres/0004_activity_v1.sql"),
];

/// The advisory lock key that serializes migrations ("tidemark" in ASCII, as an i64).
const MIGRATION_LOCK: i64 = 0x7469_6465_6d61_726b;

/// Applies the migrations the database has not seen yet, each in its own transaction, while
/// holding a session advisory lock: a node that starts while another migrates waits for it,
/// then finds nothing left to do.
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> StoreResult<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .backend("taking the migration lock")?;
    let result = apply(client).await;
    // Released explicitly: the pooled session outlives this call.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .backend("releasing the migration lock");
    result.and(unlocked.map(|_| ()))
}

async fn apply(client: &mut deadpool_postgres::Client) -> StoreResult<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
               version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .backend("creating schema_migrations")?;
    let current: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .backend("reading the schema version")?
        .try_get(0)
        .backend("reading the schema version")?;
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this build knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = (index + 1) as i64;
        let tx = client
            .transaction()
            .await
            .backend("beginning a migration")?;
        tx.batch_execute(sql)
            .await
            .backend(&format!("applying migration {version}"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .backend("recording a migration")?;
        tx.commit().await.backend("committing a migration")?;
        tracing::info!(version, "applied postgres migration");
    }
    Ok(())
}
