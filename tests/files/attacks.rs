//! Every attack of the threat model on the two authorization layers, and a symbolic link
//! swapped in after the check while requests run.

use super::*;

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
        ("data dir: read the commit journal", denied(Work, read(&node.home.home().db().journal_path()), L2)),
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
