//! `tidemark migrate`: moves a whole SQLite store into an empty PostgreSQL database, for a
//! deployment that outgrows one machine.
//!
//! The copy itself is [`tidemark_store::copy_sqlite_to_postgres`] (one snapshot, one
//! transaction, ids, sequence numbers and the cursor key unchanged); this module parses the two
//! URLs, shows a progress bar per table on stderr and prints what was copied. A URL's password
//! is never printed, and both URLs are taken as plain text so that even clap's own errors
//! cannot echo one.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use tidemark_store::{CopyProgress, CopyReport};

use crate::db::{redact, DbUrl};

/// Options of `tidemark migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The SQLite store to copy, e.g. `sqlite://tidemark-data/tidemark.db`. It is only read;
    /// stop the service using it first, or activity committed during the copy stays behind.
    #[arg(long, env = "TIDEMARK_MIGRATE_FROM", value_name = "sqlite://PATH")]
    from: String,
    /// The empty PostgreSQL database to copy into, e.g.
    /// `postgres://tidemark:PASSWORD@db.internal:5432/tidemark`. Its schema is created if
    /// needed; a database that already holds Tidemark data is refused.
    #[arg(
        long,
        env = "TIDEMARK_MIGRATE_TO",
        hide_env_values = true,
        value_name = "postgres://USER@HOST/DB"
    )]
    to: String,
}

/// Parses `--from` and `--to`: a SQLite file and a PostgreSQL URL, in that order.
fn parse(args: &MigrateArgs) -> anyhow::Result<(PathBuf, String)> {
    let from = match args.from.parse::<DbUrl>().context("--from")? {
        DbUrl::Sqlite(path) => path,
        DbUrl::Postgres(_) => {
            bail!("--from must name a SQLite store (sqlite://PATH): migrate copies SQLite into PostgreSQL")
        }
    };
    let to = match args.to.parse::<DbUrl>().context("--to")? {
        DbUrl::Postgres(url) => url,
        DbUrl::Sqlite(_) => bail!(
            "--to must name a PostgreSQL database (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE): \
             migrate copies SQLite into PostgreSQL"
        ),
    };
    Ok((from, to))
}

/// Runs the copy and prints its summary.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let (from, to) = parse(&args)?;
    let shown_to = redact(&to);
    eprintln!("copying {} into {shown_to}", from.display());
    let mut bars = Bars::new();
    let report =
        tidemark_store::copy_sqlite_to_postgres(&from, &to, |progress| bars.show(progress)).await;
    bars.stop();
    let report = report.with_context(|| format!("migrating {} to {shown_to}", from.display()))?;
    print!("{}", summary(&report));
    println!("the store is ready: start the nodes with --db {shown_to}");
    Ok(())
}

/// Progress on stderr: one bar per table, stacked, each left on screen when its table is done.
struct Bars {
    all: indicatif::MultiProgress,
    current: Option<indicatif::ProgressBar>,
}

impl Bars {
    fn new() -> Self {
        Bars {
            all: indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr()),
            current: None,
        }
    }

    fn show(&mut self, progress: CopyProgress) {
        let same_table = self
            .current
            .as_ref()
            .is_some_and(|current| current.prefix() == progress.table);
        if !same_table {
            if let Some(done) = self.current.take() {
                done.finish();
            }
            let fresh = self.all.add(indicatif::ProgressBar::new(progress.total));
            fresh.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>18} [{bar:30}] {human_pos}/{human_len} rows, {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            fresh.set_prefix(progress.table);
            self.current = Some(fresh);
        }
        if let Some(current) = &self.current {
            current.set_position(progress.copied);
        }
    }

    /// Leaves the last bar as it is (complete, or where the copy stopped).
    fn stop(&mut self) {
        if let Some(current) = self.current.take() {
            current.abandon();
        }
    }
}

/// Rows per table and the time taken, as printed at the end.
fn summary(report: &CopyReport) -> String {
    let mut text = String::new();
    for (table, rows) in &report.tables {
        text.push_str(&format!("{table:<18} {rows:>12}\n"));
    }
    let total: u64 = report.tables.iter().map(|(_, rows)| rows).sum();
    text.push_str(&format!(
        "copied {total} rows in {:.1} s\n",
        report.elapsed.as_secs_f64()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(from: &str, to: &str) -> MigrateArgs {
        MigrateArgs {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn test_from_must_be_sqlite_and_to_postgres() {
        let (path, url) = parse(&args("sqlite://a/b.db", "postgres://u:pw@h/db")).expect("ok");
        assert_eq!(path, PathBuf::from("a/b.db"));
        assert_eq!(url, "postgres://u:pw@h/db");
        for (from, to, expected) in [
            (
                "postgres://h/db",
                "postgres://h/db",
                "--from must name a SQLite",
            ),
            (
                "sqlite://a.db",
                "sqlite://b.db",
                "--to must name a PostgreSQL",
            ),
            ("a.db", "postgres://h/db", "--from"),
            ("sqlite://a.db", "mysql://u:hunter2@h/db", "--to"),
        ] {
            let error = format!("{:#}", parse(&args(from, to)).expect_err(to));
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn test_summary_lists_rows_per_table_and_seconds() {
        let report = CopyReport {
            tables: vec![("applications", 2), ("activity", 1_000_000)],
            elapsed: std::time::Duration::from_millis(12_340),
        };
        let text = summary(&report);
        assert!(text.contains("applications                  2\n"), "{text}");
        assert!(text.contains("activity                1000000\n"), "{text}");
        assert!(text.ends_with("copied 1000002 rows in 12.3 s\n"), "{text}");
    }
}
