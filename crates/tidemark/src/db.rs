//! Parsing `--db` URLs and opening the store they name.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use tidemark_store::{SqliteStore, Store};

/// The default database: a SQLite file under `./tidemark-data/`.
pub const DEFAULT_DB: &str = "sqlite://tidemark-data/tidemark.db";

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `sqlite://PATH` (relative or absolute).
    Sqlite(PathBuf),
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
            bail!("not_implemented: the PostgreSQL store is not built yet (use sqlite://PATH)");
        }
        bail!("unsupported database URL `{text}`: expected sqlite://PATH")
    }
}

/// Opens the store, creating the SQLite file's directory if needed.
pub fn open(url: &DbUrl) -> anyhow::Result<Arc<dyn Store>> {
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
        let postgres = "postgres://x".parse::<DbUrl>().expect_err("not yet");
        assert!(postgres.to_string().contains("not_implemented"));
        assert!("mysql://x".parse::<DbUrl>().is_err());
    }
}
