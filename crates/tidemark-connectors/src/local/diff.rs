//! From two manifests to ordered changes, and from changes to [`Activity`].
//!
//! [`diff`] compares the base manifest (the checkpoint) with the current scan and returns the
//! changes in emission order. [`render`] replays the first `limit` of them on a tree built from
//! the base (each node has a parent node and a name; paths are derived), producing one activity
//! per change and the manifest to checkpoint. Because paths are derived, applying a folder's
//! move carries its contents along, and every activity's paths are those of the tree at that
//! point of the story: a rename inside a folder that moves later reads
//! `rename /a/x -> /a/y`, then `move /a -> /b/a`.
//!
//! Every change touches only its own node, so "the base with the first k changes applied"
//! diffs against the same scan to exactly the remaining changes: that is what makes paging
//! (`more: true`) lossless.

use std::collections::{HashMap, HashSet};

use chrono::DateTime;
use serde_json::{json, Value};
use tidemark_model::{Activity, EventCategory, EventSubtype, EventType};

use super::manifest::{
    depth, file_name, hash_id, is_at_or_below, parent_path, Entry, Identity, Kind, Manifest, Record,
};

/// What happened to one file or folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Action {
    /// Gone.
    Delete,
    /// Same folder, new name.
    Rename,
    /// Another folder.
    Move,
    /// New.
    Add,
    /// Content changed, or replaced in place by a new object of the same kind.
    Update,
}

impl Action {
    /// Order among changes with the same timestamp: deletes, renames/moves, adds, updates.
    fn rank(self) -> u8 {
        match self {
            Action::Delete => 0,
            Action::Rename | Action::Move => 1,
            Action::Add => 2,
            Action::Update => 3,
        }
    }

    fn tag(self) -> &'static [u8] {
        match self {
            Action::Delete => b"delete",
            Action::Rename => b"rename",
            Action::Move => b"move",
            Action::Add => b"add",
            Action::Update => b"update",
        }
    }

    fn event(self) -> (EventType, EventSubtype) {
        match self {
            Action::Delete => (EventType::Delete, EventSubtype::Unknown),
            Action::Rename => (EventType::Update, EventSubtype::Rename),
            Action::Move => (EventType::Update, EventSubtype::Move),
            Action::Add => (EventType::Add, EventSubtype::Unknown),
            Action::Update => (EventType::Update, EventSubtype::Unknown),
        }
    }
}

/// One change: which base record (`old`) and/or current record (`new`) it is about.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub action: Action,
    pub old: Option<usize>,
    pub new: Option<usize>,
    pub timestamp_ns: i64,
    /// A move into a folder added by this same diff: it sorts like an add below that folder.
    pub into_added_folder: bool,
}

impl Change {
    fn new(action: Action, old: Option<usize>, new: Option<usize>, timestamp_ns: i64) -> Self {
        Change {
            action,
            old,
            new,
            timestamp_ns,
            into_added_folder: false,
        }
    }
}

/// All changes between two manifests.
#[derive(Debug, Default)]
pub(super) struct Diff {
    /// The changes, in emission order.
    pub changes: Vec<Change>,
    /// For each current record, the base record that is the same object (same path, moved,
    /// or replaced in place), if any.
    pub current_to_base: Vec<Option<usize>>,
    /// How many records changed path only because an ancestor folder moved (no activity).
    pub carried_along: usize,
}

/// Path lookups over a base manifest and a scan.
struct Index<'a> {
    base: &'a [Record],
    current: &'a [Record],
    base_by_path: HashMap<&'a str, Vec<usize>>,
    current_by_path: HashMap<&'a str, usize>,
}

impl<'a> Index<'a> {
    fn new(base: &'a Manifest, current: &'a Manifest) -> Self {
        let mut base_by_path: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, record) in base.records.iter().enumerate() {
            base_by_path.entry(&record.path).or_default().push(index);
        }
        let current_by_path = current
            .records
            .iter()
            .enumerate()
            .map(|(index, record)| (record.path.as_str(), index))
            .collect();
        Index {
            base: &base.records,
            current: &current.records,
            base_by_path,
            current_by_path,
        }
    }

    /// The first folder record at `path` in the base.
    fn base_folder(&self, path: &str) -> Option<usize> {
        self.base_by_path
            .get(path)?
            .iter()
            .copied()
            .find(|&index| self.base[index].entry.kind == Kind::Folder)
    }

    /// The folder record at `path` in the scan.
    fn current_folder(&self, path: &str) -> Option<usize> {
        let index = *self.current_by_path.get(path)?;
        (self.current[index].entry.kind == Kind::Folder).then_some(index)
    }

    /// Whether `old` (a base path) and `new` (a current path) sit in the same folder object.
    fn same_parent(&self, old: &str, new: &str) -> bool {
        let (old_parent, new_parent) = (parent_path(old), parent_path(new));
        if old_parent.is_empty() || new_parent.is_empty() {
            return old_parent.is_empty() && new_parent.is_empty();
        }
        let Some(new_parent_index) = self.current_folder(new_parent) else {
            return false;
        };
        let wanted = self.current[new_parent_index].entry.identity;
        self.base_by_path.get(old_parent).is_some_and(|indices| {
            indices.iter().any(|&index| {
                let entry = &self.base[index].entry;
                entry.kind == Kind::Folder && entry.identity == wanted
            })
        })
    }
}

/// Compares `base` with `current` (a fresh scan) and returns the changes in emission order.
///
/// Matching, in this order: same path and identity (content update for files); same identity
/// elsewhere (rename, move, or nothing when only an ancestor moved); same path, other identity
/// (update if the same kind, else delete + add); the rest are deletes and adds.
pub(super) fn diff(base: &Manifest, current: &Manifest, scan_time_ns: i64) -> Diff {
    let index = Index::new(base, current);
    let (base_records, current_records) = (&base.records, &current.records);
    let mut base_matched = vec![false; base_records.len()];
    let mut current_to_base: Vec<Option<usize>> = vec![None; current_records.len()];
    let mut changes = Vec::new();
    let mut carried_along = 0;

    // Same path, same object.
    for (ci, record) in current_records.iter().enumerate() {
        let Some(candidates) = index.base_by_path.get(record.path.as_str()) else {
            continue;
        };
        let Some(&bi) = candidates
            .iter()
            .find(|&&bi| !base_matched[bi] && base_records[bi].entry.key() == record.entry.key())
        else {
            continue;
        };
        base_matched[bi] = true;
        current_to_base[ci] = Some(bi);
        if base_records[bi].entry.content_differs(&record.entry) {
            changes.push(Change::new(
                Action::Update,
                Some(bi),
                Some(ci),
                record.entry.mtime_ns,
            ));
        }
    }

    // Same object, another path. Records are sorted by path, so hard links pair up in order.
    let mut unmatched_base_by_key: HashMap<(Identity, Kind), Vec<usize>> = HashMap::new();
    for (bi, record) in base_records.iter().enumerate() {
        if !base_matched[bi] {
            unmatched_base_by_key
                .entry(record.entry.key())
                .or_default()
                .push(bi);
        }
    }
    let mut unmatched_current_by_key: HashMap<(Identity, Kind), Vec<usize>> = HashMap::new();
    for (ci, record) in current_records.iter().enumerate() {
        if current_to_base[ci].is_none() {
            unmatched_current_by_key
                .entry(record.entry.key())
                .or_default()
                .push(ci);
        }
    }
    for (key, base_indices) in &unmatched_base_by_key {
        let Some(current_indices) = unmatched_current_by_key.get(key) else {
            continue;
        };
        for (&bi, &ci) in base_indices.iter().zip(current_indices) {
            base_matched[bi] = true;
            current_to_base[ci] = Some(bi);
            let (old, new) = (&base_records[bi], &current_records[ci]);
            let same_parent = index.same_parent(&old.path, &new.path);
            let same_name = file_name(&old.path) == file_name(&new.path);
            match (same_parent, same_name) {
                // Only an ancestor moved: its move carries this one along.
                (true, true) => carried_along += 1,
                (true, false) => {
                    changes.push(Change::new(
                        Action::Rename,
                        Some(bi),
                        Some(ci),
                        new.entry.ctime_ns,
                    ));
                }
                (false, _) => {
                    changes.push(Change::new(
                        Action::Move,
                        Some(bi),
                        Some(ci),
                        new.entry.ctime_ns,
                    ));
                }
            }
            if old.entry.content_differs(&new.entry) {
                changes.push(Change::new(
                    Action::Update,
                    Some(bi),
                    Some(ci),
                    new.entry.mtime_ns,
                ));
            }
        }
    }

    // Same path, another object: an atomic save (write elsewhere, rename over) is an update;
    // a file replaced by a folder or the reverse is a delete and an add.
    let mut replaced: Vec<(usize, usize)> = Vec::new();
    for (ci, record) in current_records.iter().enumerate() {
        if current_to_base[ci].is_some() {
            continue;
        }
        let Some(candidates) = index.base_by_path.get(record.path.as_str()) else {
            continue;
        };
        let Some(&bi) = candidates.iter().find(|&&bi| !base_matched[bi]) else {
            continue;
        };
        base_matched[bi] = true;
        if base_records[bi].entry.kind == record.entry.kind {
            current_to_base[ci] = Some(bi);
            changes.push(Change::new(
                Action::Update,
                Some(bi),
                Some(ci),
                record.entry.mtime_ns,
            ));
        } else {
            replaced.push((bi, ci));
        }
    }

    // Adds: at the birth time (or mtime), never before the folder they appeared in, so a new
    // folder is always emitted before its contents (ties go to the shallower path).
    let mut add_timestamps: HashMap<&str, i64> = HashMap::new();
    for (ci, record) in current_records.iter().enumerate() {
        if current_to_base[ci].is_some() {
            continue;
        }
        let parent_timestamp = add_timestamps
            .get(parent_path(&record.path))
            .copied()
            .unwrap_or(i64::MIN);
        let timestamp_ns = record.entry.created_or_modified_ns().max(parent_timestamp);
        add_timestamps.insert(&record.path, timestamp_ns);
        changes.push(Change::new(Action::Add, None, Some(ci), timestamp_ns));
    }

    // Moves into a folder that is itself new come after that folder's add.
    for change in &mut changes {
        let (Action::Rename | Action::Move, Some(ci)) = (change.action, change.new) else {
            continue;
        };
        if let Some(&parent_added) = add_timestamps.get(parent_path(&current_records[ci].path)) {
            if parent_added >= change.timestamp_ns {
                change.timestamp_ns = parent_added;
                change.into_added_folder = true;
            }
        }
    }

    // Deletes: at the scan time (the first moment we know), except what was removed to make
    // way for an object of another kind at the same path, which went before that add.
    let replaced_base: HashSet<usize> = replaced.iter().map(|&(bi, _)| bi).collect();
    let replaced_deletes: Vec<(&str, i64)> = replaced
        .iter()
        .map(|&(bi, ci)| {
            let added = add_timestamps
                .get(current_records[ci].path.as_str())
                .copied()
                .unwrap_or(scan_time_ns);
            (base_records[bi].path.as_str(), added)
        })
        .collect();
    for (bi, record) in base_records.iter().enumerate() {
        if base_matched[bi] && !replaced_base.contains(&bi) {
            continue;
        }
        let timestamp_ns = replaced_deletes
            .iter()
            .filter(|(path, _)| is_at_or_below(&record.path, path))
            .map(|&(_, added)| added)
            .fold(scan_time_ns, i64::min);
        changes.push(Change::new(Action::Delete, Some(bi), None, timestamp_ns));
    }

    let sort_key = |change: &Change| {
        let path = match (change.new, change.old) {
            (Some(ci), _) => current_records[ci].path.as_str(),
            (None, Some(bi)) => base_records[bi].path.as_str(),
            (None, None) => "",
        };
        let (rank, depth_order) = match change.action {
            Action::Add => (change.action.rank(), depth(path) as i64),
            Action::Delete => (change.action.rank(), -(depth(path) as i64)),
            _ if change.into_added_folder => (Action::Add.rank(), depth(path) as i64),
            _ => (change.action.rank(), 0),
        };
        (
            change.timestamp_ns,
            rank,
            depth_order,
            path,
            change.action,
            change.old,
            change.new,
        )
    };
    changes.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    Diff {
        changes,
        current_to_base,
        carried_along,
    }
}

/// Who the activity belongs to and how to name the monitored directory.
pub(super) struct RenderContext<'a> {
    /// Numeric account id, written into every activity and object.
    pub account: i64,
    /// The monitored directory's own name (the `parent.name` of top-level entries).
    pub root_name: Option<&'a str>,
}

/// What [`render`] produced.
#[derive(Debug)]
pub(super) struct Rendered {
    /// One activity per emitted change, in emission order.
    pub activities: Vec<Activity>,
    /// The manifest to checkpoint.
    pub checkpoint: Manifest,
    /// Whether changes remain after this page.
    pub more: bool,
}

/// Where a node hangs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parent {
    /// Directly in the monitored directory.
    Root,
    /// In another node (a folder).
    Node(usize),
    /// Under a path with no folder node (yet): only in odd, transient states.
    Path(String),
}

/// One file or folder in the story being told.
#[derive(Debug, Clone)]
struct Node {
    parent: Parent,
    name: String,
    entry: Entry,
    alive: bool,
}

/// The base manifest as a tree, changed one change at a time.
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Node `i` is base record `i`; each hangs off the first folder at its parent path.
    fn new(base: &Manifest, index: &Index<'_>) -> Self {
        let nodes = base
            .records
            .iter()
            .map(|record| {
                let parent = parent_path(&record.path);
                Node {
                    parent: if parent.is_empty() {
                        Parent::Root
                    } else {
                        index
                            .base_folder(parent)
                            .map_or_else(|| Parent::Path(parent.to_owned()), Parent::Node)
                    },
                    name: file_name(&record.path).to_owned(),
                    entry: record.entry.clone(),
                    alive: true,
                }
            })
            .collect();
        Tree { nodes }
    }

    /// The node's path now.
    fn path(&self, node: usize) -> String {
        let mut names = vec![self.nodes[node].name.as_str()];
        let mut prefix = None;
        let mut parent = &self.nodes[node].parent;
        // A walk longer than the tree means a cycle, which `set_parent` never creates.
        for _ in 0..self.nodes.len() {
            match parent {
                Parent::Root => break,
                Parent::Path(path) => {
                    prefix = Some(path.as_str());
                    break;
                }
                Parent::Node(next) => {
                    names.push(self.nodes[*next].name.as_str());
                    parent = &self.nodes[*next].parent;
                }
            }
        }
        names.extend(prefix);
        names.reverse();
        names.join("/")
    }

    fn record(&self, node: usize) -> Record {
        Record {
            path: self.path(node),
            entry: self.nodes[node].entry.clone(),
        }
    }

    /// Whether hanging `node` under `parent` would put it inside itself.
    fn would_cycle(&self, node: usize, parent: usize) -> bool {
        let mut current = Some(parent);
        for _ in 0..=self.nodes.len() {
            match current {
                Some(ancestor) if ancestor == node => return true,
                Some(ancestor) => {
                    current = match self.nodes[ancestor].parent {
                        Parent::Node(next) => Some(next),
                        Parent::Root | Parent::Path(_) => None,
                    }
                }
                None => return false,
            }
        }
        true
    }

    /// The manifest of the living nodes.
    fn to_manifest(&self, root: Option<Identity>) -> Manifest {
        let mut manifest = Manifest {
            root,
            records: (0..self.nodes.len())
                .filter(|&node| self.nodes[node].alive)
                .map(|node| self.record(node))
                .collect(),
        };
        manifest.sort();
        manifest
    }
}

/// Replays the first `limit` changes of `diff` on `base`, rendering each as an activity.
///
/// With every change emitted, the checkpoint is `current`; otherwise it is `base` with exactly
/// the emitted changes applied (contents of moved folders moving with them).
pub(super) fn render(
    base: &Manifest,
    current: &Manifest,
    diff: &Diff,
    context: &RenderContext<'_>,
    limit: usize,
) -> Rendered {
    let index = Index::new(base, current);
    let mut story = Story {
        tree: Tree::new(base, &index),
        node_of_current: diff.current_to_base.clone(),
        index: &index,
        context,
    };
    let emitted = diff.changes.len().min(limit);
    let activities = diff.changes[..emitted]
        .iter()
        .filter_map(|change| story.apply(change))
        .collect();
    let more = emitted < diff.changes.len();
    let checkpoint = if more {
        story.tree.to_manifest(current.root)
    } else {
        current.clone()
    };
    Rendered {
        activities,
        checkpoint,
        more,
    }
}

/// The tree being changed, and how the scan's records map onto its nodes.
struct Story<'a> {
    tree: Tree,
    /// Current record -> node, for records already in the tree.
    node_of_current: Vec<Option<usize>>,
    index: &'a Index<'a>,
    context: &'a RenderContext<'a>,
}

impl Story<'_> {
    /// Applies one change, returning its activity.
    fn apply(&mut self, change: &Change) -> Option<Activity> {
        let scanned = change.new.map(|ci| &self.index.current[ci]);
        let (node, before) = match (change.action, change.old, scanned) {
            (Action::Add, _, Some(record)) => {
                let ci = change.new?;
                let node = self.tree.nodes.len();
                self.tree.nodes.push(Node {
                    parent: Parent::Root,
                    name: file_name(&record.path).to_owned(),
                    entry: record.entry.clone(),
                    alive: true,
                });
                self.set_parent(node, ci);
                self.node_of_current[ci] = Some(node);
                (node, None)
            }
            (Action::Delete, Some(node), _) => {
                self.tree.nodes[node].alive = false;
                (node, None)
            }
            (Action::Rename | Action::Move, Some(node), Some(record)) => {
                let before = self.snapshot(node);
                self.set_parent(node, change.new?);
                self.tree.nodes[node].name = file_name(&record.path).to_owned();
                (node, Some(before))
            }
            (Action::Update, Some(node), Some(record)) => {
                let before = self.snapshot(node);
                self.tree.nodes[node].entry = record.entry.clone();
                (node, Some(before))
            }
            (action, old, new) => {
                debug_assert!(false, "inconsistent change {action:?} {old:?} {new:?}");
                return None;
            }
        };
        // For a delete, the node is rendered as it was (it keeps its place in the tree).
        let after = self.snapshot(node);
        let (event_type, subtype) = change.action.event();
        let id = activity_id(
            change.action,
            before.as_ref().map(|(record, _)| record),
            &after.0,
            scanned.map(|record| &record.entry),
        );
        let mut activity = Activity::new(
            id,
            self.context.account,
            EventCategory::Storage,
            event_type,
            subtype,
        );
        activity.raw = Some(json!({ "object": after.0.entry.raw(&after.0.path) }));
        activity.target = Some(after.1);
        activity.previous_target = before.map(|(_, object)| object);
        activity.timestamp = Some(DateTime::from_timestamp_nanos(change.timestamp_ns));
        Some(activity)
    }

    /// Hangs `node` where the scan's record `ci` hangs: under the node of its parent folder.
    fn set_parent(&mut self, node: usize, ci: usize) {
        let parent = parent_path(&self.index.current[ci].path);
        self.tree.nodes[node].parent = if parent.is_empty() {
            Parent::Root
        } else {
            match self
                .index
                .current_by_path
                .get(parent)
                .and_then(|&pi| self.node_of_current[pi])
            {
                Some(parent_node)
                    if self.tree.nodes[parent_node].alive
                        && !self.tree.would_cycle(node, parent_node) =>
                {
                    Parent::Node(parent_node)
                }
                _ => Parent::Path(parent.to_owned()),
            }
        };
    }

    /// The node as a manifest record and as a Kloudless object, as it is now.
    fn snapshot(&self, node: usize) -> (Record, Value) {
        let record = self.tree.record(node);
        let entry = &record.entry;
        let object = json!({
            "id": entry.identity.object_id(),
            "raw_id": record.path,
            "name": file_name(&record.path),
            "type": entry.kind.as_str(),
            "size": (entry.kind == Kind::File).then_some(entry.size),
            "path": format!("/{}", record.path),
            "mime_type": null,
            "created": entry.identity.birth_ns.map(format_ns),
            "modified": format_ns(entry.mtime_ns),
            "parent": self.parent_object(node),
            "ancestors": null,
            "account": self.context.account,
            "api": "storage",
            "downloadable": entry.kind == Kind::File,
        });
        (record, object)
    }

    /// `{"id", "name"}` of the folder the node is in (`root` for the monitored directory).
    fn parent_object(&self, node: usize) -> Value {
        match &self.tree.nodes[node].parent {
            Parent::Root => json!({ "id": "root", "name": self.context.root_name }),
            Parent::Node(parent) => {
                let parent = &self.tree.nodes[*parent];
                json!({ "id": parent.entry.identity.object_id(), "name": parent.name })
            }
            Parent::Path(path) => {
                let identity = self
                    .index
                    .current_folder(path)
                    .map(|ci| &self.index.current[ci].entry.identity)
                    .or_else(|| {
                        self.index
                            .base_folder(path)
                            .map(|bi| &self.index.base[bi].entry.identity)
                    });
                json!({ "id": identity.map(Identity::object_id), "name": file_name(path) })
            }
        }
    }
}

/// A deterministic id for one change: the same base and scan always give the same id (a
/// replayed poll is absorbed by the store), and distinct changes differ in at least one hashed
/// field (a second update has another mtime or size; a rename back has swapped paths and a
/// newer ctime). The scan time is deliberately left out.
fn activity_id(
    action: Action,
    before: Option<&Record>,
    after: &Record,
    scanned: Option<&Entry>,
) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"tidemark/local/activity\0");
    hasher.update(action.tag()).update(&[0]);
    for record in [before, Some(after)] {
        match record {
            Some(record) => {
                hasher.update(&[1]);
                hasher.update(&(record.path.len() as u64).to_le_bytes());
                hasher.update(record.path.as_bytes());
                record.entry.hash_into(&mut hasher);
            }
            None => {
                hasher.update(&[0]);
            }
        }
    }
    match scanned {
        Some(entry) => {
            hasher.update(&[1]);
            entry.hash_into(&mut hasher);
        }
        None => {
            hasher.update(&[0]);
        }
    }
    hash_id(&hasher)
}

/// ns since the epoch as an ISO 8601 timestamp.
fn format_ns(ns: i64) -> String {
    tidemark_model::time::format(&DateTime::from_timestamp_nanos(ns))
}
