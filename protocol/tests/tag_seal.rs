//! Sealed tag announcements: only authorized contacts read them, nobody can move them.

use clawnet_crypto::seal::OpenError;
use clawnet_crypto::{Hash32, Signed};
use clawnet_protocol::tags::{FeedId, IdentityTag, SealedTags, TagAnnouncement, TagError};
use clawnet_protocol::testkit::{T0, TestOwner};

fn announcement(alice: &TestOwner, feed: FeedId, seq: u64) -> Signed<TagAnnouncement> {
    let work = alice.identity("work");
    let announcement = TagAnnouncement {
        owner: alice.id(),
        feed,
        seq,
        tags: vec![IdentityTag { cert: work.cert.clone(), description: "buyer".into(), offers: vec!["orders".into()] }],
        revocations: vec![],
        issued_at: T0,
    };
    Signed::sign(&announcement, &alice.keys.signing)
}

#[test]
fn authorized_contact_reads_tags_and_others_do_not() {
    let alice = TestOwner::new(1, &["work"]);
    let bob = TestOwner::new(2, &[]);
    let carol = TestOwner::new(3, &[]);
    let feed = FeedId(Hash32([7; 32]));
    let sealed = SealedTags::seal(&announcement(&alice, feed, 1), &[bob.keys.agreement.public_key()]).unwrap();

    let seen = sealed.open(&bob.keys.agreement, &alice.id()).unwrap();
    assert_eq!(seen.tags[0].description, "buyer");
    assert!(matches!(sealed.open(&carol.keys.agreement, &alice.id()), Err(TagError::Open(OpenError::NotARecipient))));
}

#[test]
fn envelope_moved_to_another_feed_or_position_is_refused() {
    let alice = TestOwner::new(1, &["work"]);
    let bob = TestOwner::new(2, &[]);
    let feed = FeedId(Hash32([7; 32]));
    let sealed = SealedTags::seal(&announcement(&alice, feed, 5), &[bob.keys.agreement.public_key()]).unwrap();
    let mut moved = sealed.clone();
    moved.seq = 6;
    assert!(matches!(moved.open(&bob.keys.agreement, &alice.id()), Err(TagError::Open(OpenError::NotARecipient))));
    let mut other_feed = sealed;
    other_feed.feed = FeedId(Hash32([8; 32]));
    assert!(matches!(other_feed.open(&bob.keys.agreement, &alice.id()), Err(TagError::Open(_))));
}

#[test]
fn announcement_signed_by_another_owner_is_refused() {
    let alice = TestOwner::new(1, &["work"]);
    let bob = TestOwner::new(2, &[]);
    let mallory = TestOwner::new(9, &["work"]);
    let feed = FeedId(Hash32([7; 32]));
    let forged = announcement(&mallory, feed, 1).decode_unverified().unwrap();
    let forged = Signed::sign(&TagAnnouncement { owner: alice.id(), ..forged }, &mallory.keys.signing);
    let sealed = SealedTags::seal(&forged, &[bob.keys.agreement.public_key()]).unwrap();
    assert!(matches!(sealed.open(&bob.keys.agreement, &alice.id()), Err(TagError::Verify(_))));
}
