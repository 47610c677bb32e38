//! The file endpoint end to end, on a real node database and real directories: every attack of
//! the threat model on the two authorization layers (denied, recorded, nothing outside changed),
//! a symbolic link swapped in while requests run, undo and rollback that put trees back exactly,
//! and a process killed in the middle of operations.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use clawnet_crypto::IdentityId;
use clawnet_node::data_dir::database_path;
use clawnet_node::files::{
    FileError, FileReply, FileRequest, FolderConfig, FsPath, GovernedFiles, Layer, RollbackFilter, WriteMode,
    endpoint_config,
};
use clawnet_node::home::KeyProtection;
use clawnet_node::{NodeHome, UnlockedHome, passphrase};
use clawnet_protocol::SessionId;
use clawnet_protocol::audit::{Actor, AuditEntry, Outcome};
use clawnet_storage::files::{
    EntryMeta, FileAccess, FileOpKind, FileOpRecord, FileOpState, Fingerprint, SavedEntry, tamper_with_file_op,
};
use clawnet_tests::file_crash::{self, Dice, FILE_NAMES};
use clawnet_tests::file_tree::{Content, Times, Tree, put_file, set_mtime};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const RW: FileAccess = FileAccess::ReadWrite;
const RO: FileAccess = FileAccess::ReadOnly;
/// A time in 2001, so any entry an operation rewrites shows a different time.
const OLD: u64 = 1_000_000_000;

/// A node with whitelisted folders under one canonical temporary directory.
struct Node {
    _temp: TempDir,
    base: PathBuf,
    home: UnlockedHome,
    files: GovernedFiles,
}

impl Node {
    /// A node whose data directory is `data` (relative to BASE, a canonical temporary
    /// directory), with `folders` (relative to BASE, created before `prepare` runs) whitelisted.
    fn start(data: &str, folders: &[(&str, FileAccess)], prepare: impl FnOnce(&Path)) -> Node {
        let temp = tempfile::tempdir().unwrap();
        let base = temp.path().canonicalize().unwrap();
        for (folder, _) in folders {
            fs::create_dir_all(base.join(folder)).unwrap();
        }
        prepare(&base);
        let home = NodeHome::init(&base.join(data), "Ada", KeyProtection::None).unwrap();
        let folders: Vec<FolderConfig> =
            folders.iter().map(|(folder, access)| FolderConfig { path: base.join(folder), access: *access }).collect();
        let files = GovernedFiles::open(&endpoint_config(home.home().dir(), &folders), home.db().clone()).unwrap();
        Node { _temp: temp, base, home, files }
    }

    /// A new identity granted `grants` (relative to BASE; `/` for the whole file system).
    fn identity(&self, tag: &str, grants: &[(&str, FileAccess)]) -> IdentityId {
        let id = self.home.create_identity(tag, &format!("the {tag} identity")).unwrap().id;
        for (root, access) in grants {
            let root = if *root == "/" { PathBuf::from("/") } else { self.base.join(root) };
            self.files.grant(id, &at(&root), *access).unwrap();
        }
        id
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.base.join(relative)
    }

    fn security_events(&self) -> Vec<AuditEntry> {
        self.home.db().audit_entries().unwrap().into_iter().filter(AuditEntry::is_security_event).collect()
    }

    /// Runs `request` for `identity` and returns the journal number of the change it made.
    fn change(&self, identity: IdentityId, session: Option<SessionId>, request: FileRequest) -> u64 {
        let shown = format!("{} {}", request.name(), request.describe());
        match self.files.request(identity, session, request) {
            Ok(FileReply::Done { op }) => op,
            other => panic!("{shown}: expected a change, got {other:?}"),
        }
    }

    fn record(&self, op: u64) -> FileOpRecord {
        let all = self.files.history(&RollbackFilter::default()).unwrap();
        all.into_iter().find(|record| record.number == op).unwrap_or_else(|| panic!("no operation {op}"))
    }
}

fn at(path: &Path) -> FsPath {
    FsPath::parse(path.to_str().unwrap()).unwrap()
}

fn read(path: &Path) -> FileRequest {
    FileRequest::Read { path: at(path), offset: 0, max: None }
}

fn write(path: &Path, mode: WriteMode, content: &[u8]) -> FileRequest {
    FileRequest::Write { path: at(path), content: content.to_vec(), mode }
}

fn plant(path: &Path, mode: WriteMode) -> FileRequest {
    write(path, mode, b"planted by an agent\n")
}

fn copy(from: &Path, to: &Path) -> FileRequest {
    FileRequest::Copy { from: at(from), to: at(to) }
}

fn mv(from: &Path, to: &Path) -> FileRequest {
    FileRequest::Move { from: at(from), to: at(to) }
}

fn rename(path: &Path, name: &str) -> FileRequest {
    FileRequest::Rename { path: at(path), name: name.into() }
}

fn delete(path: &Path) -> FileRequest {
    FileRequest::Delete { path: at(path) }
}

fn mkdir(path: &Path) -> FileRequest {
    FileRequest::Mkdir { path: at(path) }
}

fn list(path: &Path) -> FileRequest {
    FileRequest::List { path: at(path) }
}

// ---- 1. attacks on the two layers ----

#[derive(Debug, Clone, Copy)]
enum Who {
    /// Granted `parent`, `rw`, `ro` (read-write), `scoped-ro` (read-only), `granted-only`.
    Work,
    /// Granted `other`.
    Family,
    /// Granted the whole file system: only layer 2 stands in its way.
    Wide,
}

#[derive(Debug)]
enum Attack {
    /// A request that must be denied by `layer`, with one security event.
    Request { who: Who, request: FileRequest, layer: Layer },
    /// A request (of `Work`) refused as malformed before it touches anything.
    Malformed(FileRequest),
    /// A path that must not even become a request.
    Unparseable(String),
    /// A folder the whitelist must refuse to open.
    Folder(PathBuf),
}

struct Attacked {
    node: Node,
    work: IdentityId,
    family: IdentityId,
    wide: IdentityId,
}

/// BASE: `parent/` (whitelisted, holds the node's data directory `parent/node`), `rw/` with links
/// to `outside/` (a symbolic link to a file, a relative one, one to the directory, a hard link),
/// `ro/` (whitelisted read-only), `scoped-ro/` (granted read-only), `other/` (another
/// identity's), `ungranted/` (whitelisted, granted to nobody), `granted-only/` (granted, not
/// whitelisted) and `outside/`, in neither layer.
fn attacked() -> Attacked {
    let folders = [("parent", RW), ("rw", RW), ("ro", RO), ("scoped-ro", RW), ("other", RW), ("ungranted", RW)];
    let node = Node::start("parent/node", &folders, |base| {
        fs::create_dir_all(base.join("outside/sub")).unwrap();
        fs::create_dir_all(base.join("granted-only")).unwrap();
        put_file(&base.join("outside/secret.txt"), b"OUTSIDE SECRET\n", 0o600, OLD);
        put_file(&base.join("outside/hard-target.txt"), b"OUTSIDE, HARD-LINKED\n", 0o644, OLD);
        put_file(&base.join("outside/sub/deep.txt"), b"OUTSIDE, DEEP\n", 0o644, OLD);
        for file in ["parent/plain.txt", "rw/a.txt", "ro/a.txt", "scoped-ro/a.txt", "other/secret.txt"] {
            put_file(&base.join(file), format!("{file}\n").as_bytes(), 0o644, OLD);
        }
        for file in ["ungranted/f.txt", "granted-only/f.txt"] {
            put_file(&base.join(file), format!("{file}\n").as_bytes(), 0o644, OLD);
        }
        symlink(base.join("outside/secret.txt"), base.join("rw/link-file")).unwrap();
        symlink("../outside/secret.txt", base.join("rw/link-rel")).unwrap();
        symlink(base.join("outside"), base.join("rw/link-dir")).unwrap();
        fs::hard_link(base.join("outside/hard-target.txt"), base.join("rw/hard.txt")).unwrap();
        fs::create_dir_all(base.join("rw/mixed")).unwrap();
        put_file(&base.join("rw/mixed/a-plain.txt"), b"plain\n", 0o644, OLD);
        fs::hard_link(base.join("outside/hard-target.txt"), base.join("rw/mixed/b-hard.txt")).unwrap();
    });
    let work = node.identity(
        "work",
        &[("parent", RW), ("rw", RW), ("ro", RW), ("scoped-ro", RO), ("granted-only", RW), ("outside/nope", RW)],
    );
    let family = node.identity("family", &[("other", RW)]);
    let wide = node.identity("wide", &[("/", RW)]);
    Attacked { node, work, family, wide }
}

fn attack_cases(node: &Node) -> Vec<(&'static str, Attack)> {
    use Attack::{Folder, Malformed, Request, Unparseable};
    use Layer::{Scope as L1, Whitelist as L2};
    use Who::{Family, Wide, Work};
    let p = |relative: &str| node.path(relative);
    let data = node.home.home().dir().to_owned();
    let denied = |who, request, layer| Request { who, request, layer };
    vec![
        // `..` never becomes a path, in a request or anywhere else.
        ("dotdot: climbing out of a root", Unparseable(format!("{}/../outside/secret.txt", p("rw").display()))),
        ("dotdot: climbing to the data dir", Unparseable(format!("{}/../parent/node/node.redb", p("rw").display()))),
        ("dotdot: a rename to a name that climbs", Malformed(rename(&p("rw/a.txt"), ".."))),
        ("dotdot: a rename to a path", Malformed(rename(&p("rw/a.txt"), "../outside/x"))),
        // The endpoint's own temporary names: making one could block a later operation there.
        ("reserved: create a temporary name", Malformed(write(&p("rw/.clawnet-9-0.new"), WriteMode::Create, b"x"))),
        ("reserved: mkdir a temporary name", Malformed(mkdir(&p("rw/.clawnet-9-0.del")))),
        ("reserved: rename to a temporary name", Malformed(rename(&p("rw/a.txt"), ".clawnet-9-0.new"))),
        ("reserved: move to a temporary name", Malformed(mv(&p("rw/a.txt"), &p("rw/.clawnet-9-1.new")))),
        // Absolute paths outside every root.
        ("absolute: read outside the scope", denied(Work, read(&p("outside/secret.txt")), L1)),
        ("absolute: read outside the whitelist", denied(Wide, read(&p("outside/secret.txt")), L2)),
        ("absolute: /etc/passwd", denied(Wide, read(Path::new("/etc/passwd")), L2)),
        ("absolute: overwrite outside", denied(Wide, plant(&p("outside/secret.txt"), WriteMode::Overwrite), L2)),
        ("absolute: create outside", denied(Wide, plant(&p("outside/new.txt"), WriteMode::Create), L2)),
        ("absolute: copy out of a root", denied(Wide, copy(&p("rw/a.txt"), &p("outside/copied.txt")), L2)),
        ("absolute: copy into a root", denied(Wide, copy(&p("outside/secret.txt"), &p("rw/stolen.txt")), L2)),
        ("absolute: move out of a root", denied(Wide, mv(&p("rw/a.txt"), &p("outside/moved.txt")), L2)),
        ("absolute: delete outside", denied(Wide, delete(&p("outside/secret.txt")), L2)),
        ("absolute: a whitelisted folder itself", denied(Work, delete(&p("rw")), L2)),
        // A symbolic link to a file outside, as the last component.
        ("symlink file: read", denied(Work, read(&p("rw/link-file")), L2)),
        ("symlink file: read (relative link)", denied(Work, read(&p("rw/link-rel")), L2)),
        ("symlink file: overwrite", denied(Work, plant(&p("rw/link-file"), WriteMode::Overwrite), L2)),
        ("symlink file: append", denied(Work, plant(&p("rw/link-rel"), WriteMode::Append), L2)),
        ("symlink file: create over it", denied(Work, plant(&p("rw/link-file"), WriteMode::Create), L2)),
        ("symlink file: copy from", denied(Work, copy(&p("rw/link-file"), &p("rw/copied.txt")), L2)),
        // A symbolic link to a directory outside, as the last component.
        ("symlink dir: list", denied(Work, list(&p("rw/link-dir")), L2)),
        (
            "symlink dir: search",
            denied(Work, FileRequest::Search { path: at(&p("rw/link-dir")), pattern: "*".into() }, L2),
        ),
        ("symlink dir: copy from", denied(Work, copy(&p("rw/link-dir"), &p("rw/copied-dir")), L2)),
        // ... and as an intermediate component.
        ("symlink inside: read", denied(Work, read(&p("rw/link-dir/secret.txt")), L2)),
        ("symlink inside: stat", denied(Work, FileRequest::Stat { path: at(&p("rw/link-dir/secret.txt")) }, L2)),
        ("symlink inside: list", denied(Work, list(&p("rw/link-dir/sub")), L2)),
        ("symlink inside: create", denied(Work, plant(&p("rw/link-dir/new.txt"), WriteMode::Create), L2)),
        ("symlink inside: overwrite", denied(Work, plant(&p("rw/link-dir/secret.txt"), WriteMode::Overwrite), L2)),
        ("symlink inside: append", denied(Work, plant(&p("rw/link-dir/secret.txt"), WriteMode::Append), L2)),
        ("symlink inside: mkdir", denied(Work, mkdir(&p("rw/link-dir/newdir")), L2)),
        ("symlink inside: delete", denied(Work, delete(&p("rw/link-dir/secret.txt")), L2)),
        ("symlink inside: delete a tree", denied(Work, delete(&p("rw/link-dir/sub")), L2)),
        ("symlink inside: rename", denied(Work, rename(&p("rw/link-dir/secret.txt"), "x"), L2)),
        ("symlink inside: copy from", denied(Work, copy(&p("rw/link-dir/secret.txt"), &p("rw/stolen.txt")), L2)),
        ("symlink inside: copy to", denied(Work, copy(&p("rw/a.txt"), &p("rw/link-dir/planted.txt")), L2)),
        ("symlink inside: move from", denied(Work, mv(&p("rw/link-dir/secret.txt"), &p("rw/stolen.txt")), L2)),
        ("symlink inside: move to", denied(Work, mv(&p("rw/a.txt"), &p("rw/link-dir/moved.txt")), L2)),
        // A hard link inside the root to a file outside.
        ("hard link: read", denied(Work, read(&p("rw/hard.txt")), L2)),
        ("hard link: overwrite", denied(Work, plant(&p("rw/hard.txt"), WriteMode::Overwrite), L2)),
        ("hard link: append", denied(Work, plant(&p("rw/hard.txt"), WriteMode::Append), L2)),
        ("hard link: copy from", denied(Work, copy(&p("rw/hard.txt"), &p("rw/hard-copy.txt")), L2)),
        ("hard link: delete", denied(Work, delete(&p("rw/hard.txt")), L2)),
        ("hard link: delete a tree holding one", denied(Work, delete(&p("rw/mixed")), L2)),
        ("hard link: move a tree holding one", denied(Work, mv(&p("rw/mixed"), &p("rw/moved")), L2)),
        ("hard link: copy a tree holding one", denied(Work, copy(&p("rw/mixed"), &p("rw/copied")), L2)),
        // The node's data directory and keys: never a folder, never reached from one.
        ("data dir: whitelist the data dir", Folder(data.clone())),
        ("data dir: whitelist a folder inside it", Folder(data.join("files"))),
        ("data dir: whitelist the backup store", Folder(data.join("files/blobs"))),
        ("data dir: read the database", denied(Work, read(&database_path(&data)), L2)),
        ("data dir: list it", denied(Work, list(&data), L2)),
        ("data dir: list the backups", denied(Work, list(&data.join("files/blobs")), L2)),
        ("data dir: overwrite the database", denied(Work, plant(&database_path(&data), WriteMode::Overwrite), L2)),
        ("data dir: copy it out", denied(Work, copy(&data, &p("parent/exfiltrated")), L2)),
        ("data dir: move it", denied(Work, mv(&data, &p("parent/moved")), L2)),
        ("data dir: rename it", denied(Work, rename(&data, "renamed"), L2)),
        ("data dir: delete it", denied(Work, delete(&data), L2)),
        ("data dir: overwrite it as a file", denied(Work, plant(&data, WriteMode::Overwrite), L2)),
        // Read-only in one layer.
        ("read-only L1: create", denied(Work, plant(&p("scoped-ro/new.txt"), WriteMode::Create), L1)),
        ("read-only L1: overwrite", denied(Work, plant(&p("scoped-ro/a.txt"), WriteMode::Overwrite), L1)),
        ("read-only L1: delete", denied(Work, delete(&p("scoped-ro/a.txt")), L1)),
        ("read-only L1: move out", denied(Work, mv(&p("scoped-ro/a.txt"), &p("rw/taken.txt")), L1)),
        ("read-only L2: create", denied(Work, plant(&p("ro/new.txt"), WriteMode::Create), L2)),
        ("read-only L2: overwrite", denied(Work, plant(&p("ro/a.txt"), WriteMode::Overwrite), L2)),
        ("read-only L2: mkdir", denied(Work, mkdir(&p("ro/newdir")), L2)),
        ("read-only L2: delete", denied(Work, delete(&p("ro/a.txt")), L2)),
        ("read-only L2: move out", denied(Work, mv(&p("ro/a.txt"), &p("rw/taken.txt")), L2)),
        ("read-only L2: copy in", denied(Work, copy(&p("rw/a.txt"), &p("ro/copied.txt")), L2)),
        // Another identity's root.
        ("other identity: read", denied(Work, read(&p("other/secret.txt")), L1)),
        ("other identity: overwrite", denied(Work, plant(&p("other/secret.txt"), WriteMode::Overwrite), L1)),
        ("other identity: copy out", denied(Work, copy(&p("other/secret.txt"), &p("rw/leak.txt")), L1)),
        ("other identity: move in", denied(Work, mv(&p("rw/a.txt"), &p("other/a.txt")), L1)),
        ("other identity: the reverse", denied(Family, read(&p("rw/a.txt")), L1)),
        // One layer allows, the other does not.
        ("L1 yes, L2 no: read", denied(Work, read(&p("granted-only/f.txt")), L2)),
        ("L1 yes, L2 no: create", denied(Work, plant(&p("granted-only/new.txt"), WriteMode::Create), L2)),
        ("L1 yes, L2 no: a missing folder", denied(Work, plant(&p("outside/nope/x.txt"), WriteMode::Create), L2)),
        ("L1 no, L2 yes: read", denied(Work, read(&p("ungranted/f.txt")), L1)),
        ("L1 no, L2 yes: delete", denied(Work, delete(&p("ungranted/f.txt")), L1)),
    ]
}

/// Everything under BASE but the database and the endpoint's note of its current change (which
/// the node rewrites as it works).
fn everything(node: &Node) -> Tree {
    let database = database_path(node.home.home().dir());
    let intent = node.home.home().dir().join("files/intent");
    Tree::of_except(&node.base, |path| path == database || path == intent)
}

fn check_attack(fixture: &Attacked, attack: &Attack) -> anyhow::Result<()> {
    let node = &fixture.node;
    let before = everything(node);
    let outside: Vec<Vec<u8>> = ["outside/secret.txt", "outside/hard-target.txt", "outside/sub/deep.txt"]
        .iter()
        .map(|file| fs::read(node.path(file)).unwrap())
        .collect();
    let events_before = node.security_events().len();
    let mut new_events = 0;
    match attack {
        Attack::Request { who, request, layer } => {
            let identity = match who {
                Who::Work => fixture.work,
                Who::Family => fixture.family,
                Who::Wide => fixture.wide,
            };
            match node.files.request(identity, None, request.clone()) {
                Err(FileError::Denied { layer: got, reason }) => {
                    ensure!(got == *layer, "denied by {} ({reason}), expected {}", got.label(), layer.label());
                }
                other => bail!("expected a denial by {}, got {other:?}", layer.label()),
            }
            new_events = 1;
            let events = node.security_events();
            ensure!(events.len() == events_before + 1, "{} new security events", events.len() - events_before);
            let event = events.last().unwrap();
            ensure!(event.actor == Actor::Identity(identity), "the event names {:?}", event.actor);
            ensure!(event.action == "security.files", "the event's action is {}", event.action);
            ensure!(
                event.object.starts_with(&format!("{} ", request.name())),
                "the event's object {:?} does not name the operation {}",
                event.object,
                request.name()
            );
            ensure!(
                event.basis == layer.label(),
                "the event's basis {:?} does not name {}",
                event.basis,
                layer.label()
            );
            ensure!(matches!(event.outcome, Outcome::Denied(_)), "the event's outcome is {:?}", event.outcome);
        }
        Attack::Malformed(request) => match node.files.request(fixture.work, None, request.clone()) {
            Err(FileError::Invalid(_)) => {}
            other => bail!("expected the request to be refused as malformed, got {other:?}"),
        },
        Attack::Unparseable(text) => {
            ensure!(FsPath::parse(text).is_err(), "{text} parsed");
            // However the request is built (an agent's tool call is JSON), it is never made.
            let good = node.path("rw/x");
            let good = good.to_str().unwrap();
            let requests = |path: &str| {
                [
                    serde_json::json!({"read": {"path": path}}),
                    serde_json::json!({"write": {"path": path, "content": [65], "mode": "overwrite"}}),
                    serde_json::json!({"delete": {"path": path}}),
                    serde_json::json!({"copy": {"from": path, "to": good}}),
                ]
            };
            for op in requests(good) {
                ensure!(serde_json::from_value::<FileRequest>(op.clone()).is_ok(), "{op} is not a request's shape");
            }
            for op in requests(text) {
                ensure!(serde_json::from_value::<FileRequest>(op.clone()).is_err(), "{op} became a request");
            }
        }
        Attack::Folder(folder) => {
            let folders = [FolderConfig { path: folder.clone(), access: RW }];
            match GovernedFiles::open(&endpoint_config(node.home.home().dir(), &folders), node.home.db().clone()) {
                Err(FileError::Config(message)) if message.contains("may never reach") => {}
                Err(other) => bail!("refused, but not as a protected location: {other}"),
                Ok(_) => bail!("the whitelist accepted {}", folder.display()),
            }
        }
    }
    let events = node.security_events().len();
    ensure!(
        events == events_before + new_events,
        "{} new security events, expected {new_events}",
        events - events_before
    );
    // The backup store's own time may move (a tree is saved as it is read, and released when
    // an entry deep inside is refused); what is in it may not.
    let changes = before.differences(&everything(node), Times::ExceptDirs(&["parent/node/files/blobs"]));
    ensure!(changes.is_empty(), "the file system changed:\n  {}", changes.join("\n  "));
    for (file, content) in ["outside/secret.txt", "outside/hard-target.txt", "outside/sub/deep.txt"].iter().zip(outside)
    {
        ensure!(fs::read(node.path(file)).unwrap() == content, "{file} changed");
    }
    Ok(())
}

#[test]
fn every_attack_on_the_two_layers_is_denied_recorded_and_changes_nothing() {
    let fixture = attacked();
    let cases = attack_cases(&fixture.node);
    let mut failures = Vec::new();
    for (name, attack) in &cases {
        if let Err(err) = check_attack(&fixture, attack) {
            failures.push(format!("{name}: {err:#}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attacks were not handled:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The protected data directory is not even found by a search of the folder that holds it.
    let search = FileRequest::Search { path: at(&fixture.node.path("parent")), pattern: "*redb*".into() };
    match fixture.node.files.request(fixture.work, None, search).unwrap() {
        FileReply::Entries { entries, .. } => assert!(entries.is_empty(), "search found {entries:?}"),
        other => panic!("a search answered {other:?}"),
    }
    // The folders still work for what the layers allow.
    let allowed = fixture.node.files.request(fixture.work, None, read(&fixture.node.path("rw/a.txt"))).unwrap();
    assert_eq!(allowed, FileReply::Content { bytes: b"rw/a.txt\n".to_vec(), total: 9 });
}

// ---- 2. a symbolic link swapped in after the check ----

#[test]
fn a_symlink_swapped_in_while_requests_run_never_reaches_outside() {
    let node = Node::start("node", &[("rw", RW)], |base| {
        fs::create_dir_all(base.join("rw/swap")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        put_file(&base.join("rw/swap/f.txt"), b"inside 0\n", 0o644, OLD);
        put_file(&base.join("outside/f.txt"), b"OUTSIDE SECRET\n", 0o600, OLD);
        symlink(base.join("outside"), base.join("rw/swap-alt")).unwrap();
    });
    let work = node.identity("work", &[("rw", RW)]);
    let outside_before = Tree::of(&node.path("outside"));
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let (dir, link) = (node.path("rw/swap"), node.path("rw/swap-alt"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &dir,
                    rustix::fs::CWD,
                    &link,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (mut done, mut denied) = (0usize, 0usize);
    let mut created = Vec::new();
    let file = node.path("rw/swap/f.txt");
    for round in 0..200 {
        let request = match round % 4 {
            0 | 2 => read(&file),
            1 => write(&file, WriteMode::Overwrite, format!("inside {round}\n").as_bytes()),
            _ => write(&node.path(&format!("rw/swap/new-{round}.txt")), WriteMode::Create, b"inside, new\n"),
        };
        match node.files.request(work, None, request.clone()) {
            Ok(FileReply::Content { bytes, .. }) => {
                assert!(bytes.starts_with(b"inside"), "a read returned {:?}", String::from_utf8_lossy(&bytes));
                done += 1;
            }
            Ok(FileReply::Done { .. }) => {
                if round % 4 == 3 {
                    created.push(format!("new-{round}.txt"));
                }
                done += 1;
            }
            Err(FileError::Denied { layer: Layer::Whitelist, .. }) => denied += 1,
            other => panic!("{} {}: {other:?}", request.name(), request.describe()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let changes = outside_before.differences(&Tree::of(&node.path("outside")), Times::All);
    assert!(changes.is_empty(), "outside changed:\n{}", changes.join("\n"));
    // Every write that was done landed in the real directory, wherever the swaps left it.
    let real = ["rw/swap", "rw/swap-alt"].into_iter().map(|dir| node.path(dir)).find(|dir| !dir.is_symlink()).unwrap();
    for name in &created {
        assert!(real.join(name).is_file(), "{name} was created but is not in the real directory");
    }
    assert_eq!(node.security_events().len(), denied, "one security event per denial");
    eprintln!("{done} requests done, {denied} denied, {} swaps", swaps.load(Ordering::Relaxed));
    assert!(done > 0 && denied > 0, "the race never happened both ways ({done} done, {denied} denied)");
}

// ---- 3. undo puts back exactly what was there ----

/// A tree with files of different permissions and times, links, and nested directories.
fn populate(dir: &Path) {
    fs::create_dir_all(dir.join("tree/nested")).unwrap();
    put_file(&dir.join("a.txt"), b"alpha\n", 0o644, OLD + 1);
    put_file(&dir.join("tool.sh"), b"#!/bin/sh\necho hi\n", 0o755, OLD + 2);
    put_file(&dir.join("private"), b"key material\n", 0o600, OLD + 3);
    put_file(&dir.join("tree/inner.txt"), b"inner\n", 0o640, OLD + 4);
    put_file(&dir.join("tree/ro.txt"), b"read only\n", 0o444, OLD + 5);
    put_file(&dir.join("tree/nested/deep.bin"), &(0..=255u8).collect::<Vec<_>>(), 0o604, OLD + 6);
    // Large enough that its backup is saved while the new content is staged.
    let large: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect();
    put_file(&dir.join("large.bin"), &large, 0o640, OLD + 10);
    symlink("inner.txt", dir.join("tree/link")).unwrap();
    symlink("/nonexistent/target", dir.join("tree/dangling")).unwrap();
    fs::set_permissions(dir.join("tree/nested"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(dir.join("tree"), fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&dir.join("tree/nested"), OLD + 7, 7);
    set_mtime(&dir.join("tree"), OLD + 8, 8);
    set_mtime(dir, OLD + 9, 9);
}

#[test]
fn undo_of_every_primitive_restores_the_tree_exactly() {
    let node = Node::start("node", &[("rw", RW)], |_| {});
    let work = node.identity("work", &[("rw", RW)]);
    // (name, the request in case directory C, directories whose entries it changes)
    type Primitive = (&'static str, fn(&Path) -> FileRequest, &'static [&'static str]);
    let primitives: [Primitive; 14] = [
        ("create", |c| write(&c.join("new.txt"), WriteMode::Create, b"new\n"), &[""]),
        ("overwrite", |c| write(&c.join("a.txt"), WriteMode::Overwrite, b"replaced\n"), &[""]),
        ("append", |c| write(&c.join("tool.sh"), WriteMode::Append, b"echo more\n"), &[""]),
        ("overwrite a large file", |c| write(&c.join("large.bin"), WriteMode::Overwrite, &[7; 4096]), &[""]),
        ("append to a large file", |c| write(&c.join("large.bin"), WriteMode::Append, b"tail\n"), &[""]),
        ("mkdir", |c| mkdir(&c.join("newdir")), &[""]),
        ("move a file", |c| mv(&c.join("a.txt"), &c.join("tree/nested/a.txt")), &["", "tree/nested"]),
        ("move a tree", |c| mv(&c.join("tree/nested"), &c.join("nested")), &["", "tree"]),
        ("rename", |c| rename(&c.join("private"), "renamed"), &[""]),
        ("copy a file", |c| copy(&c.join("a.txt"), &c.join("tree/a-copy.txt")), &["tree"]),
        ("copy a tree", |c| copy(&c.join("tree"), &c.join("tree-copy")), &[""]),
        ("delete a file", |c| delete(&c.join("private")), &[""]),
        ("delete a read-only file", |c| delete(&c.join("tree/ro.txt")), &["tree"]),
        ("delete a tree with links", |c| delete(&c.join("tree")), &[""]),
    ];
    let mut failures = Vec::new();
    for (index, (name, request, changed_dirs)) in primitives.iter().enumerate() {
        let case = node.path(&format!("rw/case-{index}"));
        fs::create_dir(&case).unwrap();
        populate(&case);
        let before = Tree::of(&case);
        let op = node.change(work, None, request(&case));
        let changed = before.differences(&Tree::of(&case), Times::All);
        if changed.is_empty() {
            failures.push(format!("{name}: the operation changed nothing"));
            continue;
        }
        let undo = match node.files.undo(op) {
            Ok(undo) => undo,
            Err(err) => {
                failures.push(format!("{name}: undo failed: {err}"));
                continue;
            }
        };
        let differences = before.differences(&Tree::of(&case), Times::ExceptDirs(changed_dirs));
        if !differences.is_empty() {
            failures.push(format!("{name}: after undo:\n    {}", differences.join("\n    ")));
        }
        if node.record(op).state != (FileOpState::Undone { by: undo }) {
            failures.push(format!("{name}: the journal says {:?}", node.record(op).state));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn undo_refuses_when_the_file_changed_since_and_when_already_undone() {
    let node = Node::start("node", &[("rw", RW)], |base| populate(&base.join("rw")));
    let work = node.identity("work", &[("rw", RW)]);
    let rw = node.path("rw");
    // Changed by someone else after the operation: undo would lose that change.
    let op = node.change(work, None, write(&rw.join("a.txt"), WriteMode::Overwrite, b"by the agent\n"));
    fs::write(rw.join("a.txt"), b"by the owner, later\n").unwrap();
    let before = Tree::of(&rw);
    match node.files.undo(op) {
        Err(FileError::Conflict { op: conflict, path }) => {
            assert_eq!((conflict, path.as_str()), (op, rw.join("a.txt").to_str().unwrap()));
        }
        other => panic!("undo after a later change: {other:?}"),
    }
    assert_eq!(before.differences(&Tree::of(&rw), Times::All), Vec::<String>::new());
    assert_eq!(node.record(op).state, FileOpState::Done);
    // A tree changed inside after its move.
    let op = node.change(work, None, mv(&rw.join("tree"), &rw.join("moved")));
    fs::write(rw.join("moved/inner.txt"), b"edited\n").unwrap();
    let before = Tree::of(&rw);
    assert!(matches!(node.files.undo(op), Err(FileError::Conflict { .. })));
    assert_eq!(before.differences(&Tree::of(&rw), Times::All), Vec::<String>::new());
    // Undone once; the second undo does nothing.
    let op = node.change(work, None, delete(&rw.join("tool.sh")));
    node.files.undo(op).unwrap();
    let before = Tree::of(&rw);
    assert!(matches!(node.files.undo(op), Err(FileError::NotUndoable(_))), "a second undo ran");
    assert_eq!(before.differences(&Tree::of(&rw), Times::All), Vec::<String>::new());
    assert!(matches!(node.files.undo(9999), Err(FileError::NotUndoable(_))));
}

#[test]
fn a_tree_delete_that_cannot_remove_everything_still_counts_as_done() {
    let node = Node::start("node", &[("rw", RW)], |base| {
        fs::create_dir_all(base.join("rw/tree/sub")).unwrap();
        fs::write(base.join("rw/tree/sub/locked.txt"), b"immutable\n").unwrap();
        fs::write(base.join("rw/tree/plain.txt"), b"plain\n").unwrap();
    });
    let work = node.identity("work", &[("rw", RW)]);
    let rw = node.path("rw");
    let locked = rw.join("tree/sub/locked.txt");
    let chattr = |flag: &str, path: &Path| {
        let status = Command::new("chattr").arg(flag).arg(path).status().expect("chattr (e2fsprogs) is installed");
        assert!(status.success(), "chattr {flag}: an immutable file is how this test makes an unlink fail");
    };
    chattr("+i", &locked);
    let before = Tree::of(&rw);
    let op = node.change(work, None, delete(&rw.join("tree")));
    // Done: the tree is out of sight; what could not be removed waits under the reserved name.
    assert_eq!(node.record(op).state, FileOpState::Done);
    assert!(!rw.join("tree").exists());
    let aside = rw.join(format!(".clawnet-{op}-0.del"));
    assert!(aside.join("sub/locked.txt").exists(), "the immutable file is not where the owner is told to look");
    // The owner unlocks and removes it; undo brings the tree back exactly.
    chattr("-i", &aside.join("sub/locked.txt"));
    fs::remove_dir_all(&aside).unwrap();
    node.files.undo(op).unwrap();
    assert_eq!(before.differences(&Tree::of(&rw), Times::ExceptDirs(&[""])), Vec::<String>::new());
}

#[test]
fn a_change_refused_after_saving_leaves_no_backup_linked_to_the_live_file() {
    // The endpoint backs a file up by linking it into the store, then cannot go on (something
    // already sits at the name it stages the new content under): the file must be singly
    // linked again, or it would be refused as a hard link from then on, and the backup would
    // change with it.
    let node = Node::start("node", &[("rw", RW)], |base| put_file(&base.join("rw/notes.txt"), b"notes\n", 0o644, OLD));
    let work = node.identity("work", &[("rw", RW)]);
    let notes = node.path("rw/notes.txt");
    let next = node.home.db().read().unwrap().next_file_op().unwrap();
    fs::create_dir(node.path(&format!("rw/.clawnet-{next}-0.new"))).unwrap();
    let before = everything(&node);
    let refused = node.files.request(work, None, write(&notes, WriteMode::Overwrite, b"new notes\n"));
    assert!(matches!(&refused, Err(FileError::Io { .. })), "{refused:?}");
    let unchanged = before.differences(&everything(&node), Times::ExceptDirs(&["node/files/blobs"]));
    assert_eq!(unchanged, Vec::<String>::new());
    assert_eq!(fs::metadata(&notes).unwrap().nlink(), 1, "the backup still shares the live file's inode");
    fs::remove_dir(node.path(&format!("rw/.clawnet-{next}-0.new"))).unwrap();
    node.change(work, None, write(&notes, WriteMode::Overwrite, b"new notes\n"));
}

#[test]
fn undo_rechecks_the_whitelist_whatever_the_journal_says() {
    let node = Node::start("node", &[("rw", RW)], |base| {
        populate(&base.join("rw"));
        fs::create_dir_all(base.join("outside")).unwrap();
        put_file(&base.join("outside/secret.txt"), b"OUTSIDE SECRET\n", 0o600, OLD);
        symlink(base.join("outside"), base.join("rw/link-dir")).unwrap();
    });
    let work = node.identity("work", &[("rw", RW)]);
    let rw = node.path("rw");
    let secret = node.path("outside/secret.txt");
    let secret_print = {
        let meta = fs::symlink_metadata(&secret).unwrap();
        fingerprint_of(&meta)
    };
    // Each: an operation, then its journal entry rewritten so that undoing it would remove,
    // replace or create something outside the whitelist (directly, or through a link).
    type Tamper<'a> = Box<dyn Fn(&mut FileOpRecord) + 'a>;
    let tampers: [(&str, FileRequest, Tamper<'_>); 4] = [
        (
            "an undone create removes the outside file",
            write(&rw.join("created.txt"), WriteMode::Create, b"x"),
            Box::new(|record| {
                record.kind = FileOpKind::Create { path: secret.to_str().unwrap().into() };
                record.changes[0].path = secret.to_str().unwrap().into();
                record.changes[0].after = Some(secret_print.clone());
            }),
        ),
        (
            "an undone delete plants a file outside",
            delete(&rw.join("private")),
            Box::new(|record| record.changes[0].path = node.path("outside/planted").to_str().unwrap().into()),
        ),
        (
            "an undone overwrite replaces the outside file through a link",
            write(&rw.join("a.txt"), WriteMode::Overwrite, b"y"),
            Box::new(|record| {
                record.changes[0].path = rw.join("link-dir/secret.txt").to_str().unwrap().into();
                record.changes[0].after = Some(secret_print.clone());
            }),
        ),
        (
            "an undone move moves a file out",
            mv(&rw.join("tool.sh"), &rw.join("tool-moved.sh")),
            Box::new(|record| record.changes[0].path = node.path("outside/moved-out").to_str().unwrap().into()),
        ),
    ];
    for (name, request, tamper) in &tampers {
        let op = node.change(work, None, request.clone());
        let original = node.record(op);
        let mut record = original.clone();
        tamper(&mut record);
        tamper_with_file_op(node.home.db(), &record).unwrap();
        let before = everything(&node);
        let events = node.security_events().len();
        match node.files.undo(op) {
            Err(FileError::Denied { layer: Layer::Whitelist, .. }) => {}
            other => panic!("{name}: undo of a tampered entry: {other:?}"),
        }
        let changes = before.differences(&everything(&node), Times::All);
        assert!(changes.is_empty(), "{name}: the file system changed:\n{}", changes.join("\n"));
        let all = node.security_events();
        assert_eq!(all.len(), events + 1, "{name}: one security event");
        let event = all.last().unwrap();
        assert_eq!(event.actor, Actor::Owner, "{name}");
        assert_eq!(event.action, "security.files", "{name}");
        assert_eq!(event.basis, Layer::Whitelist.label(), "{name}");
        assert!(event.object.contains(&format!("undo of operation {op}")), "{name}: {}", event.object);
        // The entry as the endpoint wrote it undoes: the denial was the tampering's doing.
        tamper_with_file_op(node.home.db(), &original).unwrap();
        node.files.undo(op).unwrap_or_else(|err| panic!("{name}: undo of the genuine entry: {err}"));
    }
    assert_eq!(fs::read(&secret).unwrap(), b"OUTSIDE SECRET\n");
}

fn fingerprint_of(meta: &fs::Metadata) -> Fingerprint {
    Fingerprint::File {
        len: meta.len(),
        meta: EntryMeta {
            mode: meta.mode() & 0o7777,
            mtime_secs: meta.mtime(),
            mtime_nanos: u32::try_from(meta.mtime_nsec()).unwrap(),
        },
    }
}

// ---- 4. rollback of a session ----

/// Paths below `root` (relative), directories and other entries apart, `root` excluded.
fn entries_below(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>) {
    let tree = Tree::of(root);
    let (mut dirs, mut files, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for (path, entry) in tree.0 {
        match entry.content {
            _ if path.as_os_str().is_empty() => {}
            Content::Dir => dirs.push(path),
            Content::File(_) => files.push(path),
            Content::Symlink(_) => others.push(path),
        }
    }
    (dirs, files, others)
}

/// A valid change under `root` (made of the current tree), chosen by `dice`.
fn random_change(dice: &mut Dice, root: &Path, step: usize) -> FileRequest {
    let (dirs, files, others) = entries_below(root);
    let mut parents = vec![PathBuf::new()];
    parents.extend(dirs.iter().cloned());
    let movable: Vec<PathBuf> = dirs.iter().chain(&files).chain(&others).cloned().collect();
    let pick = |dice: &mut Dice, from: &[PathBuf]| from[dice.below(from.len())].clone();
    let content = |dice: &mut Dice| format!("step {step}\n").repeat(1 + dice.below(40)).into_bytes();
    let kind = dice.below(8);
    match kind {
        1 | 2 if !files.is_empty() => {
            let mode = if kind == 1 { WriteMode::Overwrite } else { WriteMode::Append };
            write(&root.join(pick(dice, &files)), mode, &content(dice))
        }
        3 => mkdir(&root.join(pick(dice, &parents)).join(format!("d{step}"))),
        4..=7 if !movable.is_empty() => {
            let source = pick(dice, &movable);
            let outside_source: Vec<PathBuf> =
                parents.iter().filter(|dir| !dir.starts_with(&source)).cloned().collect();
            match kind {
                4 => mv(&root.join(&source), &root.join(pick(dice, &outside_source)).join(format!("m{step}"))),
                5 => rename(&root.join(&source), &format!("r{step}")),
                // A link is never followed, so one cannot be a copy's source (inside a copied
                // tree it is copied as a link).
                6 if others.contains(&source) => delete(&root.join(&source)),
                6 => copy(&root.join(&source), &root.join(pick(dice, &outside_source)).join(format!("c{step}"))),
                _ => delete(&root.join(&source)),
            }
        }
        _ => write(&root.join(pick(dice, &parents)).join(format!("n{step}.txt")), WriteMode::Create, &content(dice)),
    }
}

#[test]
fn rollback_of_a_session_restores_its_tree_and_keeps_another_sessions_changes() {
    let node = Node::start("node", &[("rw", RW)], |base| {
        populate(&base.join("rw/session"));
        fs::create_dir_all(base.join("rw/side")).unwrap();
        put_file(&base.join("rw/side/log.txt"), b"side\n", 0o644, OLD);
    });
    let work = node.identity("work", &[("rw", RW)]);
    let (ours, theirs) = (SessionId::random(), SessionId::random());
    let (root, side) = (node.path("rw/session"), node.path("rw/side"));
    let initial = Tree::of(&root);
    let mut dice = Dice::new(2024);
    let mut our_ops = Vec::new();
    let mut kinds = BTreeSet::new();
    for step in 0..100 {
        let request = random_change(&mut dice, &root, step);
        kinds.insert(request.name());
        our_ops.push(node.change(work, Some(ours), request));
        if step % 4 == 0 {
            let request = match step % 3 {
                0 => write(&side.join(format!("s{step}.txt")), WriteMode::Create, b"theirs\n"),
                1 => write(&side.join("log.txt"), WriteMode::Append, format!("step {step}\n").as_bytes()),
                _ => mkdir(&side.join(format!("sd{step}"))),
            };
            node.change(work, Some(theirs), request);
        }
    }
    assert_eq!(kinds.len(), 8, "the mix covers every primitive: {kinds:?}");
    let theirs_done = Tree::of(&side);
    // The dry run: exactly our operations, newest first, and nothing on disk moves.
    let whole = Tree::of(&node.path("rw"));
    let filter = RollbackFilter { session: Some(ours), ..RollbackFilter::default() };
    let plan = node.files.plan_rollback(&filter).unwrap();
    let newest_first: Vec<u64> = our_ops.iter().rev().copied().collect();
    assert_eq!(plan.operations, newest_first);
    assert_eq!(plan.conflicts, Vec::new());
    assert_eq!(whole.differences(&Tree::of(&node.path("rw")), Times::All), Vec::<String>::new());
    // The rollback.
    let undone = node.files.rollback(&filter).unwrap();
    assert_eq!(undone.len(), our_ops.len());
    // Directories that stayed have new times (entries came and went); everything else is exact.
    let differences = initial.differences(&Tree::of(&root), Times::FilesOnly);
    assert!(differences.is_empty(), "the session's tree after rollback:\n{}", differences.join("\n"));
    assert_eq!(theirs_done.differences(&Tree::of(&side), Times::All), Vec::<String>::new());
    for op in our_ops {
        assert!(matches!(node.record(op).state, FileOpState::Undone { .. }), "operation {op} not undone");
    }
    assert!(node.files.plan_rollback(&filter).unwrap().operations.is_empty());
}

// ---- 5. a process killed during operations ----

/// Runs the file worker for round `round`, kills it with SIGKILL `after` its start, and returns
/// every tag it said it was about to write.
fn run_worker_and_kill(data: &Path, folder: &Path, identity: IdentityId, round: u64, after: Duration) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_file-worker"))
        .arg(data)
        .arg(folder)
        .arg(identity.to_hex())
        .arg((round * 7919 + 1).to_string())
        .arg(round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("file-worker starts");
    let (sender, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if sender.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let ready = lines.recv_timeout(Duration::from_secs(30)).expect("the worker did not start");
    assert_eq!(ready, "ready");
    std::thread::sleep(after);
    if let Some(status) = child.try_wait().unwrap() {
        panic!("round {round}: the worker stopped by itself ({status}); its error is above");
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, no clean close.
    child.wait().unwrap();
    reader.join().unwrap();
    lines.try_iter().filter_map(|line| line.strip_prefix("attempt ").map(str::to_owned)).collect()
}

/// How many times the file worker is killed.
const ROUNDS: u64 = 16;

/// The state of `path` as a journal fingerprint.
fn current_fingerprint(path: &Path) -> Fingerprint {
    match fs::symlink_metadata(path) {
        Ok(meta) => fingerprint_of(&meta),
        Err(_) => Fingerprint::Absent,
    }
}

#[test]
fn a_kill_during_file_operations_leaves_the_old_or_the_new_state_with_its_backup() {
    let temp = tempfile::tempdir().unwrap();
    let base = temp.path().canonicalize().unwrap();
    let (data, folder) = (base.join("node"), base.join("work"));
    fs::create_dir_all(&folder).unwrap();
    let mut tags: BTreeSet<String> = BTreeSet::new();
    for name in &FILE_NAMES[..4] {
        let tag = format!("initial-{name}");
        put_file(&folder.join(name), &file_crash::version(&tag), 0o640, OLD);
        tags.insert(tag);
    }
    let initial: Vec<Fingerprint> = FILE_NAMES.iter().map(|name| current_fingerprint(&folder.join(name))).collect();
    let folders = [FolderConfig { path: folder.clone(), access: RW }];
    let config = endpoint_config(&data, &folders);
    let identity = {
        let home = NodeHome::init(&data, "Ada", KeyProtection::None).unwrap();
        let identity = home.create_identity("work", "the work identity").unwrap().id;
        let files = GovernedFiles::open(&config, home.db().clone()).unwrap();
        files.grant(identity, &at(&folder), RW).unwrap();
        identity
    };
    let mut dice = Dice::new(99);
    let started = Instant::now();
    // How often the kill fell before a change's journal commit, and after it but before the
    // change was (wholly) applied.
    let (mut before_commit, mut after_commit) = (0, 0);
    for round in 0..ROUNDS {
        let after = Duration::from_millis(5 + dice.roll() % 60);
        tags.extend(run_worker_and_kill(&data, &folder, identity, round, after));
        let home = NodeHome::open(&data).unwrap().unlock(passphrase::for_unlock).unwrap();
        let (next, last_committed) = {
            let view = home.db().read().unwrap();
            let next = view.next_file_op().unwrap();
            (next, view.file_op(next - 1).unwrap())
        };
        let noted: Option<serde_json::Value> = fs::read(data.join("files/intent"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(bytes.trim_ascii_end()).ok());
        before_commit += usize::from(noted.is_some_and(|note| note["op"].as_u64() >= Some(next)));
        after_commit += usize::from(last_committed.is_some_and(|record| {
            record.changes.iter().any(|change| Some(current_fingerprint(Path::new(&change.path))) != change.after)
        }));
        let files = GovernedFiles::open(&config, home.db().clone()).unwrap(); // rolls forward
        let records = files.history(&RollbackFilter::default()).unwrap();
        let context = format!("round {round} ({} operations in the journal)", records.len());
        // Nothing left unsettled.
        for record in &records {
            assert!(
                matches!(record.state, FileOpState::Done | FileOpState::Abandoned | FileOpState::Undone { .. }),
                "{context}: operation {} is {:?}",
                record.number,
                record.state
            );
        }
        let last = records.last().map_or(0, |record| record.number);
        assert_eq!(home.db().read().unwrap().file_ops_settled().unwrap(), last, "{context}: settled mark");
        // Only the worker's files, each as the last operation that touched it left it, holding
        // one of the versions written.
        let mut names: Vec<String> =
            fs::read_dir(&folder).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
        names.retain(|name| !FILE_NAMES.contains(&name.as_str()));
        assert_eq!(names, Vec::<String>::new(), "{context}: stray entries in the folder");
        for (index, name) in FILE_NAMES.iter().enumerate() {
            let path = folder.join(name);
            let text = path.to_str().unwrap();
            let explained = records
                .iter()
                .filter(|record| record.state != FileOpState::Abandoned)
                .flat_map(|record| &record.changes)
                .rfind(|change| change.path == text)
                .map_or(initial[index].clone(), |change| change.after.clone().unwrap());
            assert_eq!(current_fingerprint(&path), explained, "{context}: {name} is not as the journal says");
            if let Ok(content) = fs::read(&path) {
                let tag = file_crash::tag_of(&content);
                assert!(tag.is_some_and(|tag| tags.contains(tag)), "{context}: {name} holds content never written");
            }
        }
        // Every backup a done change relies on is in the store, named by its content's hash, and
        // shares its inode with no live file.
        let blobs = data.join("files/blobs");
        for record in records.iter().filter(|record| record.state != FileOpState::Abandoned) {
            for change in &record.changes {
                for hash in change.saved.iter().flat_map(SavedEntry::blobs) {
                    let blob = blobs.join(hash.to_hex());
                    let content = fs::read(&blob).unwrap_or_else(|err| {
                        panic!("{context}: the backup of operation {} is missing: {err}", record.number)
                    });
                    assert_eq!(hex_sha256(&content), hash.to_hex(), "{context}: blob {} is damaged", hash.to_hex());
                    assert_eq!(fs::metadata(&blob).unwrap().nlink(), 1, "{context}: blob {} is linked", hash.to_hex());
                }
            }
        }
        home.db().verify_audit().unwrap_or_else(|err| panic!("{context}: the audit chain: {err}"));
        // The last done operation undoes to what was there before it.
        if let Some(record) = records.iter().rev().find(|record| record.state == FileOpState::Done) {
            let undo = files.undo(record.number).unwrap_or_else(|err| panic!("{context}: undo: {err}"));
            let journal = files.history(&RollbackFilter::default()).unwrap();
            assert_eq!(journal.last().unwrap().number, undo, "{context}");
            for change in &record.changes {
                let path = Path::new(&change.path);
                assert_eq!(current_fingerprint(path), change.before, "{context}: undo of {}", record.number);
                if let Some(SavedEntry::File { blob, .. }) = &change.saved {
                    assert_eq!(fs::read(path).unwrap(), fs::read(blobs.join(blob.to_hex())).unwrap(), "{context}");
                }
            }
        }
        // And nothing is stuck: every file can be changed again.
        for name in FILE_NAMES {
            let path = folder.join(name);
            if path.exists() {
                let tag = format!("check-{round}-{name}");
                let request = write(&path, WriteMode::Overwrite, &file_crash::version(&tag));
                files.request(identity, None, request).unwrap_or_else(|err| panic!("{context}: {name}: {err}"));
                tags.insert(tag);
            }
        }
    }
    eprintln!(
        "{ROUNDS} kill rounds in {:?}: {before_commit} before a journal commit, {after_commit} between commit and applied",
        started.elapsed()
    );
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}
