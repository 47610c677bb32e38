//! The contact state machine under attack: strangers, forged and expired invites, replays.

use clawnet_crypto::{Signed, Timestamp};
use clawnet_protocol::contact::{
    ContactAccept, ContactError, ContactRelation, ContactRemoval, ContactRequest, ContactState, Invite, InviteToken,
    request_hash,
};
use clawnet_protocol::testkit::{HOUR, T0, TestOwner};
use clawnet_protocol::{MemoryLedger, Nonce};

fn request(from: &TestOwner, to: &TestOwner, token: InviteToken, nonce: u8) -> Signed<ContactRequest> {
    let request = ContactRequest {
        from: from.id(),
        to: to.id(),
        display_name: "Bob".into(),
        contact_key: from.keys.agreement.public_key(),
        device: from.device_cert(),
        addresses: vec!["/ip4/127.0.0.1/tcp/4002".into()],
        invite: token,
        created_at: T0,
        nonce: Nonce([nonce; 16]),
    };
    Signed::sign(&request, &from.keys.signing)
}

fn valid_invite() -> Option<Invite> {
    Some(Invite { expires_at: T0.plus(HOUR), used: false })
}

fn assert_attack<T: std::fmt::Debug>(result: Result<T, ContactError>, expected: ContactError) {
    let err = result.expect_err("the attack was accepted");
    assert_eq!(err, expected);
    assert!(err.is_security_event(), "{err} is not a security event");
}

#[test]
fn invited_request_then_accept_connects_both_sides() {
    let alice = TestOwner::new(1, &[]);
    let bob = TestOwner::new(2, &[]);
    let token = InviteToken::random();
    let signed = request(&bob, &alice, token, 1);

    let mut bob_side = ContactRelation::request_sent(&signed, alice.id());
    let (mut alice_side, verified) =
        ContactRelation::request_received(&signed, &alice.id(), valid_invite(), T0, &mut MemoryLedger::new()).unwrap();
    assert_eq!(verified.from, bob.id());
    alice_side.accept().unwrap();
    assert_eq!(alice_side.state, ContactState::Connected);

    let accept = ContactAccept {
        from: alice.id(),
        to: bob.id(),
        request: request_hash(&signed),
        display_name: "Alice".into(),
        contact_key: alice.keys.agreement.public_key(),
        device: alice.device_cert(),
        addresses: vec!["/ip4/127.0.0.1/tcp/4002".into()],
        created_at: T0,
        nonce: Nonce([2; 16]),
    };
    let accept = Signed::sign(&accept, &alice.keys.signing);
    bob_side.accept_received(&accept, &bob.id(), T0, &mut MemoryLedger::new()).unwrap();
    assert_eq!(bob_side.state, ContactState::Connected);

    let removal = ContactRemoval { from: alice.id(), to: bob.id(), created_at: T0, nonce: Nonce([3; 16]) };
    let removal = Signed::sign(&removal, &alice.keys.signing);
    bob_side.removal_received(&removal, &bob.id(), T0, &mut MemoryLedger::new()).unwrap();
    assert_eq!(bob_side.state, ContactState::Removed);
}

#[test]
fn request_from_a_stranger_without_invite_is_refused() {
    let alice = TestOwner::new(1, &[]);
    let mallory = TestOwner::new(9, &[]);
    let signed = request(&mallory, &alice, InviteToken::random(), 1);
    assert_attack(
        ContactRelation::request_received(&signed, &alice.id(), None, T0, &mut MemoryLedger::new()),
        ContactError::UnknownInvite,
    );
}

#[test]
fn request_with_expired_or_used_invite_is_refused() {
    let alice = TestOwner::new(1, &[]);
    let bob = TestOwner::new(2, &[]);
    let signed = request(&bob, &alice, InviteToken::random(), 1);
    let expired = Some(Invite { expires_at: T0, used: false });
    assert_attack(
        ContactRelation::request_received(&signed, &alice.id(), expired, T0, &mut MemoryLedger::new()),
        ContactError::ExpiredInvite,
    );
    let used = Some(Invite { expires_at: T0.plus(HOUR), used: true });
    assert_attack(
        ContactRelation::request_received(&signed, &alice.id(), used, T0, &mut MemoryLedger::new()),
        ContactError::InviteUsed,
    );
}

#[test]
fn request_signed_by_someone_else_is_refused() {
    let alice = TestOwner::new(1, &[]);
    let bob = TestOwner::new(2, &[]);
    let mallory = TestOwner::new(9, &[]);
    // Mallory signs a request that claims to come from Bob.
    let body = request(&bob, &alice, InviteToken::random(), 1).decode_unverified().unwrap();
    let forged = Signed::sign(&body, &mallory.keys.signing);
    assert_attack(
        ContactRelation::request_received(&forged, &alice.id(), valid_invite(), T0, &mut MemoryLedger::new()),
        ContactError::WrongSigner { what: "contact request" },
    );
}

#[test]
fn replayed_request_is_refused() {
    let alice = TestOwner::new(1, &[]);
    let bob = TestOwner::new(2, &[]);
    let signed = request(&bob, &alice, InviteToken::random(), 1);
    let mut ledger = MemoryLedger::new();
    ContactRelation::request_received(&signed, &alice.id(), valid_invite(), T0, &mut ledger).unwrap();
    assert_attack(
        ContactRelation::request_received(&signed, &alice.id(), valid_invite(), T0, &mut ledger),
        ContactError::Replay { what: "contact request" },
    );
}

#[test]
fn request_for_another_owner_or_stale_is_refused() {
    let alice = TestOwner::new(1, &[]);
    let bob = TestOwner::new(2, &[]);
    let carol = TestOwner::new(3, &[]);
    let signed = request(&bob, &alice, InviteToken::random(), 1);
    assert_attack(
        ContactRelation::request_received(&signed, &carol.id(), valid_invite(), T0, &mut MemoryLedger::new()),
        ContactError::NotForUs { what: "contact request" },
    );
    let much_later = Timestamp(T0.0 + 8 * 24 * 3600 * 1000);
    let invite = Some(Invite { expires_at: much_later.plus(HOUR), used: false });
    assert_attack(
        ContactRelation::request_received(&signed, &alice.id(), invite, much_later, &mut MemoryLedger::new()),
        ContactError::Stale { what: "contact request" },
    );
}

#[test]
fn accept_that_answers_another_request_is_refused() {
    let alice = TestOwner::new(1, &[]);
    let bob = TestOwner::new(2, &[]);
    let ours = request(&bob, &alice, InviteToken::random(), 1);
    let other = request(&bob, &alice, InviteToken::random(), 2);
    let mut bob_side = ContactRelation::request_sent(&ours, alice.id());
    let accept = ContactAccept {
        from: alice.id(),
        to: bob.id(),
        request: request_hash(&other),
        display_name: "Alice".into(),
        contact_key: alice.keys.agreement.public_key(),
        device: alice.device_cert(),
        addresses: vec!["/ip4/127.0.0.1/tcp/4002".into()],
        created_at: T0,
        nonce: Nonce([5; 16]),
    };
    let accept = Signed::sign(&accept, &alice.keys.signing);
    assert_attack(
        bob_side.accept_received(&accept, &bob.id(), T0, &mut MemoryLedger::new()),
        ContactError::RequestMismatch,
    );
}

#[test]
fn removal_by_a_third_owner_is_refused() {
    let alice = TestOwner::new(1, &[]);
    let bob = TestOwner::new(2, &[]);
    let mallory = TestOwner::new(9, &[]);
    let mut relation = ContactRelation { peer: alice.id(), state: ContactState::Connected };
    let removal = ContactRemoval { from: alice.id(), to: bob.id(), created_at: T0, nonce: Nonce([3; 16]) };
    let forged = Signed::sign(&removal, &mallory.keys.signing);
    assert_attack(
        relation.removal_received(&forged, &bob.id(), T0, &mut MemoryLedger::new()),
        ContactError::WrongSigner { what: "contact removal" },
    );
    assert_eq!(relation.state, ContactState::Connected);
}

#[test]
fn local_steps_follow_the_lifecycle() {
    let alice = TestOwner::new(1, &[]);
    let mut relation = ContactRelation { peer: alice.id(), state: ContactState::Removed };
    let err = relation.accept().unwrap_err();
    assert!(matches!(err, ContactError::InvalidTransition { step: "accept", state: "removed" }));
    assert!(!err.is_security_event());
    relation.state = ContactState::Connected;
    relation.remove().unwrap();
    assert_eq!(relation.state, ContactState::Removed);
}

#[test]
fn request_listing_too_many_addresses_is_refused() {
    let alice = TestOwner::new(1, &[]);
    let bob = TestOwner::new(2, &[]);
    let mut body = request(&bob, &alice, InviteToken::random(), 1).decode_unverified().unwrap();
    body.addresses = vec!["/ip4/127.0.0.1/tcp/1".into(); 9];
    let signed = Signed::sign(&body, &bob.keys.signing);
    let err = ContactRelation::request_received(&signed, &alice.id(), valid_invite(), T0, &mut MemoryLedger::new())
        .unwrap_err();
    assert!(matches!(err, ContactError::FieldTooLong(_)), "{err}");
}
