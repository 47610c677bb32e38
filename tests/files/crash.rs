//! A process killed during operations leaves the old or the new state, with its backup.

use super::*;

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
    // How often the kill fell before a change was decided, after its decision but before its
    // journal commit (after the reply, on the settling thread), and after the commit but before
    // the change was (wholly) applied.
    let (mut before_decision, mut decided, mut after_commit) = (0, 0, 0);
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
        after_commit += usize::from(last_committed.is_some_and(|record| {
            record.changes.iter().any(|change| Some(current_fingerprint(Path::new(&change.path))) != change.after)
        }));
        let files = GovernedFiles::open(&config, home.db().clone()).unwrap(); // rolls forward
        let records = files.history(&RollbackFilter::default()).unwrap();
        // The decision the journal did not have yet is in it now.
        let journaled_at_open = records.last().is_some_and(|record| record.number >= next);
        decided += usize::from(journaled_at_open);
        before_decision +=
            usize::from(!journaled_at_open && noted.is_some_and(|note| note["op"].as_u64() >= Some(next)));
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
        "{ROUNDS} kill rounds in {:?}: {before_decision} before a decision, {decided} between decision and journal \
         commit, {after_commit} between commit and applied",
        started.elapsed()
    );
}

/// The hex SHA-256 of `bytes`, as backup blobs are named.
fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}
