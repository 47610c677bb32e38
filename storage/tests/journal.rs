//! The commit journal against real crashes: a child process (this test binary, re-run for one
//! test) commits and exits without closing anything, and the parent reopens what it left.

use std::path::{Path, PathBuf};
use std::process::Command;

use clawnet_crypto::{Hash32, SigningSecret, Timestamp};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::testkit::{T0, TestOwner};
use clawnet_protocol::{MessageId, Nonce, SessionId};
use clawnet_storage::deliveries::OutboundRecord;
use clawnet_storage::{Change, Genesis, NodeDb};

const CHILD: &str = "CLAWNET_JOURNAL_TEST_CHILD";

fn owner() -> TestOwner {
    TestOwner::new(1, &["work"])
}

fn device(owner: &TestOwner) -> SigningSecret {
    SigningSecret::from_bytes(&owner.device.to_bytes())
}

fn create(path: &Path) -> NodeDb {
    let owner = owner();
    let genesis = Genesis {
        owner: owner.id(),
        device_cert: owner.device_cert(),
        node_name: "test node".into(),
        keystore: b"locked keys".to_vec(),
    };
    NodeDb::create(path, genesis, device(&owner)).unwrap()
}

fn step(n: u64) -> AuditDraft {
    AuditDraft::new(Actor::Node, "test.step", format!("step {n}"), "test", Outcome::Success)
}

/// In a child run of `test`: its phase, and the directory it works in.
fn child_of(test: &str) -> Option<(u32, PathBuf)> {
    let value = std::env::var(CHILD).ok()?;
    let mut parts = value.splitn(3, '=');
    let (name, phase, dir) = (parts.next()?, parts.next()?, parts.next()?);
    (name == test).then(|| (phase.parse().ok(), PathBuf::from(dir))).and_then(|(phase, dir)| Some((phase?, dir)))
}

/// In the child run of a one-phase `test`, the directory it works in.
fn child_dir(test: &str) -> Option<PathBuf> {
    child_of(test).map(|(_, dir)| dir)
}

/// Runs phase `phase` of `test` again in a child process working in `dir`, and waits for it.
fn crash_child_phase(test: &str, phase: u32, dir: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(CHILD, format!("{test}={phase}={}", dir.display()))
        .status()
        .unwrap();
    assert!(status.success(), "the child run of {test} failed: {status}");
}

fn crash_child(test: &str, dir: &Path) {
    crash_child_phase(test, 0, dir);
}

/// Ends the child as a crash would: no destructor runs, so nothing is closed or checkpointed.
fn crash() -> ! {
    std::process::exit(0)
}

fn journal_of(db: &Path) -> PathBuf {
    db.with_file_name("node.redb.journal")
}

/// The offsets of the records in a journal file (magic, then length, sequence, hash, writes).
fn record_offsets(journal: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 8;
    loop {
        let len = u32::from_le_bytes(journal[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            return offsets;
        }
        offsets.push(at);
        at += 44 + len;
    }
}

#[test]
fn a_crash_loses_no_committed_change() {
    const TEST: &str = "a_crash_loses_no_committed_change";
    const CHANGES: u64 = 300;
    if let Some(dir) = child_dir(TEST) {
        let db = create(&dir.join("node.redb"));
        let recipient = owner().device.public_key();
        let owner = owner();
        for n in 0..CHANGES {
            // A turn every change, in sessions of 20: the turns of the last checkpoint's batches
            // are in the table, the later ones only in the journal (and in memory until the
            // crash). Every 20th change cuts its session back to 15 turns.
            let (session, turn_no) = (SessionId([(n / 20) as u8; 16]), (n % 20) as u32 + 1);
            let turn = owner.turn("work", session, turn_no, Hash32([0; 32]), &format!("turn {n}"), None);
            let id = MessageId::of(&n.to_le_bytes());
            let record = OutboundRecord::new(recipient, n.to_le_bytes().to_vec(), T0);
            let nonce = (Nonce([n as u8; 16]), Timestamp(T0.0 + n));
            let change = Change::new(move |txn| {
                txn.put_turn(&session, turn_no, &turn)?;
                if turn_no == 20 {
                    txn.truncate_turns(&session, 15)?;
                }
                txn.enqueue_outbound(&id, &record)?;
                txn.record_nonces(&[nonce])?;
                // Every other message is acknowledged again (a removal), and the replay cache
                // pruned of what expired (a removal by predicate).
                if n % 2 == 1 {
                    txn.acknowledge_outbound(&id)?;
                    txn.prune_nonces(Timestamp(T0.0 + n / 2))?;
                }
                Ok(())
            });
            db.commit(change.with_audit(step(n))).unwrap();
        }
        crash();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    crash_child(TEST, dir.path());

    let mut db = NodeDb::open(&path).unwrap();
    // Batches 1 to 301 (genesis and the changes), every 129th a checkpoint after 128 journaled
    // ones: what followed the last checkpoint was only in the journal.
    assert_eq!(db.recovered_batches(), (CHANGES + 1) % 129);
    assert_eq!(db.verify_audit().unwrap().entries, 1 + CHANGES);
    let queued = db.outbound().unwrap();
    assert_eq!(queued.len() as u64, CHANGES / 2, "acknowledged messages came back");
    assert!(db.outbound_message(&MessageId::of(&(CHANGES - 2).to_le_bytes())).unwrap().is_some());
    assert!(db.outbound_message(&MessageId::of(&(CHANGES - 1).to_le_bytes())).unwrap().is_none());
    let view = db.read().unwrap();
    // The last prune (at T0 + 149) kept the nonces of steps 149 onwards.
    assert!(!view.nonce_seen(&Nonce([148; 16])).unwrap());
    assert!((149..CHANGES).all(|n| view.nonce_seen(&Nonce([n as u8; 16])).unwrap()));
    for session in 0..CHANGES.div_ceil(20) {
        let turns = view.turns(&SessionId([session as u8; 16])).unwrap();
        let kept = (CHANGES - session * 20).min(20);
        let expected = if kept == 20 { 15 } else { kept };
        assert_eq!(turns.len() as u64, expected, "session {session}: turns lost, or cut turns back");
        for (index, turn) in turns.iter().enumerate() {
            let turn = turn.decode_stored().unwrap();
            assert_eq!((turn.turn_no, turn.text), (index as u32 + 1, format!("turn {}", session * 20 + index as u64)));
        }
    }
    drop(view);

    // The chain goes on from where the crash left it, and a clean close leaves nothing to replay.
    db.unlock_writes(device(&owner())).unwrap();
    assert_eq!(db.append(step(CHANGES)).unwrap().last_seq(), CHANGES + 2);
    drop(db);
    let db = NodeDb::open(&path).unwrap();
    assert_eq!(db.recovered_batches(), 0);
    assert_eq!(db.verify_audit().unwrap().entries, CHANGES + 2);
    // The closing checkpoint put the recent turns in the table (the last session's 20th turn
    // cut it back to 15).
    let last = SessionId([((CHANGES - 1) / 20) as u8; 16]);
    assert_eq!(db.read().unwrap().turns(&last).unwrap().len(), 15);
}

#[test]
fn a_torn_record_ends_the_replay_there() {
    const TEST: &str = "a_torn_record_ends_the_replay_there";
    if let Some(dir) = child_dir(TEST) {
        let db = create(&dir.join("node.redb"));
        for n in 0..10 {
            db.append(step(n)).unwrap();
        }
        crash();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    crash_child(TEST, dir.path());

    // Genesis and ten steps. Tear the sixth record (as a power cut mid-write would) by
    // flipping its last byte.
    let mut journal = std::fs::read(journal_of(&path)).unwrap();
    let offsets = record_offsets(&journal);
    assert_eq!(offsets.len(), 11);
    journal[offsets[6] - 1] ^= 0xff;
    std::fs::write(journal_of(&path), &journal).unwrap();

    let mut db = NodeDb::open(&path).unwrap();
    assert_eq!(db.recovered_batches(), 5, "the records after a torn one are not replayed");
    assert_eq!(db.verify_audit().unwrap().entries, 5);
    db.unlock_writes(device(&owner())).unwrap();
    assert_eq!(db.append(step(99)).unwrap().last_seq(), 6);
}

/// Creates a node and closes it cleanly, then reopens it for writing: its journal then holds
/// only what is written next.
fn create_closed_and_reopen(path: &Path) -> NodeDb {
    drop(create(path));
    let mut db = NodeDb::open(path).unwrap();
    db.unlock_writes(device(&owner())).unwrap();
    db
}

#[test]
fn records_cut_off_by_a_crash_never_follow_later_ones() {
    const TEST: &str = "records_cut_off_by_a_crash_never_follow_later_ones";
    match child_of(TEST) {
        Some((1, dir)) => {
            let db = create_closed_and_reopen(&dir.join("node.redb"));
            for n in 0..10 {
                db.append(step(n)).unwrap();
            }
            crash();
        }
        Some((_, dir)) => {
            let mut db = NodeDb::open(&dir.join("node.redb")).unwrap();
            db.unlock_writes(device(&owner())).unwrap();
            db.append(step(0)).unwrap();
            crash();
        }
        None => {}
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    crash_child_phase(TEST, 1, dir.path());
    // The first record torn: nothing is replayed, and records 2 to 10 stay in the file, valid.
    let mut journal = std::fs::read(journal_of(&path)).unwrap();
    let end_of_first = record_offsets(&journal)[1] - 1;
    journal[end_of_first] ^= 0xff;
    std::fs::write(journal_of(&path), &journal).unwrap();
    assert_eq!(NodeDb::open(&path).unwrap().recovered_batches(), 0);

    // A new first record, of the torn one's size and number, then a crash again. Written
    // through the page cache, it leaves the old records 2 to 10 lined up behind it, and only
    // the journal's new id keeps them out. Written directly (`journal/direct.rs`), it takes a
    // whole block, zeros after it, and they are gone from the file.
    crash_child_phase(TEST, 2, dir.path());
    let lined_up = record_offsets(&std::fs::read(journal_of(&path)).unwrap()).len();
    assert!(lined_up == 10 || lined_up == 1, "{lined_up} records in a row");
    let db = NodeDb::open(&path).unwrap();
    assert_eq!(db.recovered_batches(), 1, "the old records 2 to 10 followed the new record 1");
    assert_eq!(db.verify_audit().unwrap().entries, 2);
}

#[test]
fn a_journal_left_by_another_database_is_not_replayed() {
    const TEST: &str = "a_journal_left_by_another_database_is_not_replayed";
    if let Some(dir) = child_dir(TEST) {
        let db = create(&dir.join("other").join("node.redb"));
        for n in 0..5 {
            db.append(step(n)).unwrap();
        }
        crash();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("other")).unwrap();
    crash_child(TEST, dir.path());
    let path = dir.path().join("node.redb");
    drop(create(&path));
    std::fs::copy(journal_of(&dir.path().join("other").join("node.redb")), journal_of(&path)).unwrap();

    let db = NodeDb::open(&path).unwrap();
    assert_eq!(db.recovered_batches(), 0);
    assert_eq!(db.verify_audit().unwrap().entries, 1);
}

#[test]
fn a_damaged_journal_header_is_refused_with_what_to_do() {
    const TEST: &str = "a_damaged_journal_header_is_refused_with_what_to_do";
    if let Some(dir) = child_dir(TEST) {
        let db = create_closed_and_reopen(&dir.join("node.redb"));
        db.append(step(1)).unwrap();
        crash();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    crash_child(TEST, dir.path());
    let mut journal = std::fs::read(journal_of(&path)).unwrap();
    journal[0] ^= 0xff;
    std::fs::write(journal_of(&path), &journal).unwrap();

    let err = NodeDb::open(&path).unwrap_err().to_string();
    assert!(err.contains("move it aside"), "{err}");
    // Moved aside, the database opens as of its last checkpoint: genesis, before the append.
    std::fs::rename(journal_of(&path), dir.path().join("journal.bad")).unwrap();
    let db = NodeDb::open(&path).unwrap();
    assert_eq!(db.verify_audit().unwrap().entries, 1);
}

#[test]
fn a_durable_later_change_waits_for_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let db = create(&dir.path().join("node.redb"));
    let syncs = || db.writer_stats().unwrap().journal_syncs;
    let before = syncs();
    db.commit(Change::audit(step(1)).durable_later()).unwrap();
    db.commit(Change::audit(step(2)).durable_later()).unwrap();
    assert_eq!(syncs(), before, "durable-later changes take no sync of their own");
    db.append(step(3)).unwrap();
    assert_eq!(syncs(), before + 1, "one sync carries the durable change and those before it");
}

/// A waker that remembers it was woken.
struct Flag(std::sync::atomic::AtomicBool);

impl std::task::Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn poll_once<F: std::future::Future + Unpin>(
    future: &mut F,
    flag: &std::sync::Arc<Flag>,
) -> std::task::Poll<F::Output> {
    let waker = std::task::Waker::from(flag.clone());
    std::pin::Pin::new(future).poll(&mut std::task::Context::from_waker(&waker))
}

#[test]
fn a_wait_for_a_durable_later_change_ends_with_the_sync_that_carries_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = create(&dir.path().join("node.redb"));
    let flag = std::sync::Arc::new(Flag(Default::default()));
    let woken = || flag.0.swap(false, std::sync::atomic::Ordering::SeqCst);

    // Carried by the next durable commit.
    let (_, receipt) = db.commit(Change::audit(step(1)).durable_later()).unwrap();
    let mut wait = db.when_durable(&receipt).unwrap();
    assert!(poll_once(&mut wait, &flag).is_pending());
    let (_, durable) = db.commit(Change::audit(step(2))).unwrap();
    assert!(woken(), "the durable commit woke the wait");
    assert!(matches!(poll_once(&mut wait, &flag), std::task::Poll::Ready(Ok(()))));
    assert!(poll_once(&mut db.when_durable(&durable).unwrap(), &flag).is_ready(), "a durable change is on disk");

    // Or by an explicit sync, when nothing else is written.
    let (_, receipt) = db.commit(Change::audit(step(3)).durable_later()).unwrap();
    let mut wait = db.when_durable(&receipt).unwrap();
    assert!(poll_once(&mut wait, &flag).is_pending());
    db.sync().unwrap();
    assert!(woken());
    assert!(matches!(poll_once(&mut wait, &flag), std::task::Poll::Ready(Ok(()))));
}
