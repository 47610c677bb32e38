//! The receiving side of reliable delivery on a real node database: a batch gets one outcome
//! per message, and those it calls recorded are durable before the reply; repeats are
//! acknowledged without being applied again; malformed messages are refused as attacks.

use clawnet_crypto::Timestamp;
use clawnet_node::delivery::{Accepted, Handler, Inbox, Refusal};
use clawnet_node::home::{KeyProtection, NodeHome, UnlockedHome};
use clawnet_node::network::peer_id_of;
use clawnet_protocol::MessageId;
use clawnet_protocol::Nonce;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::contact::ContactRemoval;
use clawnet_protocol::testkit::TestOwner;
use clawnet_protocol::wire::{DeliveryBatch, MessageOutcome, WireMessage};
use clawnet_storage::Change;
use libp2p::PeerId;

/// Accepts removals, refuses everything else; counts what it applied in the audit chain.
struct OnlyRemovals;

impl Handler for OnlyRemovals {
    type FollowUp = ();

    async fn handle(&self, _peer: PeerId, id: MessageId, message: WireMessage) -> Result<Accepted<()>, Refusal> {
        match message {
            WireMessage::ContactRemoval(_) => Ok(Accepted::new(
                Change::new(|_txn| Ok(())).with_audit(AuditDraft::new(
                    Actor::Node,
                    "test.applied",
                    id.to_string(),
                    "test",
                    Outcome::Success,
                )),
                (),
                None,
            )),
            other => Err(Refusal::plain(format!("{} not wanted", other.kind()))),
        }
    }

    async fn committed(&self, (): ()) {}
}

fn removal(owner: &TestOwner, n: u8) -> Vec<u8> {
    let removal =
        ContactRemoval { from: owner.id(), to: owner.id(), created_at: Timestamp::now(), nonce: Nonce([n; 16]) };
    WireMessage::ContactRemoval(clawnet_crypto::Signed::sign(&removal, &owner.keys.signing)).encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gets_one_outcome_per_message_and_those_recorded_are_durable_first() {
    let temp = tempfile::tempdir().unwrap();
    let home = std::sync::Arc::new(NodeHome::init(&temp.path().join("node"), "node", KeyProtection::None).unwrap());
    let inbox = Inbox::new(home.clone(), OnlyRemovals);
    let sender = TestOwner::new(3, &[]);
    let peer = peer_id_of(&sender.device.public_key());

    let first = removal(&sender, 1);
    let second = removal(&sender, 2);
    let turn = {
        let mut other = TestOwner::new(4, &["work"]);
        let _ = other.add_identity("home");
        let session = clawnet_protocol::SessionId([1; 16]);
        WireMessage::Turn(other.turn("work", session, 1, clawnet_crypto::Hash32::ZERO, "hello", None)).encode()
    };
    let batch = DeliveryBatch { messages: vec![first.clone(), b"\x01garbage".to_vec(), turn, second.clone()] };
    let reply = inbox.receive(peer, batch.clone()).await;

    assert_eq!(reply.outcomes.len(), 4);
    assert_eq!(reply.outcomes[0], MessageOutcome::Recorded);
    assert!(matches!(reply.outcomes[1], MessageOutcome::Refused { retry: false, .. }));
    assert!(
        matches!(&reply.outcomes[2], MessageOutcome::Refused { reason, retry: false } if reason.contains("not wanted"))
    );
    assert_eq!(reply.outcomes[3], MessageOutcome::Recorded);
    // Recorded means durable: both are in the inbox before the reply.
    let view = home.db().read().unwrap();
    for message in [&first, &second] {
        assert!(view.inbound(&MessageId::of(message)).unwrap().is_some());
    }
    drop(view);

    // The same batch again: acknowledged the same way, applied once.
    let again = inbox.receive(peer, batch).await;
    assert_eq!(again.outcomes[0], MessageOutcome::Recorded);
    assert_eq!(again.outcomes[3], MessageOutcome::Recorded);
    let entries = home.db().audit_entries().unwrap();
    assert_eq!(entries.iter().filter(|e| e.action == "test.applied").count(), 2);
    // The garbage was an attack, recorded each time it came.
    assert_eq!(entries.iter().filter(|e| e.action == "security.malformed").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_messages_of_a_batch_share_their_commits() {
    let temp = tempfile::tempdir().unwrap();
    let home = std::sync::Arc::new(NodeHome::init(&temp.path().join("node"), "node", KeyProtection::None).unwrap());
    let inbox = Inbox::new(home.clone(), OnlyRemovals);
    let sender = TestOwner::new(3, &[]);
    let peer = peer_id_of(&sender.device.public_key());
    let messages: Vec<Vec<u8>> = (1..=8).map(|n| removal(&sender, n)).collect();
    let before = home.db().writer_stats().expect("writes are unlocked");

    let reply = inbox.receive(peer, DeliveryBatch { messages: messages.clone() }).await;

    assert!(reply.outcomes.iter().all(|outcome| *outcome == MessageOutcome::Recorded));
    let after = home.db().writer_stats().unwrap();
    assert_eq!(after.changes - before.changes, 8, "one change per message");
    // Committed one by one, eight messages took eight transactions (and fsyncs); in the group
    // commit they share a few.
    let commits = after.batches - before.batches;
    assert!(commits <= 4, "8 messages took {commits} commits");
}

/// Accepts removals whose follow-up runs once committed, and notes what it saw then: the
/// journal's sync count, and whether the inbox record was visible. With `answer`, the
/// follow-up also commits a durable change of its own, as a session turn's answer does.
struct EarlyRemovals {
    home: std::sync::Arc<UnlockedHome>,
    answer: bool,
    seen: std::sync::Mutex<Vec<(u64, bool)>>,
}

impl Handler for EarlyRemovals {
    type FollowUp = MessageId;

    async fn handle(
        &self,
        _peer: PeerId,
        id: MessageId,
        _message: WireMessage,
    ) -> Result<Accepted<MessageId>, Refusal> {
        Ok(Accepted::new(Change::new(|_txn| Ok(())), id, None).follow_up_when_committed())
    }

    async fn committed(&self, id: MessageId) {
        let db = self.home.db();
        let visible = db.read().unwrap().inbound(&id).unwrap().is_some();
        self.seen.lock().unwrap().push((db.writer_stats().unwrap().journal_syncs, visible));
        if self.answer {
            // Committed before the follow-up returns, so the test does not race the wait.
            let answer = AuditDraft::new(Actor::Node, "test.answer", "answer", "test", Outcome::Success);
            db.submit(Change::audit(answer)).unwrap().await.unwrap();
        }
    }
}

async fn early_removal(answer: bool) -> (u64, Vec<(u64, bool)>, u64) {
    let temp = tempfile::tempdir().unwrap();
    let home = std::sync::Arc::new(NodeHome::init(&temp.path().join("node"), "node", KeyProtection::None).unwrap());
    let handler = EarlyRemovals { home: home.clone(), answer, seen: Default::default() };
    let inbox = Inbox::new(home.clone(), handler);
    let sender = TestOwner::new(3, &[]);
    let before = home.db().writer_stats().unwrap().journal_syncs;
    let batch = DeliveryBatch { messages: vec![removal(&sender, 1)] };
    let reply = inbox.receive(peer_id_of(&sender.device.public_key()), batch).await;
    assert_eq!(reply.outcomes, [MessageOutcome::Recorded]);
    let seen = inbox.handler().seen.lock().unwrap().clone();
    (before, seen, home.db().writer_stats().unwrap().journal_syncs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_run_once_committed_comes_before_the_sync_and_the_reply_after_it() {
    // Alone: the follow-up sees the record before any sync, and the inbox syncs it itself.
    let (before, seen, after) = early_removal(false).await;
    assert_eq!(seen, [(before, true)], "the follow-up ran on the committed record, before any sync");
    assert_eq!(after, before + 1, "synced once, before the reply");

    // With an answer committed by the follow-up: that commit's sync carries the message too.
    let (before, seen, after) = early_removal(true).await;
    assert_eq!(seen, [(before, true)]);
    assert_eq!(after, before + 1, "one sync for the message and its answer");
}
