//! The node database end to end on a real redb file: genesis, group commit, atomic changes,
//! verification that names tampered entries, idempotent mailboxes, the replay cache, and the
//! schema version guard.

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;

use clawnet_crypto::{IdentityId, SigningSecret, Timestamp};
use clawnet_protocol::audit::{Actor, AuditDraft, ChainProblem, Outcome, parse_record};
use clawnet_protocol::testkit::{T0, TestOwner};
use clawnet_protocol::{MessageId, Nonce, NonceLedger};
use clawnet_storage::approvals::{ApprovalId, ApprovalRecord, ApprovalRequest, ApprovalStatus};
use clawnet_storage::audit::{AuditVerifyError, raw_entry, tamper_with_entry};
use clawnet_storage::deliveries::{InboundRecord, OutboundRecord, Queued, QueuedFeed};
use clawnet_storage::identities::{IdentityRecord, IdentityStatus};
use clawnet_storage::replay::NonceCheck;
use clawnet_storage::{Change, Genesis, NodeDb, StoreError};

fn genesis(owner: &TestOwner) -> Genesis {
    Genesis {
        owner: owner.id(),
        device_cert: owner.device_cert(),
        node_name: "test node".into(),
        keystore: b"locked keys".to_vec(),
    }
}

fn device(owner: &TestOwner) -> SigningSecret {
    SigningSecret::from_bytes(&owner.device.to_bytes())
}

fn create(dir: &Path) -> (TestOwner, NodeDb) {
    let owner = TestOwner::new(1, &["work"]);
    let db = NodeDb::create(&dir.join("node.redb"), genesis(&owner), device(&owner)).unwrap();
    (owner, db)
}

/// The record of the owner's active "work" identity.
fn work_identity(owner: &TestOwner) -> IdentityRecord {
    let work = owner.identity("work");
    IdentityRecord {
        id: work.id,
        tag: "work".parse().unwrap(),
        description: "day job".into(),
        cert: work.cert.clone(),
        created_at: T0,
        status: IdentityStatus::Active,
    }
}

fn step(n: u64) -> AuditDraft {
    AuditDraft::new(Actor::Node, "test.step", format!("step {n}"), "test", Outcome::Success)
}

#[test]
fn genesis_is_entry_one_and_reopening_keeps_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, db) = create(dir.path());
    assert_eq!(db.verify_audit().unwrap().entries, 1);
    assert_eq!(db.audit_entries().unwrap()[0].action, "node.init");
    for n in 0..10 {
        db.append(step(n)).unwrap();
    }
    let (count, head) = db.audit_head().unwrap();
    drop(db);

    let mut db = NodeDb::open(&dir.path().join("node.redb")).unwrap();
    assert_eq!(db.info().owner, owner.id());
    assert_eq!(db.audit_head().unwrap(), (count, head));
    assert!(matches!(db.append(step(99)), Err(StoreError::ReadOnly)));
    db.unlock_writes(device(&owner)).unwrap();
    let receipt = db.append(step(11)).unwrap();
    assert_eq!(receipt.last_seq(), 12);
    let summary = db.verify_audit().unwrap();
    assert_eq!(summary.entries, 12);
    assert_eq!(summary.head, receipt.entries[0].1);
}

#[test]
fn wrong_device_key_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = create(dir.path());
    drop(db);
    let mut db = NodeDb::open(&dir.path().join("node.redb")).unwrap();
    assert_eq!(db.unlock_writes(SigningSecret::from_bytes(&[9; 32])).unwrap_err(), StoreError::WrongDeviceKey);
}

#[test]
fn concurrent_appends_form_one_contiguous_chain_in_few_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = create(dir.path());
    let db = Arc::new(db);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                (0..50).map(|n| db.append(step(t * 1000 + n)).unwrap().last_seq()).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=801).collect::<Vec<_>>(), "every append got its own seq");
    assert_eq!(db.verify_audit().unwrap().entries, 801);
    let stats = db.writer_stats().unwrap();
    assert_eq!(stats.changes, 801);
    assert!(stats.batches < stats.changes, "no group commit happened: {stats:?}");
}

#[test]
fn after_changes_shared_a_batch_they_go_through_the_writer_until_they_come_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = create(dir.path());
    let before = db.writer_stats().unwrap();
    assert!(matches!(db.commit_if_idle(Change::audit(step(1))), Ok(Ok(_))), "a fresh writer commits inline");

    // The writer thread is held inside a change while two more queue behind it: they share
    // the next batch.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, inside) = std::sync::mpsc::channel::<()>();
    let first = db
        .submit(Change::new(move |_| {
            entered.send(()).map_err(|_| StoreError::ReadOnly)?;
            held.recv().map_err(|_| StoreError::ReadOnly)
        }))
        .unwrap();
    inside.recv().unwrap();
    let second = db.submit(Change::audit(step(2))).unwrap();
    let third = db.submit(Change::audit(step(3))).unwrap();
    release.send(()).unwrap();
    for pending in [second, third] {
        pending.wait().unwrap();
    }
    first.wait().unwrap();
    let stats = db.writer_stats().unwrap();
    let counts = (stats.changes - before.changes, stats.batches - before.batches);
    assert_eq!(counts, (4, 3), "the last two shared a batch: {stats:?}");

    // Now a lone change is handed back, to queue for the writer thread, until two batches in a
    // row held one change each.
    for n in 4..6 {
        let change = db.commit_if_idle(Change::audit(step(n))).expect_err("committed inline under load");
        db.submit(change).unwrap().wait().unwrap();
    }
    assert!(matches!(db.commit_if_idle(Change::audit(step(6))), Ok(Ok(_))), "inline again");
    assert_eq!(db.writer_stats().unwrap().inline - before.inline, 2);
    assert_eq!(db.verify_audit().unwrap().entries, 7, "the genesis and six steps, in one chain");
}

#[test]
fn change_writes_records_and_audit_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, db) = create(dir.path());
    let record = work_identity(&owner);
    let stored = record.clone();
    let (echo, receipt) = db
        .commit(
            Change::new(move |txn| {
                txn.put_identity(&stored)?;
                Ok(7u32)
            })
            .with_audit(AuditDraft::new(
                Actor::Owner,
                "identity.create",
                "work",
                "owner command",
                Outcome::Success,
            )),
        )
        .unwrap();
    assert_eq!(echo, 7);
    assert_eq!(receipt.last_seq(), 2);
    let view = db.read().unwrap();
    assert_eq!(view.identity(&record.id).unwrap(), Some(record));
    assert_eq!(view.identity(&IdentityId([0; 16])).unwrap(), None);
    assert_eq!(db.audit_entries().unwrap()[1].action, "identity.create");
}

#[test]
fn a_change_durable_later_is_visible_at_once_and_kept_by_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, db) = create(dir.path());
    let id = MessageId::of(b"settled later");
    let record = OutboundRecord::new(owner.device.public_key(), b"hello".to_vec(), T0);
    db.commit(Change::new(move |txn| txn.enqueue_outbound(&id, &record).map(drop))).unwrap();
    // Alone, through the writer thread, and inline: each is visible as soon as its commit returns.
    db.commit(Change::new(move |txn| txn.acknowledge_outbound(&id).map(drop)).durable_later()).unwrap();
    assert_eq!(db.outbound_message(&id).unwrap(), None);
    let pending: Vec<_> = (0..4).map(|n| db.submit(Change::audit(step(n)).durable_later()).unwrap()).collect();
    for change in pending {
        change.wait().unwrap();
    }
    assert_eq!(db.verify_audit().unwrap().entries, 5);
    drop(db);

    // A clean close writes them out.
    let db = NodeDb::open(&dir.path().join("node.redb")).unwrap();
    assert_eq!(db.outbound_message(&id).unwrap(), None);
    assert_eq!(db.verify_audit().unwrap().entries, 5);
}

#[test]
fn failed_change_poisons_the_writer_and_reopening_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, db) = create(dir.path());
    let failing = Change::new(|_txn| -> Result<(), StoreError> {
        Err(StoreError::Io { context: "simulated".into(), detail: "disk full".into() })
    })
    .with_audit(step(1));
    assert!(matches!(db.commit(failing), Err(StoreError::Io { .. })));
    assert!(matches!(db.append(step(2)), Err(StoreError::Poisoned(_))));
    drop(db);
    let mut db = NodeDb::open(&dir.path().join("node.redb")).unwrap();
    db.unlock_writes(device(&owner)).unwrap();
    assert_eq!(db.append(step(3)).unwrap().last_seq(), 2, "the failed change left nothing behind");
    assert_eq!(db.verify_audit().unwrap().entries, 2);
}

#[test]
fn editing_any_byte_of_any_entry_names_that_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = create(dir.path());
    for n in 0..3 {
        db.append(step(n)).unwrap();
    }
    assert_every_edit_is_caught(&db, 1..=4, |seq| seq..=seq);
    assert_eq!(db.verify_audit().unwrap().entries, 4);
}

/// Flips each byte of each of `entries` in turn, checks that verification then fails naming an
/// entry in `named(seq)`, and puts the entry back.
fn assert_every_edit_is_caught(db: &NodeDb, entries: RangeInclusive<u64>, named: impl Fn(u64) -> RangeInclusive<u64>) {
    for seq in entries {
        let original = raw_entry(db, seq).unwrap().unwrap();
        for byte in 0..original.len() {
            let mut altered = original.clone();
            altered[byte] ^= 0x20;
            tamper_with_entry(db, seq, &altered).unwrap();
            match db.verify_audit() {
                Err(AuditVerifyError::Chain(err)) => {
                    assert!(named(seq).contains(&err.seq), "entry {seq} byte {byte}: {err}")
                }
                other => panic!("entry {seq} byte {byte}: tampering not detected: {other:?}"),
            }
        }
        tamper_with_entry(db, seq, &original).unwrap();
    }
}

#[test]
fn a_commit_is_signed_once_and_any_edit_of_it_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = create(dir.path());
    let signatures_before = db.writer_stats().unwrap().signatures;
    let change = Change::new(|_| Ok(())).with_audit(step(1)).with_audit(step(2)).with_audit(step(3));
    assert_eq!(db.commit(change).unwrap().1.last_seq(), 4);
    let signed = |seq| parse_record(&raw_entry(&db, seq).unwrap().unwrap()).unwrap().signature.is_some();
    assert_eq!((2..=4).map(signed).collect::<Vec<_>>(), [false, false, true], "only the commit's last entry is signed");
    assert_eq!(db.writer_stats().unwrap().signatures, signatures_before + 1);
    // An edited covered entry can also show as the entry after it no longer linking to it.
    assert_every_edit_is_caught(&db, 2..=4, |seq| if seq < 4 { seq..=seq + 1 } else { seq..=seq });
    // Without its signature the commit's last entry covers nothing: the chain has lost its tail.
    let last = raw_entry(&db, 4).unwrap().unwrap();
    tamper_with_entry(&db, 4, &last[..last.len() - 64]).unwrap();
    let Err(AuditVerifyError::Chain(err)) = db.verify_audit() else { panic!("a chain ending unsigned verified") };
    assert_eq!((err.seq, err.problem), (2, ChainProblem::Unsigned));
    tamper_with_entry(&db, 4, &last).unwrap();
    assert_eq!(db.verify_audit().unwrap().entries, 4);
}

#[test]
fn removed_entry_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = create(dir.path());
    for n in 0..3 {
        db.append(step(n)).unwrap();
    }
    // Move entry 4 into slot 3: the chain now skips one.
    let fourth = raw_entry(&db, 4).unwrap().unwrap();
    tamper_with_entry(&db, 3, &fourth).unwrap();
    let Err(AuditVerifyError::Chain(err)) = db.verify_audit() else { panic!("not detected") };
    assert_eq!(err.seq, 3);
    assert!(matches!(err.problem, ChainProblem::SequenceMismatch { .. }));
}

#[test]
fn export_is_one_json_line_per_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = create(dir.path());
    db.append(AuditDraft::security_event(Actor::Node, "replay", "consent 12", "nonce seen before")).unwrap();
    let mut out = Vec::new();
    assert_eq!(db.export_audit(&mut out).unwrap(), 2);
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["seq"], 2);
    assert_eq!(lines[1]["action"], "security.replay");
    assert_eq!(lines[1]["outcome"], "denied");
    assert_eq!(lines[1]["prev"], lines[0]["link"]);
    assert_eq!(lines[1]["record"].as_str().unwrap(), hex::encode(raw_entry(&db, 2).unwrap().unwrap()));
}

#[test]
fn mailboxes_are_idempotent_by_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, db) = create(dir.path());
    let id = MessageId::of(b"hello");
    let outbound = OutboundRecord::new(owner.device.public_key(), b"hello".to_vec(), T0);
    let inbound = InboundRecord { sender: owner.device.public_key(), received_at: T0 };
    let enqueue = |record: OutboundRecord| Change::new(move |txn| txn.enqueue_outbound(&id, &record));
    assert!(db.commit(enqueue(outbound.clone())).unwrap().0);
    assert!(!db.commit(enqueue(outbound.clone())).unwrap().0, "queued twice");
    db.commit(Change::new(move |txn| txn.reschedule_outbound(&id, 1, Timestamp(T0.0 + 5000)))).unwrap();
    assert!(db.due_outbound(T0).unwrap().is_empty());
    assert_eq!(db.due_outbound(Timestamp(T0.0 + 5000)).unwrap()[0].1.attempts, 1);
    assert_eq!(db.outbound_message(&id).unwrap().unwrap().message, b"hello");
    assert!(db.commit(Change::new(move |txn| txn.acknowledge_outbound(&id))).unwrap().0);
    assert!(db.outbound().unwrap().is_empty() && db.outbound_schedule().unwrap().is_empty());

    let record = |r: InboundRecord| Change::new(move |txn| txn.record_inbound(&id, &r));
    assert!(db.commit(record(inbound.clone())).unwrap().0);
    assert!(!db.commit(record(inbound.clone())).unwrap().0, "recorded twice");
    assert_eq!(db.read().unwrap().inbound(&id).unwrap(), Some(inbound));
}

#[test]
fn replay_cache_survives_reopen_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, db) = create(dir.path());
    let view = db.read().unwrap();
    let mut check = NonceCheck::new(&view);
    assert!(!check.seen(&Nonce([1; 16])));
    check.record(Nonce([1; 16]), T0);
    check.record(Nonce([2; 16]), Timestamp(T0.0 + 10));
    assert!(check.seen(&Nonce([1; 16])), "pending nonce not seen");
    let pending = check.into_pending();
    drop(view);
    db.commit(Change::new(move |txn| txn.record_nonces(&pending))).unwrap();
    drop(db);

    let mut db = NodeDb::open(&dir.path().join("node.redb")).unwrap();
    db.unlock_writes(device(&owner)).unwrap();
    assert!(db.read().unwrap().nonce_seen(&Nonce([1; 16])).unwrap());
    let pruned = db.commit(Change::new(|txn| txn.prune_nonces(Timestamp(T0.0 + 5)))).unwrap().0;
    assert_eq!(pruned, 1);
    let view = db.read().unwrap();
    assert!(!view.nonce_seen(&Nonce([1; 16])).unwrap());
    assert!(view.nonce_seen(&Nonce([2; 16])).unwrap());
}

#[test]
fn unknown_schema_version_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let (_, db) = create(dir.path());
    clawnet_storage::audit::tamper_with_schema_version(&db, 99).unwrap();
    drop(db);
    let err = NodeDb::open(&path).unwrap_err();
    assert_eq!(err, StoreError::SchemaTooNew { found: 99, supported: 6 });
    assert!(err.to_string().contains("upgrade clawnet"));
}

#[test]
fn a_schema_1_database_is_migrated_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let (owner, db) = create(dir.path());
    let entries_before = db.audit_head().unwrap();
    clawnet_storage::audit::tamper_with_schema_version(&db, 1).unwrap();
    drop(db);
    let mut db = NodeDb::open(&path).unwrap();
    db.unlock_writes(device(&owner)).unwrap();
    assert_eq!(db.read().unwrap().next_file_op().unwrap(), 1, "the journal table exists and is empty");
    assert_eq!(db.audit_head().unwrap(), entries_before, "nothing else changed");
    drop(db);
    // Migrated once: it now opens as the current schema.
    NodeDb::open(&path).unwrap();
}

fn approval(owner: &TestOwner, n: u8, status: ApprovalStatus) -> ApprovalRecord {
    ApprovalRecord {
        id: ApprovalId::random(),
        identity: owner.identity("work").id,
        request: ApprovalRequest::Collaboration { contact: owner.id(), purpose: format!("plan {n}"), parent: None },
        session: None,
        created_at: T0.plus(std::time::Duration::from_secs(u64::from(n))),
        status,
    }
}

#[test]
fn pending_approvals_are_found_through_their_index_and_a_schema_2_database_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let (owner, db) = create(dir.path());
    let decided = ApprovalStatus::Approved { at: T0 };
    let records = [
        approval(&owner, 1, ApprovalStatus::Pending),
        approval(&owner, 2, decided.clone()),
        approval(&owner, 3, ApprovalStatus::Pending),
    ];
    let stored = records.clone();
    assert!(db.pending_approvals().unwrap().is_empty(), "a copy in memory for the commit to make stale");
    db.commit(Change::new(move |txn| stored.iter().try_for_each(|record| txn.put_approval(record)))).unwrap();
    let pending = |db: &NodeDb| {
        let read = db.read().unwrap().pending_approvals().unwrap();
        assert_eq!(*db.pending_approvals().unwrap(), read, "the copy in memory follows every commit");
        read
    };
    assert_eq!(pending(&db), vec![records[0].clone(), records[2].clone()]);
    // Deciding one takes it out of the index; the history keeps it.
    let mut first = records[0].clone();
    first.status = decided;
    let update = first.clone();
    db.commit(Change::new(move |txn| txn.put_approval(&update))).unwrap();
    assert_eq!(pending(&db), vec![records[2].clone()]);
    assert_eq!(db.read().unwrap().approvals().unwrap().len(), 3);

    // A schema 2 database has no index: opening it builds one from the history.
    clawnet_storage::audit::tamper_with_schema_version(&db, 2).unwrap();
    drop(db);
    let db = NodeDb::open(&path).unwrap();
    assert_eq!(pending(&db), vec![records[2].clone()]);
}

#[test]
fn opening_what_is_not_a_node_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.redb");
    assert_eq!(NodeDb::open(&missing).unwrap_err(), StoreError::NotInitialized(missing.clone()));
    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, b"not a database at all").unwrap();
    assert!(NodeDb::open(&junk).is_err());
    let (owner, _db) = create(dir.path());
    assert!(matches!(
        NodeDb::create(&dir.path().join("node.redb"), genesis(&owner), device(&owner)),
        Err(StoreError::AlreadyInitialized(_))
    ));
}

#[test]
fn submitted_changes_commit_in_order_and_in_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (_, db) = create(dir.path());
    let pending: Vec<_> = (0..200).map(|n| db.submit(Change::audit(step(n))).unwrap()).collect();
    let seqs: Vec<u64> = pending.into_iter().map(|p| p.wait().unwrap().1.last_seq()).collect();
    assert_eq!(seqs, (2..=201).collect::<Vec<_>>(), "commits follow submission order");
    let stats = db.writer_stats().unwrap();
    assert!(stats.batches < 150, "a burst of 200 was not grouped: {stats:?}");
    assert_eq!(db.verify_audit().unwrap().entries, 201);
}

#[test]
fn pending_change_can_be_awaited() {
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    /// Wakes by unparking the test thread, like a minimal executor.
    struct Unpark(std::thread::Thread, AtomicBool);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.1.store(true, Ordering::SeqCst);
            self.0.unpark();
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let (_, db) = create(dir.path());
    let unpark = Arc::new(Unpark(std::thread::current(), AtomicBool::new(false)));
    let waker = Waker::from(unpark.clone());
    let mut context = Context::from_waker(&waker);
    let mut pending = std::pin::pin!(db.submit(Change::new(|_txn| Ok("done"))).unwrap());
    let mut waited = false;
    let (output, _) = loop {
        match pending.as_mut().poll(&mut context) {
            Poll::Ready(result) => break result.unwrap(),
            Poll::Pending => {
                waited = true;
                std::thread::park_timeout(std::time::Duration::from_secs(5));
            }
        }
    };
    assert_eq!(output, "done");
    // If the first poll found it unfinished, completion must have come through the waker.
    assert!(!waited || unpark.1.load(Ordering::SeqCst), "completed without waking the task");
}

#[test]
fn memory_entries_are_numbered_per_identity() {
    use clawnet_storage::memory::{MemoryAuthor, MemoryKind, MemoryRecord};
    let dir = tempfile::tempdir().unwrap();
    let (_owner, db) = create(dir.path());
    let (work, family) = (IdentityId::random(), IdentityId::random());
    let entry = |id: u64, text: &str| MemoryRecord {
        id,
        kind: MemoryKind::Fact,
        text: text.into(),
        author: MemoryAuthor::Owner,
        created_at: T0,
        updated_at: T0,
    };
    assert_eq!(db.read().unwrap().next_memory_id(&work).unwrap(), 1);
    for (identity, id, text) in [(work, 1, "w1"), (work, 2, "w2"), (family, 1, "f1")] {
        let record = entry(id, text);
        db.commit(Change::new(move |txn| txn.put_memory(&identity, &record)).with_audit(step(id))).unwrap();
    }
    let read = db.read().unwrap();
    assert_eq!(read.memories(&work).unwrap().iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["w1", "w2"]);
    assert_eq!(read.memories(&family).unwrap().len(), 1);
    assert_eq!(read.next_memory_id(&work).unwrap(), 3);
    assert_eq!(read.next_memory_id(&family).unwrap(), 2);
    drop(read);

    let deleted = db.commit(Change::new(move |txn| txn.delete_memory(&work, 1))).unwrap().0;
    assert!(deleted);
    assert_eq!(db.read().unwrap().memories(&work).unwrap().len(), 1);
    assert_eq!(db.read().unwrap().memory_count().unwrap(), 2);
}

#[test]
fn the_outbox_feed_reports_what_committed_changes_queued_once_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, db) = create(dir.path());
    let key = owner.device.public_key();
    let queue = move |numbers: std::ops::Range<u32>| {
        Change::new(move |txn| {
            for n in numbers {
                let id = MessageId::of(&n.to_le_bytes());
                txn.enqueue_outbound(&id, &OutboundRecord::new(key, n.to_le_bytes().to_vec(), T0))?;
            }
            Ok(())
        })
    };
    let reported = |queued: Queued| match queued {
        Queued::Messages(messages) => {
            messages.iter().map(|m| u32::from_le_bytes(m.message[..4].try_into().unwrap())).collect::<Vec<u32>>()
        }
        Queued::Overflowed => panic!("overflowed"),
    };
    let feed = db.queued_outbound().clone();
    db.commit(queue(0..1)).unwrap();
    feed.subscribe();
    assert!(reported(feed.take()).is_empty(), "nothing from before the subscription");

    // In commit order, changes sharing a group commit included; a message queued again is not new.
    db.commit(queue(1..3)).unwrap();
    let (first, second) = (db.submit(queue(3..4)).unwrap(), db.submit(queue(2..5)).unwrap());
    first.wait().unwrap();
    second.wait().unwrap();
    assert_eq!(reported(feed.take()), [1, 2, 3, 4]);
    assert!(reported(feed.take()).is_empty(), "each is reported once");

    // A subscriber that falls too far behind is told to scan instead.
    let many = QueuedFeed::CAPACITY as u32 + 1;
    db.commit(queue(10..10 + many)).unwrap();
    assert_eq!(feed.take(), Queued::Overflowed);
    assert!(reported(feed.take()).is_empty());
    assert_eq!(db.outbound_schedule().unwrap().len(), 5 + many as usize);

    // A change that fails queues nothing, so reports nothing.
    let failing = Change::new(move |txn| {
        txn.enqueue_outbound(&MessageId::of(b"never"), &OutboundRecord::new(key, b"never".to_vec(), T0))?;
        Err::<(), _>(StoreError::ReadOnly)
    });
    assert!(db.commit(failing).is_err());
    assert!(reported(feed.take()).is_empty());
}

#[test]
fn contacts_identities_values_and_scopes_read_from_memory_follow_every_commit() {
    use clawnet_protocol::contact::ContactState;
    use clawnet_storage::contacts::ContactRecord;
    use clawnet_storage::files::{FileAccess, FileGrant, FileScope};
    use clawnet_storage::memory::{MemoryAuthor, MemoryKind, MemoryRecord};

    let dir = tempfile::tempdir().unwrap();
    let (owner, db) = create(dir.path());
    let bob = TestOwner::new(2, &["work"]);
    let contact = ContactRecord {
        owner: bob.id(),
        display_name: "Bob".into(),
        device_key: bob.device.public_key(),
        device: None,
        contact_key: None,
        state: ContactState::Connected,
        assigned_identity: None,
        their_feed: None,
        their_tags: None,
        created_at: T0,
        updated_at: T0,
    };
    // Read before anything is written, so a copy exists for each commit to make stale.
    assert_eq!(db.contact(&bob.id()).unwrap(), None);
    assert!(db.identities().unwrap().is_empty());
    assert!(db.value_memories().unwrap().is_empty());

    let stored = contact.clone();
    db.commit(Change::new(move |txn| txn.put_contact(&stored))).unwrap();
    assert_eq!(db.contact(&bob.id()).unwrap().as_ref(), Some(&contact));
    assert_eq!(db.contact_by_device(&bob.device.public_key()).unwrap().as_ref(), Some(&contact));

    let removed = ContactRecord { state: ContactState::Removed, ..contact.clone() };
    let stored = removed.clone();
    db.commit(Change::new(move |txn| txn.put_contact(&stored))).unwrap();
    assert_eq!(db.contact_by_device(&bob.device.public_key()).unwrap(), Some(removed), "the removal is read back");

    let identity = work_identity(&owner);
    let (stored, id) = (identity.clone(), identity.id);
    let secret = MemoryRecord {
        id: 1,
        kind: MemoryKind::NeverShare,
        text: "project falcon".into(),
        author: MemoryAuthor::Owner,
        created_at: T0,
        updated_at: T0,
    };
    let fact = MemoryRecord { id: 2, kind: MemoryKind::Fact, text: "likes tea".into(), ..secret.clone() };
    let (kept, skipped) = (secret.clone(), fact.clone());
    // The inline commit (nothing else in flight) drops the copies as the writer thread does.
    let inline = db.commit_if_idle(Change::new(move |txn| {
        txn.put_identity(&stored)?;
        txn.put_memory(&id, &kept)?;
        txn.put_memory(&id, &skipped)
    }));
    assert!(matches!(inline, Ok(Ok(_))), "an idle writer commits inline");
    assert_eq!(db.identities().unwrap().as_slice(), std::slice::from_ref(&identity));
    assert_eq!(db.active_identity_by_tag(&"work".parse().unwrap()).unwrap(), Some(identity.clone()));
    let values = db.value_memories().unwrap();
    assert_eq!(values.as_slice(), &[(id, secret)], "only the value layer");
    assert!(Arc::ptr_eq(&values, &db.value_memories().unwrap()), "kept until a commit changes it");

    // A commit that writes none of these tables keeps the copies.
    db.append(step(1)).unwrap();
    assert!(Arc::ptr_eq(&values, &db.value_memories().unwrap()));

    db.commit(Change::new(move |txn| txn.delete_memory(&id, 1).map(drop))).unwrap();
    assert!(db.value_memories().unwrap().is_empty(), "a deletion is read back");

    assert_eq!(db.file_scope(&id).unwrap(), FileScope::default(), "no folder granted yet");
    let scope = FileScope { grants: vec![FileGrant { root: "/srv/work".into(), access: FileAccess::ReadOnly }] };
    let stored = scope.clone();
    db.commit(Change::new(move |txn| txn.put_file_scope(&id, &stored))).unwrap();
    assert_eq!(db.file_scope(&id).unwrap(), scope, "a grant is read back");

    // A failed change writes nothing, and leaves what is read unchanged.
    let failed = db.commit(Change::new(move |txn| {
        txn.put_memory(&id, &fact)?;
        Err::<(), _>(StoreError::ReadOnly)
    }));
    assert!(failed.is_err());
    assert!(db.value_memories().unwrap().is_empty());
}
