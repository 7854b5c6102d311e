//! Tests of the `local` connector, against real temporary directories.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tidemark_model::{
    Account, Activity, EventCategory, EventSubtype, EventType, Subscription, SubscriptionType,
};

use super::manifest::{Entry, Identity, Kind, Manifest, Record, Scan};
use super::{io_error_to_validation, poll_directory, root_error_to_poll, MAX_ACTIVITIES_PER_POLL};
use crate::{Checkpoint, Connector, ConnectorError, PollContext, PollTrigger};

const ACCOUNT_ID: i64 = 4242;

/// A poll context whose subscription was created at `created`.
fn context_created_at(created: DateTime<Utc>) -> PollContext {
    PollContext {
        account: Account {
            id: ACCOUNT_ID,
            application_id: 1,
            service: "local".to_owned(),
            admin: false,
            config: json!({}),
            created,
            modified: created,
        },
        subscription: Subscription {
            id: 7,
            literals: tidemark_model::SubscriptionLiterals,
            account: ACCOUNT_ID,
            active: true,
            disable_reason: String::new(),
            subscription_type: SubscriptionType::Changes,
            default: true,
            expiry: None,
            monitored_resources: Vec::new(),
            monitored_resource_api: None,
            monitored_resource_object_type: None,
            last_cursor: None,
            last_cursor_updated_at: None,
            created,
            modified: created,
        },
    }
}

/// Long enough for file times to be clearly before a subscription created afterwards.
async fn let_the_clock_move() {
    tokio::time::sleep(Duration::from_millis(80)).await;
}

/// A temporary monitored directory with its connector.
struct Fixture {
    dir: tempfile::TempDir,
    connector: Arc<dyn Connector>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let connector = build_for(dir.path());
        Fixture { dir, connector }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, content: &str) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parents");
        }
        fs::write(path, content).expect("write file");
    }

    fn mkdir(&self, relative: &str) {
        fs::create_dir_all(self.path(relative)).expect("create folder");
    }

    fn rename(&self, from: &str, to: &str) {
        fs::rename(self.path(from), self.path(to)).expect("rename");
    }

    /// Lets the existing content age, creates the subscription, takes the baseline (asserting
    /// it reports nothing) and returns the context and the baseline checkpoint.
    async fn start(&self) -> (PollContext, Checkpoint) {
        let_the_clock_move().await;
        let context = context_created_at(Utc::now());
        let (activities, checkpoint) = poll_until_done(&*self.connector, &context, None).await;
        assert_eq!(describe_all(&activities), Vec::<String>::new(), "baseline");
        (context, checkpoint)
    }
}

fn build_for(path: &Path) -> Arc<dyn Connector> {
    crate::build("local", &json!({ "path": path })).expect("valid config")
}

/// Polls, following `more`, until the connector has nothing more right now.
async fn poll_until_done(
    connector: &dyn Connector,
    context: &PollContext,
    checkpoint: Option<Checkpoint>,
) -> (Vec<Activity>, Checkpoint) {
    let mut checkpoint = checkpoint;
    let mut activities = Vec::new();
    for _ in 0..1000 {
        let outcome = connector
            .poll(context, checkpoint.as_ref())
            .await
            .expect("poll succeeds");
        assert!(outcome.activities.len() <= MAX_ACTIVITIES_PER_POLL);
        activities.extend(outcome.activities);
        let more = outcome.more;
        checkpoint = Some(outcome.checkpoint);
        if !more {
            return (activities, checkpoint.expect("set above"));
        }
    }
    panic!("the connector kept asking for more");
}

/// `add /a`, `delete /a`, `update /a`, `rename /a -> /b`, `move /a -> /d/a`.
fn describe(activity: &Activity) -> String {
    let path = |object: &Option<Value>| {
        object
            .as_ref()
            .and_then(|object| object["path"].as_str())
            .unwrap_or("-")
            .to_owned()
    };
    match (activity.event_type, activity.event_subtype) {
        (EventType::Add, _) => format!("add {}", path(&activity.target)),
        (EventType::Delete, _) => format!("delete {}", path(&activity.target)),
        (EventType::Update, EventSubtype::Unknown) => format!("update {}", path(&activity.target)),
        (event_type, subtype) => format!(
            "{event_type}/{subtype} {} -> {}",
            path(&activity.previous_target),
            path(&activity.target)
        ),
    }
}

fn describe_all(activities: &[Activity]) -> Vec<String> {
    activities.iter().map(describe).collect()
}

fn ids(activities: &[Activity]) -> Vec<String> {
    activities
        .iter()
        .map(|activity| activity.id.clone())
        .collect()
}

fn set_mtime(path: &Path, time: SystemTime) {
    // A read-only handle is enough for the owner, and also opens folders.
    fs::File::open(path)
        .expect("open for set_modified")
        .set_modified(time)
        .expect("set mtime");
}

fn assert_timestamps_ascend(activities: &[Activity]) {
    for pair in activities.windows(2) {
        assert!(
            pair[0].timestamp <= pair[1].timestamp,
            "{} at {:?} before {} at {:?}",
            describe(&pair[0]),
            pair[0].timestamp,
            describe(&pair[1]),
            pair[1].timestamp
        );
    }
}

#[tokio::test]
async fn test_first_poll_reports_nothing_for_preexisting_entries() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "a");
    fixture.write("docs/b.txt", "b");
    fixture.mkdir("empty");
    let (context, checkpoint) = fixture.start().await;
    let manifest = Manifest::decode(&checkpoint.0).expect("checkpoint decodes");
    let paths: Vec<&str> = manifest.records.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["a.txt", "docs", "docs/b.txt", "empty"]);
    let (again, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert!(again.is_empty(), "{:?}", describe_all(&again));
}

#[tokio::test]
async fn test_first_poll_reports_entries_created_after_subscription_as_add() {
    let fixture = Fixture::new();
    fixture.write("old.txt", "old");
    let_the_clock_move().await;
    let context = context_created_at(Utc::now());
    fixture.write(
        "new.txt",
        "created after the subscription, before its first poll",
    );
    let (activities, _) = poll_until_done(&*fixture.connector, &context, None).await;
    assert_eq!(describe_all(&activities), ["add /new.txt"]);
}

#[tokio::test]
async fn test_created_file_and_folder_are_adds_folder_first() {
    let fixture = Fixture::new();
    fixture.mkdir("existing");
    let (context, checkpoint) = fixture.start().await;
    fixture.write("existing/inside.txt", "i");
    fixture.mkdir("new");
    fixture.write("new/a.txt", "a");
    fixture.write("new/deeper/b.txt", "b");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    let described = describe_all(&activities);
    assert_eq!(described.len(), 5, "{described:?}");
    for expected in [
        "add /existing/inside.txt",
        "add /new",
        "add /new/a.txt",
        "add /new/deeper",
        "add /new/deeper/b.txt",
    ] {
        assert!(
            described.contains(&expected.to_owned()),
            "{expected} in {described:?}"
        );
    }
    let position = |text: &str| described.iter().position(|d| d == text).expect("present");
    assert!(position("add /new") < position("add /new/a.txt"));
    assert!(position("add /new") < position("add /new/deeper"));
    assert!(position("add /new/deeper") < position("add /new/deeper/b.txt"));
    assert_timestamps_ascend(&activities);
    for activity in &activities {
        assert_eq!(activity.event_category, EventCategory::Storage);
        assert!(activity.previous_target.is_none());
        assert!(activity.actor.is_none() && activity.session.is_none());
    }
}

#[tokio::test]
async fn test_modified_file_is_update_with_previous_target() {
    let fixture = Fixture::new();
    fixture.write("notes/a.txt", "short");
    let (context, checkpoint) = fixture.start().await;
    fixture.write("notes/a.txt", "a longer content");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert_eq!(describe_all(&activities), ["update /notes/a.txt"]);
    let update = &activities[0];
    assert_eq!(update.event_type, EventType::Update);
    assert_eq!(update.event_subtype, EventSubtype::Unknown);
    let target = update.target.as_ref().expect("target");
    let previous = update.previous_target.as_ref().expect("previous target");
    assert_eq!(target["size"], 16);
    assert_eq!(previous["size"], 5);
    assert_eq!(target["id"], previous["id"], "the object keeps its id");
    let timestamp = update.timestamp.expect("an update has a timestamp");
    assert_eq!(
        target["modified"],
        tidemark_model::time::format(&timestamp),
        "update at mtime"
    );
}

#[tokio::test]
async fn test_file_with_same_size_and_new_mtime_is_update() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "same");
    let (context, checkpoint) = fixture.start().await;
    set_mtime(
        &fixture.path("a.txt"),
        SystemTime::now() + Duration::from_secs(5),
    );
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert_eq!(describe_all(&activities), ["update /a.txt"]);
}

#[tokio::test]
async fn test_folder_mtime_change_alone_is_not_an_update() {
    let fixture = Fixture::new();
    fixture.mkdir("folder");
    let (context, checkpoint) = fixture.start().await;
    set_mtime(
        &fixture.path("folder"),
        SystemTime::now() + Duration::from_secs(5),
    );
    fixture.write("folder/child.txt", "c");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert_eq!(describe_all(&activities), ["add /folder/child.txt"]);
}

#[tokio::test]
async fn test_rename_in_same_folder_is_rename() {
    let fixture = Fixture::new();
    fixture.write("docs/draft.txt", "text");
    let (context, checkpoint) = fixture.start().await;
    fixture.rename("docs/draft.txt", "docs/final.txt");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert_eq!(
        describe_all(&activities),
        ["update/rename /docs/draft.txt -> /docs/final.txt"]
    );
}

#[tokio::test]
async fn test_move_to_other_folder_is_move() {
    let fixture = Fixture::new();
    fixture.write("inbox/report.pdf", "pdf");
    fixture.mkdir("archive");
    let (context, checkpoint) = fixture.start().await;
    fixture.rename("inbox/report.pdf", "archive/report.pdf");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert_eq!(
        describe_all(&activities),
        ["update/move /inbox/report.pdf -> /archive/report.pdf"]
    );
    let target = activities[0].target.as_ref().expect("target");
    let previous = activities[0].previous_target.as_ref().expect("previous");
    assert_eq!(target["parent"]["name"], "archive");
    assert_eq!(previous["parent"]["name"], "inbox");
    assert_ne!(target["parent"]["id"], previous["parent"]["id"]);
}

#[tokio::test]
async fn test_moving_folder_with_50_files_emits_exactly_one_move() {
    let fixture = Fixture::new();
    for i in 0..50 {
        fixture.write(&format!("project/src/file{i:02}.rs"), "fn main() {}");
    }
    fixture.mkdir("archive");
    let (context, checkpoint) = fixture.start().await;
    fixture.rename("project", "archive/project");
    let (activities, checkpoint) =
        poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert_eq!(
        describe_all(&activities),
        ["update/move /project -> /archive/project"]
    );
    let manifest = Manifest::decode(&checkpoint.0).expect("decodes");
    assert!(manifest
        .records
        .iter()
        .any(|r| r.path == "archive/project/src/file49.rs"));
}

#[tokio::test]
async fn test_renaming_folder_and_a_file_inside_emits_two_renames() {
    let fixture = Fixture::new();
    fixture.write("old/a.txt", "a");
    fixture.write("old/b.txt", "b");
    let (context, checkpoint) = fixture.start().await;
    fixture.rename("old", "new");
    fixture.rename("new/a.txt", "new/c.txt");
    let (activities, after) =
        poll_until_done(&*fixture.connector, &context, Some(checkpoint.clone())).await;
    assert_eq!(activities.len(), 2, "{:?}", describe_all(&activities));
    assert!(activities
        .iter()
        .all(|a| a.event_subtype == EventSubtype::Rename));
    // Which rename comes first depends on the folder's ctime; either way the paths tell a
    // consistent story: `/old -> /new` then `/new/a.txt -> /new/c.txt`, or
    // `/old/a.txt -> /old/c.txt` then `/old -> /new`.
    let file = activities
        .iter()
        .find(|a| a.target.as_ref().expect("target")["type"] == "file")
        .expect("the file's rename");
    assert_eq!(
        file.previous_target.as_ref().expect("previous")["name"],
        "a.txt"
    );
    assert_eq!(file.target.as_ref().expect("target")["name"], "c.txt");
    assert_eq!(
        replay_on_mirror(&checkpoint, &activities),
        checkpoint_paths(&after)
    );
}

#[tokio::test]
async fn test_deleted_file_is_delete() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "a");
    fixture.write("b.txt", "b");
    let (context, checkpoint) = fixture.start().await;
    fs::remove_file(fixture.path("a.txt")).expect("remove");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert_eq!(describe_all(&activities), ["delete /a.txt"]);
    assert!(activities[0].previous_target.is_none());
    assert_eq!(
        activities[0].target.as_ref().expect("target")["type"],
        "file"
    );
}

#[tokio::test]
async fn test_deleted_folder_tree_emits_children_before_folder() {
    let fixture = Fixture::new();
    fixture.write("tree/a.txt", "a");
    fixture.write("tree/sub/b.txt", "b");
    fixture.write("tree/sub/deeper/c.txt", "c");
    fixture.write("keep.txt", "k");
    let (context, checkpoint) = fixture.start().await;
    fs::remove_dir_all(fixture.path("tree")).expect("remove tree");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    let described = describe_all(&activities);
    assert_eq!(described.len(), 6, "{described:?}");
    let position = |text: &str| {
        described
            .iter()
            .position(|d| d == text)
            .unwrap_or_else(|| panic!("{text} in {described:?}"))
    };
    assert!(position("delete /tree/sub/deeper/c.txt") < position("delete /tree/sub/deeper"));
    assert!(position("delete /tree/sub/deeper") < position("delete /tree/sub"));
    assert!(position("delete /tree/sub/b.txt") < position("delete /tree/sub"));
    assert!(position("delete /tree/a.txt") < position("delete /tree"));
    assert_eq!(position("delete /tree"), 5);
}

#[tokio::test]
async fn test_atomic_save_by_rename_is_update() {
    let fixture = Fixture::new();
    fixture.write("doc.txt", "version one");
    let (context, checkpoint) = fixture.start().await;
    fixture.write("doc.txt.tmp", "version two!");
    fixture.rename("doc.txt.tmp", "doc.txt");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert_eq!(describe_all(&activities), ["update /doc.txt"]);
    let target = activities[0].target.as_ref().expect("target");
    let previous = activities[0].previous_target.as_ref().expect("previous");
    assert_ne!(
        target["id"], previous["id"],
        "a new inode is a new object id"
    );
}

#[tokio::test]
async fn test_file_replaced_by_folder_is_delete_then_add() {
    let fixture = Fixture::new();
    fixture.write("thing", "a file");
    let (context, checkpoint) = fixture.start().await;
    fs::remove_file(fixture.path("thing")).expect("remove");
    fixture.write("thing/inside.txt", "now a folder");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert_eq!(
        describe_all(&activities),
        ["delete /thing", "add /thing", "add /thing/inside.txt"]
    );
    assert_timestamps_ascend(&activities);
}

#[tokio::test]
async fn test_swapped_names_are_two_renames() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "aaa");
    fixture.write("b.txt", "b");
    let (context, checkpoint) = fixture.start().await;
    fixture.rename("a.txt", "tmp");
    fixture.rename("b.txt", "a.txt");
    fixture.rename("tmp", "b.txt");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    let mut described = describe_all(&activities);
    described.sort();
    assert_eq!(
        described,
        [
            "update/rename /a.txt -> /b.txt",
            "update/rename /b.txt -> /a.txt"
        ]
    );
}

#[tokio::test]
async fn test_symlinks_are_files_and_never_followed() {
    let outside = tempfile::tempdir().expect("temp dir");
    fs::write(outside.path().join("secret.txt"), "s").expect("write");
    let fixture = Fixture::new();
    let (context, checkpoint) = fixture.start().await;
    std::os::unix::fs::symlink(outside.path(), fixture.path("link")).expect("symlink");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    assert_eq!(describe_all(&activities), ["add /link"]);
    assert_eq!(
        activities[0].target.as_ref().expect("target")["type"],
        "file"
    );
}

#[tokio::test]
async fn test_target_object_has_kloudless_file_shape() {
    let fixture = Fixture::new();
    fixture.write("docs/a.txt", "hello");
    let (context, checkpoint) = fixture.start().await;
    fixture.rename("docs/a.txt", "docs/b.txt");
    let (activities, _) = poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
    let activity = &activities[0];
    let target = activity.target.as_ref().expect("target");
    let previous = activity.previous_target.as_ref().expect("previous");
    assert_eq!(target["id"], previous["id"]);
    assert_eq!(target["id"].as_str().map(str::len), Some(22));
    assert_eq!(target["raw_id"], "docs/b.txt");
    assert_eq!(target["name"], "b.txt");
    assert_eq!(target["type"], "file");
    assert_eq!(target["size"], 5);
    assert_eq!(target["path"], "/docs/b.txt");
    assert_eq!(target["mime_type"], Value::Null);
    assert_eq!(target["ancestors"], Value::Null);
    assert_eq!(target["account"], ACCOUNT_ID);
    assert_eq!(target["api"], "storage");
    assert_eq!(target["downloadable"], true);
    assert_eq!(target["parent"]["name"], "docs");
    assert!(target["parent"]["id"].is_string());
    assert!(tidemark_model::time::parse(target["modified"].as_str().expect("modified")).is_ok());
    assert_eq!(previous["path"], "/docs/a.txt");
    assert_eq!(
        activity.raw.as_ref().expect("raw")["object"]["path"],
        "docs/b.txt"
    );
    assert_eq!(activity.account, ACCOUNT_ID);

    // Folders: no size, not downloadable; top-level entries hang off `root`. (A subscription
    // older than everything makes the first poll report every entry.)
    let everything = poll_directory(
        fixture.root(),
        None,
        ACCOUNT_ID,
        DateTime::<Utc>::MIN_UTC,
        100,
    )
    .expect("poll")
    .activities;
    let docs = everything
        .iter()
        .map(|a| a.target.as_ref().expect("target"))
        .find(|t| t["path"] == "/docs")
        .expect("docs folder");
    assert_eq!(docs["type"], "folder");
    assert_eq!(docs["size"], Value::Null);
    assert_eq!(docs["downloadable"], false);
    assert_eq!(docs["parent"]["id"], "root");
}

/// The checkpoint of a full scan of `root`.
fn scan_checkpoint(root: &Path) -> String {
    poll_directory(root, None, ACCOUNT_ID, DateTime::<Utc>::MAX_UTC, 1)
        .expect("poll")
        .checkpoint
        .0
}

#[tokio::test]
async fn test_changes_while_stopped_appear_on_next_poll() {
    let fixture = Fixture::new();
    fixture.write("stay.txt", "s");
    fixture.write("edit.txt", "e");
    fixture.write("drop.txt", "d");
    fixture.write("move/me.txt", "m");
    let (context, checkpoint) = fixture.start().await;
    drop(fixture.connector.clone());

    // The service is stopped; the directory keeps changing.
    fixture.write("edit.txt", "edited while stopped");
    fs::remove_file(fixture.path("drop.txt")).expect("remove");
    fixture.rename("move/me.txt", "me.txt");
    fixture.write("born.txt", "b");

    let restarted = build_for(fixture.root());
    let (activities, _) = poll_until_done(&*restarted, &context, Some(checkpoint)).await;
    let mut described = describe_all(&activities);
    described.sort();
    assert_eq!(
        described,
        [
            "add /born.txt",
            "delete /drop.txt",
            "update /edit.txt",
            "update/move /move/me.txt -> /me.txt"
        ]
    );
}

#[tokio::test]
async fn test_replayed_poll_from_same_checkpoint_yields_identical_ids() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "a");
    fixture.write("b.txt", "b");
    fixture.write("dir/c.txt", "c");
    let (context, checkpoint) = fixture.start().await;
    fixture.write("a.txt", "a changed");
    fixture.rename("b.txt", "dir/b.txt");
    fs::remove_file(fixture.path("dir/c.txt")).expect("remove");
    fixture.write("d.txt", "d");
    let first = fixture
        .connector
        .poll(&context, Some(&checkpoint))
        .await
        .expect("poll");
    // The commit "failed": the engine polls again from the same checkpoint.
    let replay = build_for(fixture.root())
        .poll(&context, Some(&checkpoint))
        .await
        .expect("poll");
    assert_eq!(
        first.activities.len(),
        4,
        "{:?}",
        describe_all(&first.activities)
    );
    assert_eq!(ids(&first.activities), ids(&replay.activities));
    assert_eq!(first.checkpoint, replay.checkpoint);
    let distinct: HashSet<String> = ids(&first.activities).into_iter().collect();
    assert_eq!(distinct.len(), 4);
}

#[tokio::test]
async fn test_repeated_changes_to_one_file_get_distinct_ids() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "1");
    let (context, mut checkpoint) = fixture.start().await;
    let mut seen = Vec::new();
    for step in 0..6 {
        match step {
            0 | 2 => fixture.rename("a.txt", "b.txt"),
            1 => fixture.rename("b.txt", "a.txt"),
            3 => fixture.write("b.txt", "22"),
            4 => fixture.write("b.txt", "333"),
            _ => fixture.rename("b.txt", "a.txt"),
        }
        let (activities, next) =
            poll_until_done(&*fixture.connector, &context, Some(checkpoint)).await;
        assert_eq!(
            activities.len(),
            1,
            "step {step}: {:?}",
            describe_all(&activities)
        );
        seen.push(activities[0].id.clone());
        checkpoint = next;
    }
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "{seen:?}");
}

#[tokio::test]
async fn test_10000_files_burst_pages_into_distinct_adds() {
    let fixture = Fixture::new();
    let (context, baseline) = fixture.start().await;
    for i in 0..10_000 {
        fs::write(fixture.path(&format!("f{i:05}.dat")), i.to_string()).expect("write");
    }
    let mut checkpoint = baseline;
    let mut activities = Vec::new();
    let mut polls = 0;
    loop {
        let outcome = fixture
            .connector
            .poll(&context, Some(&checkpoint))
            .await
            .expect("poll");
        polls += 1;
        assert!(outcome.activities.len() <= MAX_ACTIVITIES_PER_POLL);
        activities.extend(outcome.activities);
        checkpoint = outcome.checkpoint;
        if !outcome.more {
            break;
        }
        assert!(polls < 20, "paging does not converge");
    }
    assert_eq!(polls, 10);
    assert_eq!(activities.len(), 10_000);
    assert!(activities.iter().all(|a| a.event_type == EventType::Add));
    let distinct_ids: HashSet<&str> = activities.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(distinct_ids.len(), 10_000);
    let distinct_paths: HashSet<String> = activities
        .iter()
        .map(|a| a.target.as_ref().expect("target")["path"].to_string())
        .collect();
    assert_eq!(distinct_paths.len(), 10_000);
    let after = fixture
        .connector
        .poll(&context, Some(&checkpoint))
        .await
        .expect("poll");
    assert!(after.activities.is_empty());
    assert!(!after.more);
}

/// Sets up a directory that exercises every kind of change at once, returning the checkpoint
/// taken before the changes.
async fn mixed_changes(fixture: &Fixture) -> Checkpoint {
    fixture.write("keep.txt", "keep");
    fixture.write("r1.txt", "r");
    fixture.write("m.txt", "m");
    fixture.mkdir("sub");
    for i in 0..5 {
        fixture.write(&format!("tree/x{i}.txt"), "x");
    }
    fixture.write("gone.txt", "g");
    for i in 0..3 {
        fixture.write(&format!("gonedir/g{i}.txt"), "g");
    }
    fixture.write("doc.txt", "doc one");
    fixture.write("swap", "file");
    fixture.write("a.txt", "aaaa");
    fixture.write("b.txt", "b");
    let (_, checkpoint) = fixture.start().await;

    fixture.write("keep.txt", "keep, edited");
    fixture.rename("r1.txt", "r2.txt");
    fixture.rename("m.txt", "sub/m.txt");
    fixture.rename("tree", "sub/tree2");
    fixture.rename("sub/tree2/x1.txt", "sub/tree2/y1.txt");
    fixture.write("sub/tree2/x2.txt", "x2 edited");
    fs::remove_file(fixture.path("sub/tree2/x3.txt")).expect("remove");
    fs::remove_file(fixture.path("gone.txt")).expect("remove");
    fs::remove_dir_all(fixture.path("gonedir")).expect("remove");
    for i in 0..3 {
        fixture.write(&format!("new/n{i}.txt"), "n");
    }
    fixture.write("doc.tmp", "doc two, longer");
    fixture.rename("doc.tmp", "doc.txt");
    fs::remove_file(fixture.path("swap")).expect("remove");
    fixture.write("swap/inner.txt", "folder now");
    fixture.rename("a.txt", "t.txt");
    fixture.rename("b.txt", "a.txt");
    fixture.rename("t.txt", "b.txt");
    checkpoint
}

/// Replays `activities` on a mirror of the tree at `start`, the way a client that follows the
/// tree by path would, asserting that each activity makes sense at its point in the story
/// (previous paths are where the object is, parents exist, folders are empty when deleted).
/// Returns the mirrored paths.
fn replay_on_mirror(start: &Checkpoint, activities: &[Activity]) -> BTreeSet<String> {
    let manifest = Manifest::decode(&start.0).expect("checkpoint decodes");
    // object id -> (path, type)
    let mut mirror: HashMap<String, (String, String)> = manifest
        .records
        .iter()
        .map(|record| {
            (
                record.entry.identity.object_id(),
                (
                    format!("/{}", record.path),
                    record.entry.kind.as_str().to_owned(),
                ),
            )
        })
        .collect();
    let text = |object: &Value, field: &str| object[field].as_str().expect(field).to_owned();
    let has_parent_folder = |mirror: &HashMap<String, (String, String)>, path: &str| {
        let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
        parent.is_empty()
            || mirror
                .values()
                .any(|(other, kind)| other == parent && kind == "folder")
    };
    for activity in activities {
        let story = describe(activity);
        let target = activity.target.as_ref().expect("target");
        let (id, path, kind) = (
            text(target, "id"),
            text(target, "path"),
            text(target, "type"),
        );
        match (activity.event_type, activity.event_subtype) {
            (EventType::Add, _) => {
                assert!(!mirror.contains_key(&id), "{story}: already there");
                assert!(
                    has_parent_folder(&mirror, &path),
                    "{story}: no parent folder"
                );
                mirror.insert(id, (path, kind));
            }
            (EventType::Delete, _) => {
                let (at, _) = mirror
                    .remove(&id)
                    .unwrap_or_else(|| panic!("{story}: unknown"));
                assert_eq!(at, path, "{story}: deleted where it was");
                let below = format!("{path}/");
                assert!(
                    !mirror.values().any(|(other, _)| other.starts_with(&below)),
                    "{story}: folder deleted before its contents"
                );
            }
            (EventType::Update, subtype) => {
                let previous = activity.previous_target.as_ref().expect("previous target");
                let (previous_id, previous_path) = (text(previous, "id"), text(previous, "path"));
                let (at, _) = mirror
                    .remove(&previous_id)
                    .unwrap_or_else(|| panic!("{story}: unknown"));
                assert_eq!(at, previous_path, "{story}: previous path is where it was");
                if matches!(subtype, EventSubtype::Rename | EventSubtype::Move) {
                    assert_eq!(previous_id, id, "{story}: same object");
                    assert!(
                        has_parent_folder(&mirror, &path),
                        "{story}: no parent folder"
                    );
                    let below = format!("{previous_path}/");
                    for (other, _) in mirror.values_mut() {
                        if let Some(rest) = other.strip_prefix(&below) {
                            *other = format!("{path}/{rest}");
                        }
                    }
                } else {
                    assert_eq!(previous_path, path, "{story}: updated in place");
                }
                mirror.insert(id, (path, kind));
            }
            other => panic!("unexpected activity {other:?}"),
        }
    }
    mirror.into_values().map(|(path, _)| path).collect()
}

/// The paths of a checkpoint, as the mirror writes them.
fn checkpoint_paths(checkpoint: &Checkpoint) -> BTreeSet<String> {
    Manifest::decode(&checkpoint.0)
        .expect("checkpoint decodes")
        .records
        .iter()
        .map(|record| format!("/{}", record.path))
        .collect()
}

/// How many activities of each `event_type/event_subtype`.
fn tally(activities: &[Activity]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for activity in activities {
        *counts
            .entry(format!(
                "{}/{}",
                activity.event_type, activity.event_subtype
            ))
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn test_mixed_changes_tell_a_consistent_story() {
    let fixture = Fixture::new();
    let checkpoint = mixed_changes(&fixture).await;
    let outcome = poll_directory(
        fixture.root(),
        Some(&checkpoint.0),
        ACCOUNT_ID,
        Utc::now(),
        usize::MAX,
    )
    .expect("poll");
    assert!(!outcome.more);
    let expected: BTreeMap<String, usize> = [
        ("add/unknown", 6),    // new, its 3 files, swap (now a folder), swap/inner.txt
        ("delete/unknown", 7), // gone.txt, gonedir and its 3 files, tree/x3.txt, swap (a file)
        ("update/unknown", 3), // keep.txt, tree/x2.txt, doc.txt (atomic save)
        ("update/move", 2),    // m.txt, tree
        ("update/rename", 4),  // r1.txt, tree/x1.txt, a.txt and b.txt (swapped)
    ]
    .into_iter()
    .map(|(kind, count)| (kind.to_owned(), count))
    .collect();
    assert_eq!(
        tally(&outcome.activities),
        expected,
        "{:#?}",
        describe_all(&outcome.activities)
    );
    assert_timestamps_ascend(&outcome.activities);
    assert_eq!(
        replay_on_mirror(&checkpoint, &outcome.activities),
        checkpoint_paths(&outcome.checkpoint)
    );
}

#[tokio::test]
async fn test_paged_polls_emit_exactly_what_one_unpaged_poll_emits() {
    let fixture = Fixture::new();
    let checkpoint = mixed_changes(&fixture).await;
    let poll = |checkpoint: &Checkpoint, limit: usize| {
        poll_directory(
            fixture.root(),
            Some(&checkpoint.0),
            ACCOUNT_ID,
            Utc::now(),
            limit,
        )
        .expect("poll")
    };
    let unpaged = poll(&checkpoint, usize::MAX);
    assert_eq!(unpaged.activities.len(), 22);
    for limit in [1, 2, 5] {
        let mut current = checkpoint.clone();
        let mut paged = Vec::new();
        for _ in 0..100 {
            let outcome = poll(&current, limit);
            assert!(outcome.activities.len() <= limit);
            // Every intermediate checkpoint is a consistent tree that the story so far leads to.
            assert_eq!(
                replay_on_mirror(
                    &checkpoint,
                    &[paged.as_slice(), &outcome.activities].concat()
                ),
                checkpoint_paths(&outcome.checkpoint),
                "limit {limit}"
            );
            paged.extend(outcome.activities);
            current = outcome.checkpoint;
            if !outcome.more {
                break;
            }
        }
        // The same activities (ids hash the paths and states, so equal ids are equal stories);
        // only the order of equal-timestamp deletes may differ, children still first.
        let sorted = |mut list: Vec<String>| {
            list.sort();
            list
        };
        assert_eq!(
            sorted(ids(&paged)),
            sorted(ids(&unpaged.activities)),
            "limit {limit}"
        );
        assert_eq!(
            sorted(describe_all(&paged)),
            sorted(describe_all(&unpaged.activities)),
            "limit {limit}"
        );
        assert_eq!(current, unpaged.checkpoint, "limit {limit}");
    }
}

#[tokio::test]
async fn test_corrupt_checkpoint_is_reported() {
    let fixture = Fixture::new();
    let context = context_created_at(Utc::now());
    for (text, needle) in [
        ("not json at all", "not a JSON object"),
        (r#"{"entries": []}"#, "no version"),
        (
            r#"{"v": 99, "root": null, "entries": []}"#,
            "unsupported version 99",
        ),
        (
            r#"{"v": 1, "root": null, "entries": [["a", "f", 1]]}"#,
            "malformed",
        ),
        (
            r#"{"v": 1, "root": null, "entries": [["../x", "f", 1, 2, null, 3, 4, 5]]}"#,
            "invalid relative path",
        ),
    ] {
        let error = fixture
            .connector
            .poll(&context, Some(&Checkpoint(text.to_owned())))
            .await
            .expect_err("corrupt");
        match &error {
            ConnectorError::CorruptCheckpoint(message) => {
                assert!(
                    message.contains(needle),
                    "{message:?} should mention {needle:?}"
                )
            }
            other => panic!("expected CorruptCheckpoint, got {other:?}"),
        }
        assert_eq!(error.disable_reason(), Some("corrupt_checkpoint"));
    }
}

#[test]
fn test_checkpoint_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join("d")).expect("mkdir");
    fs::write(dir.path().join("d/x"), "x").expect("write");
    let text = scan_checkpoint(dir.path());
    assert!(text.starts_with(r#"{"v":1,"root":["#), "{text}");
    let manifest = Manifest::decode(&text).expect("decodes");
    assert_eq!(manifest.records.len(), 2);
    assert_eq!(manifest.encode(), text);
}

#[test]
fn test_bad_configs_are_rejected_with_clear_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plain.txt");
    fs::write(&file, "not a directory").expect("write");
    let root = dir.path().to_str().expect("utf-8 temp path").to_owned();
    let cases = [
        (
            json!({"path": "/definitely/not/here/tidemark"}),
            "does not exist",
        ),
        (json!({"path": file}), "is not a directory"),
        (json!({"path": "relative/dir"}), "must be absolute"),
        (json!({"path": ""}), "must be absolute"),
        (
            json!({"path": root, "colour": "blue"}),
            "unknown field `colour`",
        ),
        (json!({"path": 5}), "`path` must be a string"),
        (json!({}), "needs `path`"),
        (json!({"path": null}), "needs `path`"),
        (
            json!({"path": root, "rescan_interval_seconds": "often"}),
            "rescan_interval_seconds",
        ),
        (
            json!({"path": root, "rescan_interval_seconds": 0}),
            "1..=86400",
        ),
        (json!("/srv/shared"), "must be a JSON object"),
    ];
    for (config, needle) in cases {
        let error = match crate::build("local", &config) {
            Ok(_) => panic!("{config} should be rejected"),
            Err(error) => error,
        };
        match &error {
            ConnectorError::BadConfig(message) => {
                assert!(
                    message.contains(needle),
                    "{config}: {message:?} should mention {needle:?}"
                )
            }
            other => panic!("{config}: expected BadConfig, got {other:?}"),
        }
    }
}

#[test]
fn test_config_accepts_common_keys_and_sets_intervals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let connector = crate::build(
        "local",
        &json!({"path": dir.path(), "base_url": "http://localhost", "credentials": {"token": "t"},
                "poll_interval_seconds": 30}),
    )
    .expect("common keys are accepted");
    assert_eq!(connector.service(), "local");
    assert!(connector.capabilities().push);
    assert_eq!(connector.default_poll_interval(), Duration::from_secs(60));
    let rescan = crate::build(
        "local",
        &json!({"path": dir.path(), "rescan_interval_seconds": 300}),
    )
    .expect("valid");
    assert_eq!(rescan.default_poll_interval(), Duration::from_secs(300));
}

#[tokio::test]
async fn test_validate_checks_the_directory_is_still_there() {
    let fixture = Fixture::new();
    fixture
        .connector
        .validate()
        .await
        .expect("readable directory");
    let gone = fixture.root().to_path_buf();
    fs::remove_dir_all(&gone).expect("remove");
    match fixture.connector.validate().await {
        Err(ConnectorError::BadConfig(message)) => assert!(message.contains("does not exist")),
        other => panic!("expected BadConfig, got {other:?}"),
    }
}

/// Tests run as root, where `chmod` cannot make a directory unreadable: the mapping is tested
/// with synthetic I/O errors instead.
#[test]
fn test_unreadable_directory_is_bad_config_not_unauthorized() {
    let root = Path::new("/srv/locked");
    let denied = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    let expected = "`path` /srv/locked is not readable by this process: permission denied";
    let when_connecting = io_error_to_validation(root, denied());
    assert_eq!(when_connecting, ConnectorError::BadConfig(expected.into()));
    assert_eq!(when_connecting.disable_reason(), Some("invalid_config"));
    assert!(!when_connecting.is_retriable());
    // A poll gives the same verdict: the subscription is disabled as `invalid_config`.
    let when_polling = root_error_to_poll(root, super::manifest::RootError::from_io(denied()));
    assert_eq!(when_polling, ConnectorError::BadConfig(expected.into()));

    let missing = io_error_to_validation(root, std::io::Error::from(std::io::ErrorKind::NotFound));
    assert_eq!(
        missing,
        ConnectorError::BadConfig("`path` /srv/locked does not exist".into())
    );
    let missing_while_polling = root_error_to_poll(
        root,
        super::manifest::RootError::from_io(std::io::Error::from(std::io::ErrorKind::NotFound)),
    );
    assert!(
        missing_while_polling.is_retriable(),
        "a directory that is gone may come back: {missing_while_polling:?}"
    );
}

#[tokio::test]
async fn test_poll_of_removed_directory_is_transient() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "a");
    let (context, checkpoint) = fixture.start().await;
    fs::remove_dir_all(fixture.root()).expect("remove");
    for checkpoint in [Some(&checkpoint), None] {
        match fixture.connector.poll(&context, checkpoint).await {
            Err(error @ ConnectorError::Transient(_)) => assert!(error.is_retriable()),
            other => panic!("expected Transient, got {other:?}"),
        }
    }
    // A file where the directory was is no better, and no worse.
    fs::write(fixture.root(), "now a file").expect("write");
    match fixture.connector.poll(&context, Some(&checkpoint)).await {
        Err(ConnectorError::Transient(message)) => {
            assert!(message.contains("no longer a directory"))
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    fs::remove_file(fixture.root()).expect("clean up");
}

/// Waits up to five seconds for `counter` to pass zero.
async fn wait_for_fire(counter: &AtomicUsize) -> bool {
    for _ in 0..100 {
        if counter.load(Ordering::SeqCst) > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn counting_trigger() -> (Arc<AtomicUsize>, PollTrigger) {
    let counter = Arc::new(AtomicUsize::new(0));
    let fired = Arc::clone(&counter);
    let trigger = PollTrigger::new(move || {
        fired.fetch_add(1, Ordering::SeqCst);
    });
    (counter, trigger)
}

#[tokio::test]
async fn test_watch_fires_trigger_when_a_file_is_created() {
    let fixture = Fixture::new();
    fixture.mkdir("nested/deeper");
    let context = context_created_at(Utc::now());
    let (counter, trigger) = counting_trigger();
    let guard = fixture
        .connector
        .watch(&context, trigger)
        .expect("watch starts")
        .expect("local has a watch");
    fixture.write("top.txt", "t");
    assert!(
        wait_for_fire(&counter).await,
        "creating a file fires the trigger"
    );
    counter.store(0, Ordering::SeqCst);
    fixture.write("nested/deeper/inner.txt", "i");
    assert!(wait_for_fire(&counter).await, "the watch is recursive");
    drop(guard);
}

#[tokio::test]
async fn test_own_scans_do_not_fire_the_watch() {
    let fixture = Fixture::new();
    fixture.write("a/b/c.txt", "c");
    let context = context_created_at(Utc::now());
    let (counter, trigger) = counting_trigger();
    let _guard = fixture
        .connector
        .watch(&context, trigger)
        .expect("watch starts")
        .expect("local has a watch");
    tokio::time::sleep(Duration::from_millis(200)).await;
    counter.store(0, Ordering::SeqCst);
    poll_until_done(&*fixture.connector, &context, None).await;
    fs::read_to_string(fixture.path("a/b/c.txt")).expect("read");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        counter.load(Ordering::SeqCst),
        0,
        "reading must not trigger polls"
    );
}

fn synthetic_entry(kind: Kind, dev: u64, ino: u64) -> Entry {
    Entry {
        kind,
        identity: Identity {
            dev,
            ino,
            birth_ns: Some(1_000),
        },
        size: 1,
        mtime_ns: 2_000,
        ctime_ns: 3_000,
    }
}

#[test]
fn test_unreadable_folders_keep_their_previous_contents() {
    let previous = Manifest {
        root: None,
        records: [
            ("locked", Kind::Folder, 1),
            ("locked/a", Kind::File, 2),
            ("locked/b", Kind::Folder, 3),
            ("locked/b/c", Kind::File, 4),
            ("lockedness", Kind::File, 5),
            ("odd", Kind::Folder, 6),
            ("odd/x", Kind::File, 7),
            ("other", Kind::File, 8),
        ]
        .into_iter()
        .map(|(path, kind, ino)| Record {
            path: path.to_owned(),
            entry: synthetic_entry(kind, 1, ino),
        })
        .collect(),
    };
    let mut scan = Scan {
        // The folder itself was seen; listing it failed.
        entries: [("locked".to_owned(), synthetic_entry(Kind::Folder, 1, 1))].into(),
        unlisted_folders: vec!["locked".to_owned()],
        unreadable_entries: vec!["odd".to_owned()],
        ..Scan::default()
    };
    scan.carry_over_unreadable(&previous);
    let paths: Vec<&str> = scan.entries.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "locked",
            "locked/a",
            "locked/b",
            "locked/b/c",
            "odd",
            "odd/x"
        ]
    );
}

#[test]
fn test_device_renumbering_of_the_monitored_directory_is_followed() {
    let root = Identity {
        dev: 1,
        ino: 100,
        birth_ns: Some(5),
    };
    let mut manifest = Manifest {
        root: Some(root),
        records: vec![
            Record {
                path: "a".to_owned(),
                entry: synthetic_entry(Kind::File, 1, 2),
            },
            Record {
                path: "mounted/b".to_owned(),
                entry: synthetic_entry(Kind::File, 7, 3),
            },
        ],
    };
    let unchanged = manifest.clone();
    manifest.follow_device_renumbering(Identity { ino: 101, ..root });
    assert_eq!(manifest, unchanged, "another directory: nothing to follow");
    manifest.follow_device_renumbering(Identity { dev: 9, ..root });
    assert_eq!(manifest.records[0].entry.identity.dev, 9);
    assert_eq!(
        manifest.records[1].entry.identity.dev, 7,
        "other devices are left alone"
    );
    assert_eq!(manifest.root.map(|r| r.dev), Some(9));
}

#[test]
fn test_subscription_times_outside_the_ns_range_compare_correctly() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("a.txt"), "a").expect("write");
    let far_future =
        poll_directory(dir.path(), None, ACCOUNT_ID, DateTime::<Utc>::MAX_UTC, 10).expect("poll");
    assert!(far_future.activities.is_empty() && !far_future.more);
    let far_past =
        poll_directory(dir.path(), None, ACCOUNT_ID, DateTime::<Utc>::MIN_UTC, 10).expect("poll");
    assert_eq!(describe_all(&far_past.activities), ["add /a.txt"]);
}
