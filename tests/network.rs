//! The peer-to-peer network end to end, with real nodes and relays on loopback: contacts by
//! invite (directly and through a relay only), encrypted tag gossip that only authorized
//! contacts can read, removal, reliable delivery across a restart and through a relay's mailbox,
//! and refused attacks.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clawnet_crypto::{AgreementPublicKey, OwnerId, SealedEnvelope, Signed, SigningPublicKey, Timestamp, encoding};
use clawnet_node::config::NetworkSettings;
use clawnet_node::network::{Network, device_key_of};
use clawnet_protocol::Nonce;
use clawnet_protocol::contact::{ContactRequest, InviteCode, InviteToken};
use clawnet_protocol::mailbox::letter::{Letter, SignedLetter, seal_letter};
use clawnet_protocol::mailbox::{MailboxRequest, MailboxResponse, seal_context};
use clawnet_protocol::tags::{FeedId, SealedTags, TagAnnouncement};
use clawnet_protocol::testkit::TestOwner;
use clawnet_protocol::wire::{DeliveryBatch, DeliveryReply, MessageOutcome, WireMessage};
use clawnet_tests::cluster::{TestNode, TestRelay, befriend, behind_relay, direct, eventually};
use libp2p::multiaddr::Protocol;
use tokio_util::sync::CancellationToken;

type Result = anyhow::Result<()>;

/// Tags of `owner` as `viewer` sees them.
fn visible_tags(viewer: &TestNode, owner: &TestNode) -> Vec<String> {
    let id = owner.node().home.owner().fingerprint().to_string();
    viewer.node().contact_tags(&id).map(|view| view.tags.into_iter().map(|t| t.tag).collect()).unwrap_or_default()
}

/// The sequence number of the latest announcement of `owner` that `viewer` holds.
fn seen_seq(viewer: &TestNode, owner: &TestNode) -> u64 {
    let id = owner.node().home.owner().fingerprint().to_string();
    viewer.node().contact_tags(&id).map(|view| view.seq).unwrap_or(0)
}

/// Audit entries of `node` whose action is `action`.
fn audited(node: &TestNode, action: &str) -> usize {
    node.node().home.db().audit_entries().unwrap().iter().filter(|e| e.action == action).count()
}

/// Security events of `node` whose action starts with `security.<kind>`.
fn security_events(node: &TestNode, kind: &str) -> Vec<String> {
    let prefix = format!("security.{kind}");
    node.node()
        .home
        .db()
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with(&prefix))
        .map(|e| format!("{}: {:?}", e.action, e.outcome))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reachable_only_through_a_relay_become_contacts_and_exchange_tags() -> Result {
    let relay = TestRelay::start().await?;
    let alice = TestNode::start("alice", behind_relay(&relay.address)).await?;
    let bob = TestNode::start("bob", behind_relay(&relay.address)).await?;
    for node in [&alice, &bob] {
        eventually("a relay reservation", || async {
            node.addresses().await.ok().filter(|a| a.iter().any(|a| a.to_string().contains("p2p-circuit")))
        })
        .await?;
        // They listen nowhere but on the relay.
        assert!(node.addresses().await?.iter().all(|a| a.to_string().contains("p2p-circuit")));
    }

    befriend(&alice, &bob).await?;
    alice.node().home.create_identity("work", "Buys sensors for ACME")?;
    alice.node().assign(&bob.node().home.owner().fingerprint().to_string(), "work").await?;
    eventually("bob to see alice's work tag", || async {
        Some(()).filter(|()| visible_tags(&bob, &alice) == ["work"])
    })
    .await?;

    // Everything bob knows of alice's node is a relay circuit address.
    let view = bob.node().home.db().read()?;
    let alice_device = alice.node().home.db().info().device_key;
    let known = view.peer(&alice_device)?.expect("bob knows alice's node").addresses;
    assert!(!known.is_empty() && known.iter().all(|a| a.contains("p2p-circuit")), "{known:?}");
    relay.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_authorized_contacts_read_tags_and_a_feed_eavesdropper_decrypts_nothing() -> Result {
    let alice = TestNode::start("alice", direct()).await?;
    let bob = TestNode::start("bob", direct()).await?;
    let carol = TestNode::start("carol", direct()).await?;
    befriend(&alice, &bob).await?;
    befriend(&alice, &carol).await?;
    alice.node().home.create_identity("work", "ACME procurement")?;
    alice.node().home.create_identity("family", "Home and family")?;
    alice.node().assign(&bob.node().home.owner().fingerprint().to_string(), "work").await?;

    eventually("bob to see the work tag", || async { Some(()).filter(|()| visible_tags(&bob, &alice) == ["work"]) })
        .await?;
    // Carol is a contact but not authorized for any identity: she gets announcements with no tags.
    eventually("carol to get alice's announcement", || async { Some(()).filter(|()| seen_seq(&carol, &alice) > 0) })
        .await?;
    assert!(visible_tags(&carol, &alice).is_empty(), "carol sees {:?}", visible_tags(&carol, &alice));

    // Dave is no contact but knows alice's feed topic and listens to it.
    let feed = alice.node().home.db().read()?.feed()?.expect("alice has a feed").feed;
    let dave = TestOwner::new(99, &[]);
    let shutdown = CancellationToken::new();
    let (network, mut events, _task) = Network::start(&dave.device, &direct(), shutdown.clone()).await?;
    network.subscribe(feed.topic()).await?;
    for address in alice.addresses().await? {
        network.dial(address.with(libp2p::multiaddr::Protocol::P2p(alice.node().network.local_peer()))).await?;
    }
    let (mut received, mut opened) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received < 3 && tokio::time::Instant::now() < deadline {
        // Alice keeps announcing (same feed) while dave listens.
        alice.node().publish_tags(false).await?;
        let wait = tokio::time::sleep(Duration::from_millis(300));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                event = events.recv() => match event {
                    Some(clawnet_node::network::NetworkEvent::Gossip { topic, data }) if topic == feed.topic() => {
                        received += 1;
                        let envelope: SealedTags = postcard::from_bytes(&data)?;
                        if envelope.open(&dave.keys.agreement, &alice.node().home.owner()).is_ok() {
                            opened += 1;
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }
    }
    assert!(received >= 1, "dave received no gossip on alice's feed, so the test proves nothing");
    assert_eq!(opened, 0, "dave decrypted {opened} of {received} announcements");
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_contact_gets_no_further_tag_updates() -> Result {
    let alice = TestNode::start("alice", direct()).await?;
    let bob = TestNode::start("bob", direct()).await?;
    let carol = TestNode::start("carol", direct()).await?;
    befriend(&alice, &bob).await?;
    befriend(&alice, &carol).await?;
    alice.node().home.create_identity("work", "ACME procurement")?;
    let bob_id = bob.node().home.owner().fingerprint().to_string();
    let carol_id = carol.node().home.owner().fingerprint().to_string();
    alice.node().assign(&bob_id, "work").await?;
    alice.node().assign(&carol_id, "work").await?;
    eventually("bob to see work", || async { Some(()).filter(|()| visible_tags(&bob, &alice) == ["work"]) }).await?;
    let old_feed = alice.node().home.db().read()?.feed()?.expect("feed").feed;

    alice.node().remove_contact(&bob_id).await?;
    eventually("bob to learn he was removed", || async { bob.contact(&alice).filter(|c| c.state == "removed") })
        .await?;
    let bob_seq = seen_seq(&bob, &alice);

    // Alice changes what carol sees; carol follows, bob sees nothing new.
    alice.node().home.create_identity("club", "Chess club")?;
    alice.node().assign(&carol_id, "club").await?;
    eventually("carol to see club", || async { Some(()).filter(|()| visible_tags(&carol, &alice) == ["club"]) })
        .await?;
    let new_feed = alice.node().home.db().read()?.feed()?.expect("feed").feed;
    assert_ne!(old_feed, new_feed, "removing a contact must replace the feed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen_seq(&bob, &alice), bob_seq, "bob received an update after his removal");
    assert_eq!(audited(&bob, "contact.removed"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_to_a_stopped_node_arrives_exactly_once_after_it_restarts() -> Result {
    let alice = TestNode::start("alice", direct()).await?;
    let mut bob = TestNode::start("bob", direct()).await?;
    let code = alice.node().invite(Duration::from_secs(3600)).await?.code;
    bob.node().add_contact(&code).await?;
    let request = eventually("the request", || async { alice.contact(&bob).filter(|c| c.is_request()) }).await?;

    bob.stop().await;
    alice.node().accept_contact(&request.id).await?;
    // Alice keeps trying while bob is down.
    let outbox = alice.node().outbox.stats();
    eventually("a failed attempt", || async {
        Some(()).filter(|()| outbox.retried.load(std::sync::atomic::Ordering::Relaxed) > 0)
    })
    .await?;

    bob.resume().await?;
    eventually("bob to see alice as connected", || async { bob.contact(&alice).filter(|c| c.state == "connected") })
        .await?;
    eventually("alice's outbox to drain", || async { alice.node().home.db().outbound().ok().filter(Vec::is_empty) })
        .await?;
    assert_eq!(audited(&bob, "contact.accepted"), 1, "the accept was applied more than once");
    Ok(())
}

/// A TCP listener that accepts connections and never says a word: what dialing an address that
/// now leads nowhere (a laptop that left its network) looks like, until the connection timeout.
struct Tarpit {
    address: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Tarpit {
    async fn start() -> anyhow::Result<Tarpit> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("/ip4/127.0.0.1/tcp/{}", listener.local_addr()?.port());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Ok(Tarpit { address, accepted, task })
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_never_answer_do_not_hold_up_a_delivery_to_a_node_that_does() -> Result {
    let tarpit = Tarpit::start().await?;
    // Alice gives up on a connection that is not set up within a second.
    let alice = TestNode::start("alice", NetworkSettings { connect_timeout_secs: 1, ..direct() }).await?;
    let bob = TestNode::start("bob", direct()).await?;
    befriend(&alice, &bob).await?;

    // Alice has a backlog for twenty nodes whose only known address is the tarpit.
    let device = signing_copy(&alice.node().home.keys().device);
    let ghosts: Vec<SigningPublicKey> =
        (0..20u8).map(|n| clawnet_crypto::SigningSecret::from_bytes(&[100 + n; 32]).public_key()).collect();
    let backlog: Vec<WireMessage> = (0..100).map(|n| turn_message(&device, n)).collect();
    let address = vec![tarpit.address.clone()];
    let queued = ghosts.clone();
    alice.node().home.db().commit(clawnet_storage::Change::new(move |txn| {
        let now = Timestamp::now();
        for ghost in &queued {
            txn.add_peer_addresses(ghost, &address, now)?;
            for message in &backlog {
                clawnet_node::delivery::enqueue(txn, *ghost, message, now)?;
            }
        }
        Ok(())
    }))?;
    alice.node().outbox.wake();
    eventually("alice to dial the tarpit", || async { Some(()).filter(|()| tarpit.accepted() > 0) }).await?;

    // While every attempt at those nodes hangs, a tag update for bob still goes at once.
    alice.node().home.create_identity("club", "Chess club")?;
    alice.node().assign(&bob.node().home.owner().fingerprint().to_string(), "club").await?;
    eventually("bob to see club", || async {
        Some(()).filter(|()| visible_tags(&bob, &alice).contains(&"club".to_owned()))
    })
    .await?;
    let stats = alice.node().outbox.stats();
    assert_eq!(stats.retried.load(Ordering::SeqCst), 0, "bob's update waited for an attempt at a silent node to fail");
    // The silent nodes are probed, one request each and a bounded number at once; the rest of
    // their messages wait in the outbox.
    assert!(tarpit.accepted() <= 16, "{} connections to silent nodes", tarpit.accepted());
    // Counted by recipient: the acknowledgement of bob's update may still be on its way.
    let for_ghosts = || -> anyhow::Result<usize> {
        let pending = alice.node().home.db().outbound()?;
        Ok(pending.iter().filter(|(_, queued)| ghosts.contains(&queued.schedule.recipient)).count())
    };
    assert_eq!(for_ghosts()?, 20 * 100, "every message for the silent nodes is still queued");
    // The worker read its outbox table once, when it started: it learned of the 2 000 messages
    // from the commit that queued them.
    assert_eq!(stats.scans.load(Ordering::SeqCst), 1);

    // The probes give up after the connect timeout (libp2p's default would be 10 s); the
    // messages they carried keep their place, nothing is lost.
    let failed = || async { Some(()).filter(|()| stats.retried.load(Ordering::SeqCst) > 0) };
    tokio::time::timeout(Duration::from_secs(5), eventually("a probe to give up", failed)).await??;
    assert_eq!(for_ghosts()?, 20 * 100);
    Ok(())
}

/// A session turn signed by `device`, unique per `n` (its content does not matter here).
fn turn_message(device: &clawnet_crypto::SigningSecret, n: usize) -> WireMessage {
    let turn = clawnet_protocol::session::Turn {
        session: clawnet_protocol::SessionId([7; 16]),
        turn_no: 1,
        prev: clawnet_crypto::Hash32([1; 32]),
        speaker: clawnet_crypto::IdentityId([2; 16]),
        text: format!("message {n}"),
        end: None,
        sent_at: Timestamp::now(),
    };
    WireMessage::Turn(Signed::sign(&turn, device))
}

fn signing_copy(key: &clawnet_crypto::SigningSecret) -> clawnet_crypto::SigningSecret {
    clawnet_crypto::SigningSecret::from_bytes(&key.to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_left_at_the_relay_reaches_a_node_that_returns_while_its_sender_is_away() -> Result {
    let relay = TestRelay::start().await?;
    let mut alice = TestNode::start("alice", behind_relay(&relay.address)).await?;
    let mut bob = TestNode::start("bob", behind_relay(&relay.address)).await?;
    let code = alice.node().invite(Duration::from_secs(3600)).await?.code;
    bob.node().add_contact(&code).await?;
    let request = eventually("the request", || async { alice.contact(&bob).filter(|c| c.is_request()) }).await?;

    let alice_id = alice.node().home.owner().fingerprint().to_string();

    // Bob goes away; alice accepts, cannot reach him, and leaves the accept at the relay.
    bob.stop().await;
    alice.node().accept_contact(&request.id).await?;
    // Everything alice has for bob (the accept, her tags) is left once.
    let left = || alice.node().outbox.mailboxes().stats().left.load(Ordering::Relaxed) as usize;
    let pending = || alice.node().home.db().outbound().ok().map(|queued| queued.len());
    let letters = eventually("alice to leave her messages for bob", || async {
        pending().filter(|queued| *queued > 0 && *queued == left())
    })
    .await?;
    alice.stop().await;

    // Bob comes back while alice is away: he collects the accept from the relay.
    bob.resume().await?;
    eventually("bob to see alice as connected", || async {
        bob.node().contacts().ok()?.into_iter().find(|c| c.id == alice_id && c.state == "connected")
    })
    .await?;
    let collected = || bob.node().outbox.mailboxes().stats().collected.load(Ordering::Relaxed);
    eventually("bob to collect every letter", || async { Some(()).filter(|()| collected() as usize == letters) })
        .await?;
    assert_eq!(audited(&bob, "contact.accepted"), 1);

    // Alice comes back: her retry of the accept is recognised, not applied again, and her
    // outbox drains.
    alice.resume().await?;
    eventually("alice's outbox to drain", || async { alice.node().home.db().outbound().ok().filter(Vec::is_empty) })
        .await?;
    assert_eq!(audited(&bob, "contact.accepted"), 1, "the accept was applied twice");
    assert!(security_events(&bob, "").is_empty(), "{:?}", security_events(&bob, ""));
    relay.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_misaddressed_and_stranger_letters_are_refused_as_security_events() -> Result {
    let relay = TestRelay::start().await?;
    let mut bob = TestNode::start("bob", behind_relay(&relay.address)).await?;
    let bob_device = bob.node().home.db().info().device_key;
    let bob_owner_key = bob.node().home.keys().owner.agreement.public_key();
    let bob_owner = bob.node().home.owner();
    let carol = TestOwner::new(11, &[]);
    bob.stop().await;

    // An intruder fills bob's box while he is away.
    let intruder = Intruder::start(7).await?;
    let relay_peer = relay.address.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    });
    let relay_peer = relay_peer.context("the relay address names its peer")?;
    let deliveries = [
        // Sealed to the intruder's own key: bob cannot open it.
        seal_letter(&intruder.owner.device, bob_device, &intruder.owner.keys.agreement.public_key(), vec![1])?,
        // Signed correctly, but written to carol's node and re-sealed to bob.
        misaddressed(&intruder, carol.device.public_key(), bob_device, bob_owner_key)?,
        // Opens, but holds no signed letter.
        SealedEnvelope::seal(b"garbage", &[bob_owner_key], &seal_context(&bob_device))?,
        // A real letter from a stranger: the contact request it carries has a forged token, and
        // governance refuses it as it would a direct delivery.
        seal_letter(
            &intruder.owner.device,
            bob_device,
            &bob_owner_key,
            intruder.request_for(bob_owner, InviteToken::random()).encode(),
        )?,
    ];
    for item in deliveries {
        let request = MailboxRequest::Deposit { recipient: bob_device, item, ttl_secs: 3600 };
        let answer = intruder.network.ask_mailbox(relay_peer, vec![relay.address.clone()], request).await?;
        assert!(matches!(answer, MailboxResponse::Deposited { .. }), "{answer:?}");
    }

    // Bob comes back and collects: every item is refused and deleted from his box.
    bob.resume().await?;
    let refused = || bob.node().outbox.mailboxes().stats().refused.load(Ordering::Relaxed);
    eventually("bob to refuse the four items", || async { Some(()).filter(|()| refused() == 4) }).await?;
    let events = security_events(&bob, "mailbox");
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().any(|e| e.contains("does not open")), "{events:?}");
    assert!(events.iter().any(|e| e.contains("addressed to another node")), "{events:?}");
    assert!(events.iter().any(|e| e.contains("malformed")), "{events:?}");
    let forged_token = security_events(&bob, "contact");
    assert!(forged_token.iter().any(|e| e.contains("unknown invite token")), "{forged_token:?}");
    assert!(bob.node().contacts()?.is_empty(), "a letter created a contact");

    // They were deleted: after one more item, a collection (which waits for any still running)
    // leaves exactly five refused, not nine.
    let item = SealedEnvelope::seal(b"more garbage", &[bob_owner_key], &seal_context(&bob_device))?;
    let request = MailboxRequest::Deposit { recipient: bob_device, item, ttl_secs: 3600 };
    intruder.network.ask_mailbox(relay_peer, vec![relay.address.clone()], request).await?;
    let collected = bob.collect_mail().await;
    assert_eq!(refused(), 5, "{collected:?}");
    assert_eq!(collected.recorded + collected.kept, 0, "{collected:?}");
    assert_eq!(security_events(&bob, "mailbox").len(), 4);
    intruder.shutdown.cancel();
    relay.stop().await;
    Ok(())
}

/// A letter the intruder signed correctly for node `to`, sealed into the box of `box_of`.
fn misaddressed(
    intruder: &Intruder,
    to: SigningPublicKey,
    box_of: SigningPublicKey,
    owner_key: AgreementPublicKey,
) -> anyhow::Result<SealedEnvelope> {
    let letter = SignedLetter(Signed::sign(&Letter { to, message: vec![1] }, &intruder.owner.device));
    Ok(SealedEnvelope::seal(&encoding::encode(&letter), &[owner_key], &seal_context(&box_of))?)
}

/// A node that is nobody's contact, sending crafted deliveries.
struct Intruder {
    owner: TestOwner,
    network: Network,
    shutdown: CancellationToken,
}

impl Intruder {
    async fn start(seed: u64) -> anyhow::Result<Intruder> {
        let owner = TestOwner::new(seed, &[]);
        let shutdown = CancellationToken::new();
        let (network, _events, _task) = Network::start(&owner.device, &direct(), shutdown.clone()).await?;
        Ok(Intruder { owner, network, shutdown })
    }

    async fn send(&self, to: &TestNode, message: WireMessage) -> anyhow::Result<DeliveryReply> {
        let batch = DeliveryBatch { messages: vec![message.encode()] };
        Ok(self.network.deliver(to.node().network.local_peer(), to.addresses().await?, batch).await?)
    }

    fn request(&self, to: &TestNode, token: InviteToken) -> WireMessage {
        self.request_for(to.node().home.owner(), token)
    }

    fn request_for(&self, to: OwnerId, token: InviteToken) -> WireMessage {
        let request = ContactRequest {
            from: self.owner.id(),
            to,
            display_name: "intruder".into(),
            contact_key: self.owner.keys.agreement.public_key(),
            device: self.owner.device_cert(),
            addresses: Vec::new(),
            invite: token,
            created_at: Timestamp::now(),
            nonce: Nonce::random(),
        };
        WireMessage::ContactRequest(Signed::sign(&request, &self.owner.keys.signing))
    }
}

/// The one message of the batch was refused for good.
fn refused(reply: &DeliveryReply) -> bool {
    matches!(reply.outcomes.as_slice(), [MessageOutcome::Refused { retry: false, .. }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_expired_invite_tokens_and_stranger_envelopes_are_refused_as_security_events() -> Result {
    let alice = TestNode::start("alice", direct()).await?;
    let intruder = Intruder::start(7).await?;

    // A token alice never issued.
    let reply = intruder.send(&alice, intruder.request(&alice, InviteToken::random())).await?;
    assert!(refused(&reply), "{reply:?}");
    eventually("a security event for the forged token", || async {
        security_events(&alice, "contact").into_iter().find(|e| e.contains("unknown invite token"))
    })
    .await?;

    // A real token that expired.
    let code = alice.node().invite(Duration::from_secs(1)).await?.code;
    let token = InviteCode::from_text(&code, Timestamp::now())?.token;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = intruder.send(&alice, intruder.request(&alice, token)).await?;
    assert!(refused(&reply), "{reply:?}");
    eventually("a security event for the expired token", || async {
        security_events(&alice, "contact").into_iter().find(|e| e.contains("expired invite"))
    })
    .await?;

    // An envelope signed by someone who is not a contact.
    let announcement = TagAnnouncement {
        owner: intruder.owner.id(),
        feed: FeedId::random(),
        seq: 1,
        tags: Vec::new(),
        revocations: Vec::new(),
        issued_at: Timestamp::now(),
    };
    let signed = Signed::sign(&announcement, &intruder.owner.keys.signing);
    let alice_key = alice.node().home.keys().owner.agreement.public_key();
    let sealed = SealedTags::seal(&signed, &[alice_key])?;
    let reply = intruder.send(&alice, WireMessage::TagSync(sealed)).await?;
    assert!(refused(&reply), "{reply:?}");
    eventually("a security event for the stranger", || async {
        security_events(&alice, "stranger").into_iter().next()
    })
    .await?;

    // A request whose device certificate names another node than the sender.
    let mut impostor = TestOwner::new(8, &[]);
    std::mem::swap(&mut impostor.device, &mut TestOwner::new(9, &[]).device);
    let code = alice.node().invite(Duration::from_secs(60)).await?.code;
    let token = InviteCode::from_text(&code, Timestamp::now())?.token;
    let request = ContactRequest {
        from: impostor.id(),
        to: alice.node().home.owner(),
        display_name: "impostor".into(),
        contact_key: impostor.keys.agreement.public_key(),
        device: impostor.device_cert(),
        addresses: Vec::new(),
        invite: token,
        created_at: Timestamp::now(),
        nonce: Nonce::random(),
    };
    let reply =
        intruder.send(&alice, WireMessage::ContactRequest(Signed::sign(&request, &impostor.keys.signing))).await?;
    assert!(refused(&reply), "{reply:?}");
    eventually("a security event for the mismatched peer", || async {
        security_events(&alice, "peer-mismatch").into_iter().next()
    })
    .await?;
    assert!(device_key_of(&intruder.network.local_peer()).is_some());
    assert!(alice.node().contacts()?.is_empty(), "an attack created a contact");
    intruder.shutdown.cancel();
    Ok(())
}
