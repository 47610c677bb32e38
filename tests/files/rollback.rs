//! Rollback of a session restores its tree and keeps another session's changes.

use super::*;

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
