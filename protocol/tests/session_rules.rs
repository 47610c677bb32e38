//! The session state machine under attack: every refusal the threat model requires, by name,
//! each asserted as a typed error that counts as a security event.

use clawnet_crypto::{Hash32, Signed, Verified};
use clawnet_protocol::roster::TrustError;
use clawnet_protocol::session::{
    CloseReason, ConsentProgress, EndMarker, Phase, Proposal, Session, SessionError, SessionRules, Turn, turn_hash,
};
use clawnet_protocol::testkit::{HOUR, T0, TestOwner};
use clawnet_protocol::{MemoryLedger, Roster};

/// Alice (buyer, "procurement") proposes to Bob (supplier, "sales"); Carol is a third owner.
struct World {
    alice: TestOwner,
    bob: TestOwner,
    carol: TestOwner,
    rules: SessionRules,
    ledger: MemoryLedger,
}

impl World {
    fn new() -> World {
        World {
            alice: TestOwner::new(1, &["procurement", "family"]),
            bob: TestOwner::new(2, &["sales"]),
            carol: TestOwner::new(3, &["logistics"]),
            rules: SessionRules::default(),
            ledger: MemoryLedger::new(),
        }
    }

    fn proposal(&self, max_turns: u16) -> Signed<Proposal> {
        let proposal = self.alice.propose("procurement", &self.bob, "sales", max_turns);
        self.alice.sign_proposal("procurement", &proposal)
    }

    fn open(&mut self, proposal: &Signed<Proposal>) -> Result<Session, SessionError> {
        Session::open(proposal, &self.alice.roster(), &self.rules, T0, &mut self.ledger)
    }

    /// A session with both consents.
    fn active(&mut self, max_turns: u16) -> Session {
        let proposal = self.proposal(max_turns);
        let mut session = self.open(&proposal).unwrap();
        let a = self.alice.consent(&proposal, b"a");
        let b = self.bob.consent(&proposal, b"b");
        assert_eq!(session.apply_consent(&a, &self.rules, T0, &mut self.ledger), Ok(ConsentProgress::AwaitingOther));
        assert!(matches!(
            session.apply_consent(&b, &self.rules, T0, &mut self.ledger),
            Ok(ConsentProgress::Granted { .. })
        ));
        session
    }

    fn turn(&self, session: &Session, text: &str) -> Signed<Turn> {
        let turn_no = session.turns() + 1;
        let (owner, tag) = if turn_no % 2 == 1 { (&self.alice, "procurement") } else { (&self.bob, "sales") };
        owner.turn(tag, session.id(), turn_no, session.last_hash(), text, None)
    }

    fn apply(&self, session: &mut Session, turn: &Signed<Turn>) -> Result<(), SessionError> {
        session.apply_turn(turn, &self.alice.roster(), &self.bob.roster(), &self.rules, T0).map(|_| ())
    }
}

fn assert_attack(result: Result<impl std::fmt::Debug, SessionError>, expected: SessionError) {
    let err = result.expect_err("the attack was accepted");
    assert_eq!(err, expected);
    assert!(err.is_security_event(), "{err} is not recorded as a security event");
}

#[test]
fn session_runs_to_a_signed_close_on_both_sides() {
    let mut world = World::new();
    let mut session = world.active(4);
    assert_eq!(session.phase(), Phase::Active);
    let grant = session.grant().unwrap();
    assert_eq!(session.last_hash(), grant.hash());
    for text in ["we need 500 units", "we can deliver in 3 weeks"] {
        let turn = world.turn(&session, text);
        world.apply(&mut session, &turn).unwrap();
    }
    let end = world.alice.turn("procurement", session.id(), 3, session.last_hash(), "deal", Some(EndMarker::Resolved));
    let accepted = session.apply_turn(&end, &world.alice.roster(), &world.bob.roster(), &world.rules, T0).unwrap();
    assert_eq!(accepted.end, Some(EndMarker::Resolved));
    assert_eq!(session.phase(), Phase::Ending(EndMarker::Resolved));
    let close = world.bob.close(session.id(), CloseReason::Ended(EndMarker::Resolved), 3, turn_hash(&end));
    let (_, dropped) = session.apply_close(&close, &world.rules, T0, &mut world.ledger).unwrap();
    assert_eq!(dropped, 0);
    assert_eq!(session.phase(), Phase::Closed(CloseReason::Ended(EndMarker::Resolved)));
}

#[test]
fn forged_signature_is_refused() {
    let mut world = World::new();
    let proposal = world.proposal(4);
    let mut session = world.open(&proposal).unwrap();
    let consent = world.bob.consent(&proposal, b"b");
    let mut signature = *consent.signature();
    signature.0[10] ^= 0x40;
    let forged = Signed::from_parts(consent.body().to_vec(), *consent.signer(), signature);
    assert_attack(
        session.apply_consent(&forged, &world.rules, T0, &mut world.ledger),
        SessionError::BadSignature { what: "consent" },
    );
}

#[test]
fn signature_from_another_domain_is_refused() {
    let mut world = World::new();
    let mut session = world.active(4);
    // Bob's owner key signs a close; the same bytes and signature are presented as a consent.
    let proposal = world.proposal(4);
    let mut fresh =
        Session::open(&proposal, &world.alice.roster(), &world.rules, T0, &mut MemoryLedger::new()).unwrap();
    let close = world.bob.close(session.id(), CloseReason::OwnerStopped, 0, session.last_hash());
    let as_consent = Signed::from_parts(close.body().to_vec(), *close.signer(), *close.signature());
    assert_attack(
        fresh.apply_consent(&as_consent, &world.rules, T0, &mut world.ledger),
        SessionError::BadSignature { what: "consent" },
    );
    // And a turn signature is never a proposal.
    let turn = world.turn(&session, "hello");
    world.apply(&mut session, &turn).unwrap();
    let as_proposal: Signed<Proposal> = Signed::from_parts(turn.body().to_vec(), *turn.signer(), *turn.signature());
    assert_attack(world.open(&as_proposal), SessionError::BadSignature { what: "proposal" });
}

#[test]
fn consent_over_a_different_proposal_hash_is_refused() {
    let mut world = World::new();
    let proposal = world.proposal(4);
    let mut session = world.open(&proposal).unwrap();
    // Bob consents to a proposal for 40 turns, not to this one for 4.
    let other = world.proposal(40);
    let consent = world.bob.consent(&other, b"b");
    assert_attack(
        session.apply_consent(&consent, &world.rules, T0, &mut world.ledger),
        SessionError::ProposalMismatch { what: "consent" },
    );
    assert_eq!(session.phase(), Phase::AwaitingConsent);
}

#[test]
fn expired_consent_is_refused() {
    let mut world = World::new();
    let proposal = world.proposal(4);
    let mut session = world.open(&proposal).unwrap();
    let consent = world.bob.consent(&proposal, b"b");
    let later = T0.plus(2 * HOUR);
    assert_attack(
        session.apply_consent(&consent, &world.rules, later, &mut world.ledger),
        SessionError::Expired { what: "consent" },
    );
}

#[test]
fn replayed_nonce_is_refused() {
    let mut world = World::new();
    let proposal = world.proposal(4);
    let mut session = world.open(&proposal).unwrap();
    let consent = world.bob.consent(&proposal, b"b");
    session.apply_consent(&consent, &world.rules, T0, &mut world.ledger).unwrap();
    // The same consent again, and the same proposal again (a node that forgot the session).
    assert_attack(
        session.apply_consent(&consent, &world.rules, T0, &mut world.ledger),
        SessionError::Replay { what: "consent" },
    );
    assert_attack(world.open(&proposal), SessionError::Replay { what: "proposal" });
}

#[test]
fn signer_not_certified_by_that_owner_is_refused() {
    let mut world = World::new();
    // Carol's logistics key signs a proposal claiming to be Alice's procurement identity.
    let proposal = world.alice.propose("procurement", &world.bob, "sales", 4);
    let by_carol: Signed<Proposal> = Signed::sign(&proposal, &world.carol.identity("logistics").secrets.signing);
    let err = world.open(&by_carol).unwrap_err();
    assert!(matches!(err, SessionError::Untrusted { what: "proposal", source: TrustError::Unknown(_) }), "{err}");
    assert!(err.is_security_event());

    // In a live session, a turn signed by Carol's key for Alice's identity.
    let mut session = world.active(4);
    let turn = Turn {
        session: session.id(),
        turn_no: 1,
        prev: session.last_hash(),
        speaker: world.alice.identity("procurement").id,
        text: "I am Alice".into(),
        end: None,
        sent_at: T0,
    };
    let forged = Signed::sign(&turn, &world.carol.identity("logistics").secrets.signing);
    let err = world.apply(&mut session, &forged).unwrap_err();
    assert!(matches!(err, SessionError::Untrusted { what: "turn", .. }), "{err}");
    assert!(err.is_security_event());

    // A consent signed by Carol's owner key but naming Bob.
    let proposal = world.proposal(4);
    let mut fresh =
        Session::open(&proposal, &world.alice.roster(), &world.rules, T0, &mut MemoryLedger::new()).unwrap();
    let consent = world.carol.consent(&proposal, b"c");
    assert_attack(
        fresh.apply_consent(&consent, &world.rules, T0, &mut world.ledger),
        SessionError::NotAParty { what: "consent" },
    );
}

#[test]
fn revoked_identity_is_refused() {
    let mut world = World::new();
    let mut session = world.active(4);
    let mut alice_roster = world.alice.roster();
    alice_roster.admit_revocation(&world.alice.revoke("procurement")).unwrap();
    let turn = world.turn(&session, "still here");
    let err = session.apply_turn(&turn, &alice_roster, &world.bob.roster(), &world.rules, T0).unwrap_err();
    let procurement = world.alice.identity("procurement").id;
    assert_eq!(err, SessionError::Untrusted { what: "turn", source: TrustError::Revoked(procurement) });
    assert!(err.is_security_event());
    // A revoked identity cannot propose either.
    let proposal = world.proposal(4);
    let err = Session::open(&proposal, &alice_roster, &world.rules, T0, &mut MemoryLedger::new()).unwrap_err();
    assert_eq!(err, SessionError::Untrusted { what: "proposal", source: TrustError::Revoked(procurement) });
}

#[test]
fn depth_beyond_maximum_is_refused() {
    let mut world = World::new();
    world.rules.max_depth = 2;
    let mut proposal = world.alice.propose("procurement", &world.bob, "sales", 4);
    proposal.depth = 3;
    proposal.parent = Some(clawnet_protocol::SessionId([9; 16]));
    let signed = world.alice.sign_proposal("procurement", &proposal);
    assert_attack(world.open(&signed), SessionError::DepthExceeded { depth: 3, max: 2 });
    // Depth 2 is allowed.
    proposal.depth = 2;
    proposal.nonce = clawnet_protocol::Nonce([8; 16]);
    world.open(&world.alice.sign_proposal("procurement", &proposal)).unwrap();
}

#[test]
fn child_session_must_extend_an_active_parent() {
    let mut world = World::new();
    let parent = world.active(4);
    // Bob opens a child with Carol from inside the session with Alice.
    let mut child = world.bob.propose("sales", &world.carol, "logistics", 4);
    child.parent = Some(parent.id());
    child.depth = 1;
    assert_eq!(parent.check_child(&child), Ok(()));
    child.depth = 2;
    assert_eq!(parent.check_child(&child), Err(SessionError::InconsistentParent));
    // Carol is not a party of the parent and cannot hang a child on it.
    let mut stranger = world.carol.propose("logistics", &world.bob, "sales", 4);
    stranger.parent = Some(parent.id());
    stranger.depth = 1;
    assert_eq!(parent.check_child(&stranger), Err(SessionError::InconsistentParent));
}

#[test]
fn turn_with_wrong_previous_hash_is_refused() {
    let mut world = World::new();
    let mut session = world.active(4);
    let turn = world.alice.turn("procurement", session.id(), 1, Hash32([7; 32]), "hi", None);
    assert_attack(world.apply(&mut session, &turn), SessionError::WrongPreviousHash { turn_no: 1 });
    assert_eq!(session.turns(), 0);
}

#[test]
fn turn_beyond_max_turns_is_refused() {
    let mut world = World::new();
    let mut session = world.active(2);
    for text in ["one", "two"] {
        let turn = world.turn(&session, text);
        world.apply(&mut session, &turn).unwrap();
    }
    let third = world.turn(&session, "three");
    assert_attack(world.apply(&mut session, &third), SessionError::TurnLimitExceeded { turn_no: 3, max: 2 });
    // The node closes at the limit; the close verifies on the other side.
    let close = world.alice.close(session.id(), CloseReason::MaxTurns, 2, session.last_hash());
    session.apply_close(&close, &world.rules, T0, &mut world.ledger).unwrap();
    assert_eq!(session.phase(), Phase::Closed(CloseReason::MaxTurns));
}

#[test]
fn turn_by_a_third_identity_is_refused() {
    let mut world = World::new();
    let mut session = world.active(4);
    // Alice's *family* identity is certified by Alice but not granted in this session.
    let turn = world.alice.turn("family", session.id(), 1, session.last_hash(), "hi", None);
    let family = world.alice.identity("family").id;
    assert_attack(world.apply(&mut session, &turn), SessionError::NotAParticipant(family));
}

#[test]
fn turn_out_of_order_or_out_of_turn_is_refused() {
    let mut world = World::new();
    let mut session = world.active(4);
    let bob_first = world.bob.turn("sales", session.id(), 1, session.last_hash(), "me first", None);
    let sales = world.bob.identity("sales").id;
    assert_attack(world.apply(&mut session, &bob_first), SessionError::OutOfTurn { turn_no: 1, speaker: sales });
    let skip = world.alice.turn("procurement", session.id(), 3, session.last_hash(), "skip", None);
    assert_attack(world.apply(&mut session, &skip), SessionError::WrongTurnNumber { expected: 1, found: 3 });
}

#[test]
fn our_own_turn_skips_only_the_signature_check() {
    let mut world = World::new();
    let mut session = world.active(4);
    let own = |owner: &TestOwner, tag: &str, session: &Session, turn_no: u32| {
        let identity = owner.identity(tag);
        let turn = Turn {
            session: session.id(),
            turn_no,
            prev: session.last_hash(),
            speaker: identity.id,
            text: "ours".into(),
            end: None,
            sent_at: T0,
        };
        Verified::sign(turn, &identity.secrets.signing)
    };
    let (alice, bob) = (world.alice.roster(), world.bob.roster());
    // Accepted like the same turn from the wire: same hash, same transcript.
    let first = own(&world.alice, "procurement", &session, 1);
    let accepted = session.apply_own_turn(&first, &alice, &bob, &world.rules, T0).unwrap();
    assert_eq!(accepted.hash, turn_hash(first.signed()));
    assert_eq!(session.turns(), 1);
    // Every other check still holds: out of turn, an identity not in the session, a revoked one.
    let again = own(&world.alice, "procurement", &session, 2);
    let procurement = world.alice.identity("procurement").id;
    assert_attack(
        session.apply_own_turn(&again, &alice, &bob, &world.rules, T0),
        SessionError::OutOfTurn { turn_no: 2, speaker: procurement },
    );
    let family = own(&world.alice, "family", &session, 2);
    let family_id = world.alice.identity("family").id;
    assert_attack(
        session.apply_own_turn(&family, &alice, &bob, &world.rules, T0),
        SessionError::NotAParticipant(family_id),
    );
    let mut revoked = world.bob.roster();
    revoked.admit_revocation(&world.bob.revoke("sales")).unwrap();
    let reply = own(&world.bob, "sales", &session, 2);
    assert!(session.apply_own_turn(&reply, &alice, &revoked, &world.rules, T0).is_err());
    assert_eq!(session.turns(), 1);
}

#[test]
fn turn_before_both_consents_is_refused() {
    let mut world = World::new();
    let proposal = world.proposal(4);
    let mut session = world.open(&proposal).unwrap();
    let consent = world.alice.consent(&proposal, b"a");
    session.apply_consent(&consent, &world.rules, T0, &mut world.ledger).unwrap();
    let turn = world.alice.turn("procurement", session.id(), 1, Hash32::ZERO, "early", None);
    assert_attack(world.apply(&mut session, &turn), SessionError::NoGrant);
}

#[test]
fn rejection_by_either_owner_ends_the_proposal() {
    for rejecter in ["alice", "bob"] {
        let mut world = World::new();
        let proposal = world.proposal(4);
        let mut session = world.open(&proposal).unwrap();
        let owner = if rejecter == "alice" { &world.alice } else { &world.bob };
        let rejection = owner.reject(&proposal, "not now");
        session.apply_rejection(&rejection, &world.rules, T0, &mut world.ledger).unwrap();
        assert_eq!(session.phase(), Phase::Rejected);
        let late = world.bob.consent(&proposal, b"b");
        assert_eq!(session.apply_consent(&late, &world.rules, T0, &mut world.ledger), Err(SessionError::SessionOver));
    }
}

#[test]
fn owner_stop_closes_at_any_time_and_a_crossing_turn_is_cut() {
    let mut world = World::new();
    let mut session = world.active(6);
    let first = world.turn(&session, "one");
    world.apply(&mut session, &first).unwrap();
    let after_one = session.last_hash();
    // Bob's turn 2 crossed Alice's stop on the wire: Alice closed at 1 turn.
    let second = world.turn(&session, "two");
    world.apply(&mut session, &second).unwrap();
    let close = world.alice.close(session.id(), CloseReason::OwnerStopped, 1, after_one);
    let (_, dropped) = session.apply_close(&close, &world.rules, T0, &mut world.ledger).unwrap();
    assert_eq!(dropped, 1);
    assert_eq!(session.turns(), 1);
    assert_eq!(session.phase(), Phase::Closed(CloseReason::OwnerStopped));
}

#[test]
fn close_that_contradicts_the_transcript_is_refused() {
    let mut world = World::new();
    let mut session = world.active(6);
    let first = world.turn(&session, "one");
    world.apply(&mut session, &first).unwrap();
    let wrong = world.bob.close(session.id(), CloseReason::OwnerStopped, 1, Hash32([1; 32]));
    assert_attack(
        session.apply_close(&wrong, &world.rules, T0, &mut world.ledger),
        SessionError::TranscriptMismatch { their_turns: 1, our_turns: 1 },
    );
    let unearned = world.bob.close(session.id(), CloseReason::MaxTurns, 1, session.last_hash());
    assert_attack(
        session.apply_close(&unearned, &world.rules, T0, &mut world.ledger),
        SessionError::CloseReasonMismatch,
    );
}

#[test]
fn proposal_bounds_are_enforced() {
    let mut world = World::new();
    let mut proposal = world.alice.propose("procurement", &world.bob, "sales", 41);
    assert_attack(
        world.open(&world.alice.sign_proposal("procurement", &proposal)),
        SessionError::TooManyTurns { requested: 41, max: 40 },
    );
    proposal.max_turns = 4;
    proposal.parent = Some(clawnet_protocol::SessionId([1; 16]));
    assert_attack(world.open(&world.alice.sign_proposal("procurement", &proposal)), SessionError::InconsistentParent);
    proposal.parent = None;
    proposal.target.owner = world.alice.id();
    assert_attack(world.open(&world.alice.sign_proposal("procurement", &proposal)), SessionError::SameOwner);
    let roster = Roster::new(world.bob.id());
    let signed = world.proposal(4);
    let err = Session::open(&signed, &roster, &world.rules, T0, &mut world.ledger).unwrap_err();
    assert!(matches!(err, SessionError::Untrusted { .. }));
}

#[test]
fn our_own_proposal_consent_and_close_skip_only_the_signature_check() {
    let mut world = World::new();
    let signed = world.proposal(2);
    let proposal = signed.verify().unwrap();
    // Opened like the same proposal from the wire.
    let mut session =
        Session::open_own(proposal.clone(), &world.alice.roster(), &world.rules, T0, &mut world.ledger).unwrap();
    assert_eq!(
        session.proposal_hash(),
        Session::open(&signed, &world.alice.roster(), &world.rules, T0, &mut MemoryLedger::new())
            .unwrap()
            .proposal_hash()
    );
    // Every other check still holds: the initiator's roster must certify the signer, a nonce is
    // used once.
    assert!(matches!(
        Session::open_own(proposal.clone(), &world.bob.roster(), &world.rules, T0, &mut MemoryLedger::new()),
        Err(SessionError::Untrusted { .. })
    ));
    assert_attack(
        Session::open_own(proposal, &world.alice.roster(), &world.rules, T0, &mut world.ledger),
        SessionError::Replay { what: "proposal" },
    );

    let own = |signed: Signed<clawnet_protocol::session::Consent>| signed.verify().unwrap();
    let other = world.proposal(3);
    assert_attack(
        session.apply_own_consent(own(world.alice.consent(&other, b"x")), &world.rules, T0, &mut world.ledger),
        SessionError::ProposalMismatch { what: "consent" },
    );
    assert_attack(
        session.apply_own_consent(own(world.carol.consent(&signed, b"c")), &world.rules, T0, &mut world.ledger),
        SessionError::NotAParty { what: "consent" },
    );
    let alice = own(world.alice.consent(&signed, b"a"));
    assert_eq!(
        session.apply_own_consent(alice, &world.rules, T0, &mut world.ledger),
        Ok(ConsentProgress::AwaitingOther)
    );
    let bob = own(world.bob.consent(&signed, b"b"));
    assert!(matches!(
        session.apply_own_consent(bob, &world.rules, T0, &mut world.ledger),
        Ok(ConsentProgress::Granted { .. })
    ));

    // A close must still match the transcript, and nothing is closed twice.
    let close = |turns: u32, last: Hash32| {
        world.alice.close(session.id(), CloseReason::OwnerStopped, turns, last).verify().unwrap()
    };
    let wrong = close(1, session.last_hash());
    let right = close(0, session.last_hash());
    let again = close(0, session.last_hash());
    assert_attack(
        session.apply_own_close(wrong, &world.rules, T0, &mut world.ledger),
        SessionError::TranscriptMismatch { their_turns: 1, our_turns: 0 },
    );
    let (applied, dropped) = session.apply_own_close(right, &world.rules, T0, &mut world.ledger).unwrap();
    assert_eq!((applied.reason, dropped), (CloseReason::OwnerStopped, 0));
    assert_eq!(session.phase(), Phase::Closed(CloseReason::OwnerStopped));
    assert_eq!(
        session.apply_own_close(again, &world.rules, T0, &mut world.ledger).unwrap_err(),
        SessionError::SessionOver
    );
}
