//! The manifest: what one scan of the directory saw, keyed by relative path, and its
//! checkpoint form.
//!
//! A manifest straight from a scan has one record per path. A manifest read back from an
//! intermediate checkpoint (a paged poll, `more: true`) may transiently hold two records at one
//! path (say, a file renamed over another whose delete is still to be emitted); the diff matches
//! records by path *and* identity, so that is harmless.

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{debug, warn};

/// The checkpoint format version this build writes and reads.
pub(super) const CHECKPOINT_VERSION: u32 = 1;

/// Length of the ids derived from hashes (22 base64url characters = 132 bits).
const HASH_ID_LEN: usize = 22;

/// What an entry is. Symlinks (never followed) count as files; sockets, FIFOs and device nodes
/// are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) enum Kind {
    /// A regular file or a symlink.
    #[serde(rename = "f")]
    File,
    /// A directory.
    #[serde(rename = "d")]
    Folder,
}

impl Kind {
    /// The Kloudless object `type`.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Folder => "folder",
        }
    }
}

/// What makes an entry the same object across renames: device, inode and, where the
/// filesystem records it, birth time (which tells a reused inode number from the original).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Identity {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Birth time in ns since the Unix epoch, if the filesystem gives one.
    pub birth_ns: Option<i64>,
}

impl Identity {
    /// The identity of whatever `metadata` describes.
    pub(super) fn of(metadata: &Metadata) -> Self {
        Identity {
            dev: metadata.dev(),
            ino: metadata.ino(),
            birth_ns: metadata.created().ok().map(system_time_ns),
        }
    }

    /// The stable object id used as the Kloudless `id` of the file or folder.
    pub(super) fn object_id(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"tidemark/local/object\0");
        self.hash_into(&mut hasher);
        hash_id(&hasher)
    }

    /// Feeds the identity into a hash, unambiguously.
    pub(super) fn hash_into(&self, hasher: &mut blake3::Hasher) {
        hasher.update(&self.dev.to_le_bytes());
        hasher.update(&self.ino.to_le_bytes());
        match self.birth_ns {
            Some(ns) => hasher.update(&[1]).update(&ns.to_le_bytes()),
            None => hasher.update(&[0]),
        };
    }
}

/// The first [`HASH_ID_LEN`] characters of the base64url form of a hash.
pub(super) fn hash_id(hasher: &blake3::Hasher) -> String {
    let mut text = URL_SAFE_NO_PAD.encode(hasher.finalize().as_bytes());
    text.truncate(HASH_ID_LEN);
    text
}

/// What the scan recorded about one file or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// File or folder.
    pub kind: Kind,
    /// Which object this is.
    pub identity: Identity,
    /// Size in bytes (`st_size`; meaningless for folders).
    pub size: u64,
    /// Last content change, ns since the epoch.
    pub mtime_ns: i64,
    /// Last inode change (content, permissions, rename), ns since the epoch.
    pub ctime_ns: i64,
}

impl Entry {
    /// The entry for `metadata` (not following symlinks), or `None` for special files.
    pub(super) fn from_metadata(metadata: &Metadata) -> Option<Self> {
        let file_type = metadata.file_type();
        let kind = if file_type.is_dir() {
            Kind::Folder
        } else if file_type.is_file() || file_type.is_symlink() {
            Kind::File
        } else {
            return None;
        };
        Some(Entry {
            kind,
            identity: Identity::of(metadata),
            size: metadata.size(),
            mtime_ns: unix_ns(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: unix_ns(metadata.ctime(), metadata.ctime_nsec()),
        })
    }

    /// What the diff matches on: the same identity and the same kind (a file and a folder with
    /// one inode number are a reused inode, never the same object).
    pub(super) fn key(&self) -> (Identity, Kind) {
        (self.identity, self.kind)
    }

    /// The best creation time we have: birth time, else mtime.
    pub(super) fn created_or_modified_ns(&self) -> i64 {
        self.identity.birth_ns.unwrap_or(self.mtime_ns)
    }

    /// Whether a file's content changed (size or mtime). Folders never "change": their mtime
    /// only reflects children coming and going, which are activities of their own.
    pub(super) fn content_differs(&self, other: &Entry) -> bool {
        self.kind == Kind::File && (self.size != other.size || self.mtime_ns != other.mtime_ns)
    }

    /// Feeds every field into a hash, unambiguously.
    pub(super) fn hash_into(&self, hasher: &mut blake3::Hasher) {
        hasher.update(self.kind.as_str().as_bytes()).update(&[0]);
        self.identity.hash_into(hasher);
        hasher.update(&self.size.to_le_bytes());
        hasher.update(&self.mtime_ns.to_le_bytes());
        hasher.update(&self.ctime_ns.to_le_bytes());
    }

    /// The `raw.object` of an activity about this entry at `path`.
    pub(super) fn raw(&self, path: &str) -> Value {
        json!({
            "path": path,
            "kind": self.kind.as_str(),
            "dev": self.identity.dev,
            "ino": self.identity.ino,
            "birth_ns": self.identity.birth_ns,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "ctime_ns": self.ctime_ns,
        })
    }
}

/// One manifest line: an entry at a relative path (`/`-separated, no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// Path relative to the monitored directory.
    pub path: String,
    /// What is there.
    pub entry: Entry,
}

/// Everything under the monitored directory, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Manifest {
    /// Identity of the monitored directory itself when the manifest was taken.
    pub root: Option<Identity>,
    /// The records, sorted by path (then identity).
    pub records: Vec<Record>,
}

/// The checkpoint's JSON shape. Entries are arrays to keep it compact:
/// `[path, "f"|"d", dev, ino, birth_ns|null, size, mtime_ns, ctime_ns]`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointWire {
    v: u32,
    root: Option<(u64, u64, Option<i64>)>,
    entries: Vec<EntryRow>,
}

#[derive(Serialize, Deserialize)]
struct EntryRow(String, Kind, u64, u64, Option<i64>, u64, i64, i64);

#[derive(Deserialize)]
struct VersionProbe {
    v: Option<Value>,
}

impl Manifest {
    /// Sorts the records into their canonical order.
    pub(super) fn sort(&mut self) {
        self.records.sort_by(|a, b| {
            (a.path.as_str(), a.entry.key()).cmp(&(b.path.as_str(), b.entry.key()))
        });
    }

    /// The checkpoint text.
    pub(super) fn encode(&self) -> String {
        let wire = CheckpointWire {
            v: CHECKPOINT_VERSION,
            root: self.root.map(|id| (id.dev, id.ino, id.birth_ns)),
            entries: self
                .records
                .iter()
                .map(|Record { path, entry }| {
                    EntryRow(
                        path.clone(),
                        entry.kind,
                        entry.identity.dev,
                        entry.identity.ino,
                        entry.identity.birth_ns,
                        entry.size,
                        entry.mtime_ns,
                        entry.ctime_ns,
                    )
                })
                .collect(),
        };
        serde_json::to_string(&wire).expect("a manifest always serializes")
    }

    /// Reads a checkpoint written by [`Manifest::encode`].
    ///
    /// # Errors
    /// A message saying what is wrong: not JSON, no or an unknown version, a malformed entry.
    pub(super) fn decode(text: &str) -> Result<Self, String> {
        let probe: VersionProbe = serde_json::from_str(text)
            .map_err(|e| format!("local checkpoint is not a JSON object: {e}"))?;
        match probe.v {
            Some(Value::Number(n)) if n.as_u64() == Some(u64::from(CHECKPOINT_VERSION)) => {}
            Some(other) => {
                return Err(format!(
                    "local checkpoint has unsupported version {other} (this build reads version {CHECKPOINT_VERSION})"
                ))
            }
            None => return Err("local checkpoint has no version field `v`".to_owned()),
        }
        let wire: CheckpointWire = serde_json::from_str(text).map_err(|e| {
            format!("local checkpoint version {CHECKPOINT_VERSION} is malformed: {e}")
        })?;
        let mut records = Vec::with_capacity(wire.entries.len());
        for EntryRow(path, kind, dev, ino, birth_ns, size, mtime_ns, ctime_ns) in wire.entries {
            if !is_clean_relative_path(&path) {
                return Err(format!(
                    "local checkpoint holds an invalid relative path {path:?}"
                ));
            }
            records.push(Record {
                path,
                entry: Entry {
                    kind,
                    identity: Identity { dev, ino, birth_ns },
                    size,
                    mtime_ns,
                    ctime_ns,
                },
            });
        }
        let mut manifest = Manifest {
            root: wire
                .root
                .map(|(dev, ino, birth_ns)| Identity { dev, ino, birth_ns }),
            records,
        };
        manifest.sort();
        Ok(manifest)
    }

    /// Follows a remount: when the monitored directory is the same (inode and birth time) but
    /// its device number changed (device numbers of some filesystems are assigned at mount
    /// time), every entry on the old device is moved to the new one, so a reboot does not turn
    /// every file into a "replaced" one.
    pub(super) fn follow_device_renumbering(&mut self, current_root: Identity) {
        let Some(old_root) = self.root else {
            return;
        };
        if old_root.dev == current_root.dev
            || old_root.ino != current_root.ino
            || old_root.birth_ns != current_root.birth_ns
        {
            return;
        }
        debug!(
            old_dev = old_root.dev,
            new_dev = current_root.dev,
            "monitored directory changed device number, following it"
        );
        for record in &mut self.records {
            if record.entry.identity.dev == old_root.dev {
                record.entry.identity.dev = current_root.dev;
            }
        }
        self.root = Some(current_root);
        self.sort();
    }
}

/// Whether `path` is a relative path of plain `/`-separated names.
fn is_clean_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Why the monitored directory itself could not be scanned.
#[derive(Debug)]
pub(super) enum RootError {
    /// It does not exist (any more).
    NotFound,
    /// It exists and is not a directory.
    NotADirectory,
    /// The process may not read it.
    PermissionDenied(io::Error),
    /// Anything else (I/O error, too many open files, ...).
    Other(io::Error),
}

impl RootError {
    /// Classifies an I/O error on the monitored directory itself.
    pub(super) fn from_io(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::NotFound => RootError::NotFound,
            io::ErrorKind::NotADirectory => RootError::NotADirectory,
            io::ErrorKind::PermissionDenied => RootError::PermissionDenied(error),
            _ => RootError::Other(error),
        }
    }
}

/// Checks that `root` is a directory this process can list, returning its metadata.
///
/// # Errors
/// What is wrong with it.
pub(super) fn check_root(root: &Path) -> Result<Metadata, RootError> {
    let metadata = fs::metadata(root).map_err(RootError::from_io)?;
    if !metadata.is_dir() {
        return Err(RootError::NotADirectory);
    }
    fs::read_dir(root).map_err(RootError::from_io)?;
    Ok(metadata)
}

/// The result of walking the tree once.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Identity of the monitored directory.
    pub root: Option<Identity>,
    /// Every entry seen, by relative path.
    pub entries: BTreeMap<String, Entry>,
    /// Folders whose listing failed (other than by vanishing): what the previous manifest had
    /// below them is carried over rather than reported deleted.
    pub unlisted_folders: Vec<String>,
    /// Entries that could not be examined (other than by vanishing): the previous manifest's
    /// record at that path, and anything below it, is carried over.
    pub unreadable_entries: Vec<String>,
}

impl Scan {
    /// Adds to the scan what `previous` had where this scan could not look, so that an
    /// unreadable folder does not look like a deleted one.
    pub(super) fn carry_over_unreadable(&mut self, previous: &Manifest) {
        let mut carried = 0usize;
        let prefixes: Vec<String> = self
            .unlisted_folders
            .iter()
            .map(|folder| format!("{folder}/"))
            .collect();
        for record in &previous.records {
            let below_unlisted = prefixes
                .iter()
                .any(|prefix| record.path.starts_with(prefix));
            let at_or_below_unreadable = self
                .unreadable_entries
                .iter()
                .any(|path| is_at_or_below(&record.path, path));
            if (below_unlisted || at_or_below_unreadable)
                && !self.entries.contains_key(&record.path)
            {
                self.entries
                    .insert(record.path.clone(), record.entry.clone());
                carried += 1;
            }
        }
        if carried > 0 {
            debug!(carried, "carried over entries that could not be read");
        }
    }

    /// The scan as a manifest.
    pub(super) fn into_manifest(self) -> Manifest {
        Manifest {
            root: self.root,
            records: self
                .entries
                .into_iter()
                .map(|(path, entry)| Record { path, entry })
                .collect(),
        }
    }
}

/// Walks the tree under `root` without following symlinks. Entries that vanish mid-scan or
/// cannot be read are skipped with a log line; only a problem with `root` itself fails.
///
/// # Errors
/// [`RootError`] when `root` is gone, not a directory, or cannot be listed.
pub(super) fn scan(root: &Path) -> Result<Scan, RootError> {
    let root_metadata = check_root(root)?;
    let mut scan = Scan {
        root: Some(Identity::of(&root_metadata)),
        ..Scan::default()
    };
    let mut folders_to_list = vec![String::new()];
    while let Some(folder) = folders_to_list.pop() {
        let absolute = if folder.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&folder)
        };
        let listing = match fs::read_dir(&absolute) {
            Ok(listing) => listing,
            Err(error) if folder.is_empty() => return Err(RootError::from_io(error)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                // Renamed or deleted since we saw it: the next scan finds out which.
                debug!(path = %folder, "folder vanished during scan");
                scan.entries.remove(&folder);
                continue;
            }
            Err(error) => {
                warn!(path = %folder, %error, "cannot list folder, keeping its previous contents");
                scan.unlisted_folders.push(folder);
                continue;
            }
        };
        for item in listing {
            let item = match item {
                Ok(item) => item,
                Err(error) => {
                    warn!(path = %folder, %error, "folder listing failed midway, keeping its previous contents");
                    scan.unlisted_folders.push(folder.clone());
                    break;
                }
            };
            let file_name = item.file_name();
            let Some(name) = file_name.to_str() else {
                warn!(folder = %folder, name = ?file_name, "skipping entry whose name is not UTF-8");
                continue;
            };
            let path = if folder.is_empty() {
                name.to_owned()
            } else {
                format!("{folder}/{name}")
            };
            // `DirEntry::metadata` does not follow symlinks.
            let metadata = match item.metadata() {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    debug!(%path, "entry vanished during scan");
                    continue;
                }
                Err(error) => {
                    warn!(%path, %error, "cannot read entry, keeping its previous state");
                    scan.unreadable_entries.push(path);
                    continue;
                }
            };
            let Some(entry) = Entry::from_metadata(&metadata) else {
                debug!(%path, "skipping special file");
                continue;
            };
            if entry.kind == Kind::Folder {
                folders_to_list.push(path.clone());
            }
            scan.entries.insert(path, entry);
        }
    }
    Ok(scan)
}

/// `secs` + `nsecs` as ns since the epoch (saturating far outside 1678..2262).
fn unix_ns(secs: i64, nsecs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsecs)
}

/// A `SystemTime` as ns since the epoch (negative before it).
pub(super) fn system_time_ns(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |ns| -ns),
    }
}

/// The last `/`-separated component of a relative path.
pub(super) fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// The parent of a relative path (`""` for a top-level entry).
pub(super) fn parent_path(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Whether `path` is `ancestor` or lies below it.
pub(super) fn is_at_or_below(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// How many components a relative path has.
pub(super) fn depth(path: &str) -> usize {
    path.split('/').count()
}
