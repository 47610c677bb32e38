//! Undo puts back exactly what was there, and refuses what it must.

use super::*;

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
    // Without its spare-file directory (no change has made a spare ahead yet) the endpoint
    // stages beside the file.
    fs::remove_dir_all(node.path("node/files/staging")).unwrap();
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
