//! Forward-only schema migrations, tracked in SQLite's `user_version`.

use rusqlite::{Connection, TransactionBehavior};

use crate::{StoreError, StoreResult};

/// Every migration in order; the index + 1 is the schema version it produces.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_credentials.sql"),
    include_str!("../../migrations/sqlite/0003_webhooks.sql"),
    include_str!("../../migrations/sqlite/0004_webhook_targets.sql"),
    include_str!("../../migrations/sqlite/0005_activity_by_time.sql"),
    include_str!("../../migrations/sqlite/0006_backfill.sql"),
    include_str!("../../migrations/sqlite/0007_destinations.sql"),
    include_str!("../../migrations/sqlite/0008_destination_pending.sql"),
    include_str!("../../migrations/sqlite/0009_activity_v1.sql"),
];

/// The schema version this build produces (and the only one `tidemark migrate` copies).
pub(crate) const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Applies the migrations the database has not seen yet, each in its own transaction.
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this build knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        // Re-check under the lock: another process may have migrated meanwhile.
        let seen: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if usize::try_from(seen).unwrap_or(0) > index {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied sqlite migration");
    }
    Ok(())
}
