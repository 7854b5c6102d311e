//! The skip that per-subscription sequence numbers exist to prevent, provoked on PostgreSQL.
//!
//! Many committers append to one subscription at once, each on its own connection, while
//! readers follow the stream with cursors (`sequence > position`). If sequence numbers came
//! from a global sequence, a commit that drew 7 could become visible before the one that drew
//! 6; a reader would read 7, move its position past 6, and never see 6. With numbers assigned
//! under the subscription's row lock inside the committing transaction (`tidemark_commit`), a
//! number is only drawn once every earlier one is committed, so this cannot happen.
//!
//! The second test replaces `tidemark_commit` (in its own database) with the global-sequence
//! version and shows the same check catching the skip: the check can fail.

use std::collections::HashSet;
use std::sync::Arc;

use tidemark_store::pgtest::TestDatabase;
use tidemark_store::testsuite::{sample_activity, setup};
use tidemark_store::{CommitBatch, PostgresStore, Store};

const COMMITTERS: usize = 24;
const BATCHES_PER_COMMITTER: usize = 40;
const READERS: usize = 4;

/// What the readers saw.
struct Followed {
    /// Every activity id each reader saw, in the order it saw them.
    seen: Vec<Vec<String>>,
    /// Whether every reader saw sequence numbers 1, 2, 3, ... with none missing or repeated.
    gap_free: bool,
}

/// Runs the committers and readers against `store` and returns what the readers saw, along
/// with every id committed.
async fn commit_and_follow(store: Arc<PostgresStore>) -> (HashSet<String>, Followed) {
    let subscription = setup(&*store).await;
    let writers_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..COMMITTERS {
        let store = Arc::clone(&store);
        let subscription = subscription.clone();
        let writers_done = Arc::clone(&writers_done);
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for batch_index in 0..BATCHES_PER_COMMITTER {
                // Batches of 1 to 3: many small commits, the most interleaving.
                let activities: Vec<_> = (0..1 + (writer + batch_index) % 3)
                    .map(|i| {
                        let id = format!("w{writer}-b{batch_index}-{i}");
                        ids.push(id.clone());
                        sample_activity(subscription.account, &id)
                    })
                    .collect();
                store
                    .commit(CommitBatch::new(subscription.id, &activities).expect("encodes"))
                    .await
                    .expect("commit");
            }
            writers_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ids
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let store = Arc::clone(&store);
        let writers_done = Arc::clone(&writers_done);
        let subscription_id = subscription.id;
        readers.push(tokio::spawn(async move {
            let mut position = 0u64;
            let mut seen = Vec::new();
            let mut gap_free = true;
            loop {
                // Read whether or not the writers are done: after they are, one last read
                // that comes back empty ends the follow.
                let finished = writers_done.load(std::sync::atomic::Ordering::SeqCst) == COMMITTERS;
                let page = store
                    .read_page(subscription_id, position, 50)
                    .await
                    .expect("read");
                if page.activities.is_empty() {
                    if finished {
                        break;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                for row in page.activities {
                    gap_free &= row.sequence == position + 1;
                    position = row.sequence;
                    seen.push(row.activity().expect("parses").id);
                }
            }
            (seen, gap_free)
        }));
    }
    let mut committed = HashSet::new();
    for writer in writers {
        committed.extend(writer.await.expect("writer"));
    }
    let mut followed = Followed {
        seen: Vec::new(),
        gap_free: true,
    };
    for reader in readers {
        let (seen, gap_free) = reader.await.expect("reader");
        followed.seen.push(seen);
        followed.gap_free &= gap_free;
    }
    (committed, followed)
}

/// Ids committed that a reader never saw.
fn skipped(committed: &HashSet<String>, seen: &[String]) -> usize {
    let seen: HashSet<&String> = seen.iter().collect();
    committed.iter().filter(|id| !seen.contains(id)).count()
}

async fn store_on(database: &TestDatabase) -> Arc<PostgresStore> {
    Arc::new(
        PostgresStore::connect_with_pool_size(&database.url, COMMITTERS + READERS + 2)
            .await
            .expect("connect"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_many_concurrent_committers_never_make_a_cursor_reader_skip() {
    let database = TestDatabase::create().await;
    let store = store_on(&database).await;
    let (committed, followed) = commit_and_follow(Arc::clone(&store)).await;
    assert!(committed.len() > COMMITTERS * BATCHES_PER_COMMITTER);
    for seen in &followed.seen {
        assert_eq!(skipped(&committed, seen), 0, "a reader skipped activity");
        assert_eq!(seen.len(), committed.len(), "a reader saw activity twice");
    }
    assert!(followed.gap_free, "sequence numbers had a gap or a repeat");
}

/// The control: with sequence numbers from a global sequence (drawn before the commit, made
/// visible in whatever order the commits finish), the same readers skip activity for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_a_global_sequence_would_let_readers_skip_and_the_check_catches_it() {
    let database = TestDatabase::create().await;
    let store = store_on(&database).await;
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    // Same signature, but: no row lock, numbers from one global sequence, and a short pause
    // between drawing numbers and committing (any real commit has one: I/O, the network).
    client
        .batch_execute(
            "CREATE SEQUENCE global_activity_sequence; \
             CREATE OR REPLACE FUNCTION tidemark_commit( \
                 p_subscription BIGINT, p_lease_token BIGINT, p_ids TEXT[], p_times BIGINT[], \
                 p_bodies TEXT[], p_v1_types TEXT[], p_v1s TEXT[], p_v1_at BIGINT[], \
                 p_v1_len BIGINT[], p_checkpoint TEXT, p_watermark BIGINT, p_now BIGINT, \
                 OUT appended BIGINT, OUT duplicates BIGINT, OUT last_sequence BIGINT) \
             LANGUAGE plpgsql AS $$ \
             BEGIN \
                 INSERT INTO activity (subscription_id, sequence, activity_id, occurred_at, committed_at, body) \
                 SELECT p_subscription, nextval('global_activity_sequence'), t.id, t.ts, p_now, t.body \
                   FROM unnest(p_ids, p_times, p_bodies) WITH ORDINALITY AS t(id, ts, body, ord) \
                  ORDER BY t.ord \
                 ON CONFLICT DO NOTHING; \
                 GET DIAGNOSTICS appended = ROW_COUNT; \
                 duplicates := COALESCE(array_length(p_ids, 1), 0) - appended; \
                 last_sequence := currval('global_activity_sequence'); \
                 PERFORM pg_sleep(random() * 0.004); \
             END; $$;",
        )
        .await
        .expect("install the global-sequence commit");
    // Whether a reader lands between two commits is up to timing: a few rounds make the
    // control certain (one round nearly always shows it).
    let mut worst = 0;
    let mut rounds = 0;
    let mut total = 0;
    while worst == 0 && rounds < 5 {
        rounds += 1;
        let (committed, followed) = commit_and_follow(Arc::clone(&store)).await;
        total = committed.len();
        worst = followed
            .seen
            .iter()
            .map(|seen| skipped(&committed, seen))
            .max()
            .unwrap_or(0);
    }
    assert!(
        worst > 0,
        "with a global sequence some reader should have skipped activity; the check would not \
         catch the bug it exists for"
    );
    eprintln!("global sequence: a reader skipped {worst} of {total} activities (round {rounds})");
}
