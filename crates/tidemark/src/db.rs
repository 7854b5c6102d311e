//! Parsing `--db` URLs and opening the store they name.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use tidemark_store::{PostgresStore, SqliteStore, Store};

/// The default database: a SQLite file under `./tidemark-data/`.
pub const DEFAULT_DB: &str = "sqlite://tidemark-data/tidemark.db";

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `sqlite://PATH` (relative or absolute).
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/database` (or `postgresql://`), shared by nodes.
    Postgres(String),
}

impl std::fmt::Debug for DbUrl {
    /// Never prints a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DbUrl::Postgres(url) => write!(f, "{}", redact(url)),
        }
    }
}

/// The URL with any password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl std::str::FromStr for DbUrl {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        if let Some(path) = text.strip_prefix("sqlite://") {
            if path.is_empty() {
                bail!("`{text}`: sqlite:// needs a file path, e.g. sqlite://tidemark-data/tidemark.db");
            }
            return Ok(DbUrl::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            // Checked when opened, not here: clap echoes a value it could not parse, password
            // and all.
            return Ok(DbUrl::Postgres(text.to_owned()));
        }
        bail!("unsupported database URL `{}`: expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE", redact(text))
    }
}

/// Opens the store, creating the SQLite file's directory if needed, or connecting to
/// PostgreSQL (and migrating its schema) with `pool_size` connections.
pub async fn open(url: &DbUrl) -> anyhow::Result<Arc<dyn Store>> {
    open_with_pool(url, tidemark_store::POSTGRES_DEFAULT_POOL_SIZE).await
}

/// [`open`] with a PostgreSQL pool of `pool_size` connections (ignored for SQLite).
pub async fn open_with_pool(url: &DbUrl, pool_size: usize) -> anyhow::Result<Arc<dyn Store>> {
    match url {
        DbUrl::Sqlite(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let store = SqliteStore::open(path)
                .with_context(|| format!("opening SQLite store {}", path.display()))?;
            Ok(Arc::new(store))
        }
        DbUrl::Postgres(text) => {
            if text.parse::<tidemark_store::PostgresConfig>().is_err() {
                bail!(
                    "invalid PostgreSQL URL `{}` (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)",
                    redact(text)
                );
            }
            let store = PostgresStore::connect_with_pool_size(text, pool_size)
                .await
                .with_context(|| format!("opening PostgreSQL store {}", redact(text)))?;
            Ok(Arc::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_db_urls() {
        assert_eq!(
            "sqlite://a/b.db".parse::<DbUrl>().expect("ok"),
            DbUrl::Sqlite("a/b.db".into())
        );
        assert_eq!(
            "sqlite:///abs.db".parse::<DbUrl>().expect("ok"),
            DbUrl::Sqlite("/abs.db".into())
        );
        assert!("sqlite://".parse::<DbUrl>().is_err());
        assert_eq!(
            "postgres://u:pw@127.0.0.1:5432/tidemark"
                .parse::<DbUrl>()
                .expect("ok"),
            DbUrl::Postgres("postgres://u:pw@127.0.0.1:5432/tidemark".into())
        );
        assert!("postgresql://h/db".parse::<DbUrl>().is_ok());
        assert!("mysql://x".parse::<DbUrl>().is_err());
    }

    #[tokio::test]
    async fn test_a_bad_postgres_url_is_refused_without_its_password() {
        let url: DbUrl = "postgres://u:pw@h:notaport/db"
            .parse()
            .expect("parsed later");
        let error = open(&url).await.err().expect("bad port").to_string();
        assert!(error.contains("invalid PostgreSQL URL"), "{error}");
        assert!(!error.contains(":pw@"), "{error}");
    }

    #[test]
    fn test_passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            format!("{:?}", DbUrl::Postgres("postgres://a:b@c/d".into())),
            "postgres://a:***@c/d"
        );
    }
}
