//! The chaos test, short form (issue 8): three `tidemark serve` processes on one PostgreSQL
//! database, 40 subscriptions (Jive and Onna) with activity flowing, and for 30 s nodes killed
//! with `kill -9` (one, all at once, or while starting), frozen past their leases, their
//! database connections cut, the webhook receiver refusing, and the simulators misbehaving.
//! Then every upstream change is in its stream exactly once and in order with sequence numbers
//! 1..n, every reader saw every stream whole, ranges read below the watermark never changed,
//! every subscription got a webhook after its last commit, every subscription was polled
//! again, and no lease is left held.
//!
//! It runs `tidemark bench chaos` (the harness in `src/bench/chaos.rs`) with small flags; the
//! long form is that command with its defaults (BENCHMARKS.md). Needs
//! `TIDEMARK_TEST_POSTGRES_URL` (set by `./scripts/test`); without it the test fails, never
//! skips.

use std::process::Command;
use std::time::Instant;

use tidemark_store::pgtest::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_nodes_killed_and_restarted_under_load_lose_repeat_and_strand_nothing() {
    let database = TestDatabase::create().await;
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["bench", "chaos", "--db", &database.url])
        .args([
            "--nodes",
            "3",
            "--subscriptions",
            "40",
            "--duration-secs",
            "30",
        ])
        .args([
            "--rate",
            "30",
            "--kill-interval-ms",
            "2000",
            "--max-down-ms",
            "1000",
        ])
        .args([
            "--lease-ttl-secs",
            "3",
            "--readers",
            "4",
            "--settle-timeout-secs",
            "60",
        ])
        .env("TIDEMARK_LOG", "warn")
        .output()
        .expect("tidemark bench chaos runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the chaos run failed ({}) after {:?}:\n{stdout}\n{stderr}",
        output.status,
        started.elapsed()
    );
    let result = stdout
        .lines()
        .find(|line| line.starts_with("result: "))
        .expect("a result line");
    for zero in [
        "duplicates=0",
        "lost=0",
        "skipped=0",
        "out_of_order=0",
        "sequence_gaps=0",
        "reader_repeats=0",
        "ranges_changed=0",
        "late_webhooks=0",
        "stuck_leases=0",
        "unclean_stops=0",
    ] {
        assert!(result.contains(&format!(" {zero} ")), "{zero} in: {result}");
    }
    assert!(!result.contains("kills=0 "), "no node was killed: {result}");
    assert!(
        !result.contains(" activities=0 "),
        "no activity flowed: {result}"
    );
}
