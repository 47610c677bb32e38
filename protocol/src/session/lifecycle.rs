//! The session state machine: which signed inputs a session accepts, in which phase.

use std::time::Duration;

use clawnet_crypto::{
    Hash32, IdentityId, OwnerId, Signable, Signed, SigningPublicKey, Timestamp, Verified, WireFormat,
};

use super::{
    Close, CloseReason, Consent, EndMarker, Party, Proposal, Rejection, SessionError, SessionGrant, Turn, grant_hash,
    proposal_hash, turn_hash,
};
use crate::ids::SessionId;
use crate::limits::{self, check_len};
use crate::replay::NonceLedger;
use crate::roster::{Roster, TrustError};

/// How long nonces of objects that never expire (closes) are remembered.
const CLOSE_NONCE_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Local policy bounds a session must fit in, on top of the protocol's hard caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRules {
    /// Deepest recursion accepted (the design's `D`).
    pub max_depth: u8,
    /// Most turns a proposal may ask for.
    pub max_turns: u16,
    /// How far in the future a timestamp may be.
    pub clock_skew: Duration,
}

impl Default for SessionRules {
    fn default() -> SessionRules {
        SessionRules { max_depth: 2, max_turns: 40, clock_skew: limits::MAX_CLOCK_SKEW }
    }
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Proposed; waiting for one or both owners' consent.
    AwaitingConsent,
    /// Granted; the identities take turns.
    Active,
    /// An agent ended it with a marker; only a close is accepted.
    Ending(EndMarker),
    /// Closed by a signed close.
    Closed(CloseReason),
    /// An owner rejected it before it started.
    Rejected,
}

/// What a consent changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentProgress {
    /// One consent is in; the other owner has not answered.
    AwaitingOther,
    /// Both consents are in: the session is active under the grant with this hash.
    Granted {
        /// The grant hash turn 1 links to.
        grant: Hash32,
    },
}

/// A turn the session accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedTurn {
    /// Its number.
    pub turn_no: u32,
    /// Its hash, which the next turn links to.
    pub hash: Hash32,
    /// The end marker it carried.
    pub end: Option<EndMarker>,
    /// Whether it used the last granted turn.
    pub limit_reached: bool,
}

/// The signed objects a node stored for one session, to [`Session::restore`] it from.
#[derive(Debug, Clone, Copy)]
pub struct StoredSession<'a> {
    /// The identity-signed proposal.
    pub proposal: &'a Signed<Proposal>,
    /// The initiator's owner's consent, if given.
    pub initiator_consent: Option<&'a Signed<Consent>>,
    /// The target's owner's consent, if given.
    pub target_consent: Option<&'a Signed<Consent>>,
    /// Whether an owner rejected it.
    pub rejected: bool,
    /// The transcript, in order.
    pub turns: &'a [Signed<Turn>],
    /// The close, if any.
    pub close: Option<&'a Signed<Close>>,
}

/// Which side of the session an owner or identity is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Initiator,
    Target,
}

/// One collaboration session as seen by one node.
#[derive(Debug, Clone)]
pub struct Session {
    proposal: Verified<Proposal>,
    hash: Hash32,
    initiator_consent: Option<Verified<Consent>>,
    target_consent: Option<Verified<Consent>>,
    phase: Phase,
    /// Hash of every accepted turn, in order.
    turn_hashes: Vec<Hash32>,
}

impl Session {
    /// Validates a proposal signed by an identity of `initiator`'s owner and starts a session
    /// awaiting consent.
    pub fn open(
        signed: &Signed<Proposal>,
        initiator: &Roster,
        rules: &SessionRules,
        now: Timestamp,
        ledger: &mut impl NonceLedger,
    ) -> Result<Session, SessionError> {
        let what = Proposal::NAME;
        // The cheap checks first: an untrusted signer costs no verification.
        initiator.speaker(signed.signer()).map_err(|source| SessionError::Untrusted { what, source })?;
        let proposal = signed.verify().map_err(|err| SessionError::from_verify(what, err))?;
        Session::open_own(proposal, initiator, rules, now, ledger)
    }

    /// Opens a session from a proposal this node has just signed ([`Verified::sign`]): every
    /// check of [`Session::open`] but the signature's, which holds by construction.
    pub fn open_own(
        proposal: Verified<Proposal>,
        initiator: &Roster,
        rules: &SessionRules,
        now: Timestamp,
        ledger: &mut impl NonceLedger,
    ) -> Result<Session, SessionError> {
        let what = Proposal::NAME;
        let speaker =
            initiator.speaker(proposal.signer()).map_err(|source| SessionError::Untrusted { what, source })?;
        let speaker_identity = speaker.identity;
        if proposal.initiator.owner != *initiator.owner() || proposal.initiator.identity != speaker_identity {
            return Err(SessionError::WrongSigner { what });
        }
        check_len("purpose", &proposal.purpose, limits::MAX_PURPOSE)?;
        if proposal.initiator.owner == proposal.target.owner {
            return Err(SessionError::SameOwner);
        }
        if (proposal.depth == 0) != proposal.parent.is_none() {
            return Err(SessionError::InconsistentParent);
        }
        let max_depth = rules.max_depth.min(limits::MAX_DEPTH_CAP);
        if proposal.depth > max_depth {
            return Err(SessionError::DepthExceeded { depth: proposal.depth, max: max_depth });
        }
        let max_turns = rules.max_turns.min(limits::MAX_TURNS_CAP);
        if proposal.max_turns == 0 || proposal.max_turns > max_turns {
            return Err(SessionError::TooManyTurns { requested: proposal.max_turns, max: max_turns });
        }
        check_not_future(what, proposal.created_at, now, rules)?;
        if proposal.expires_at <= now {
            return Err(SessionError::Expired { what });
        }
        if ledger.seen(&proposal.nonce) {
            return Err(SessionError::Replay { what });
        }
        ledger.record(proposal.nonce, proposal.expires_at);
        Ok(Session {
            hash: proposal_hash(proposal.signed()),
            proposal,
            initiator_consent: None,
            target_consent: None,
            phase: Phase::AwaitingConsent,
            turn_hashes: Vec::new(),
        })
    }

    /// Rebuilds a session from the signed objects a node stored when it accepted them (after a
    /// restart). Signatures and links are checked again, so a damaged record is refused; nonces
    /// and expiry are not, since they were checked when the objects first arrived and the nonces
    /// are in the node's ledger.
    pub fn restore(stored: StoredSession<'_>) -> Result<Session, SessionError> {
        let proposal = stored.proposal.verify().map_err(|err| SessionError::from_verify(Proposal::NAME, err))?;
        let mut session = Session {
            hash: proposal_hash(stored.proposal),
            proposal,
            initiator_consent: None,
            target_consent: None,
            phase: Phase::AwaitingConsent,
            turn_hashes: Vec::new(),
        };
        for signed in [stored.initiator_consent, stored.target_consent].into_iter().flatten() {
            let (side, owner) = session.owner_side(Consent::NAME, signed)?;
            let consent = signed.verify().map_err(|err| SessionError::from_verify(Consent::NAME, err))?;
            if consent.owner != owner || consent.proposal != session.hash {
                return Err(SessionError::ProposalMismatch { what: Consent::NAME });
            }
            match side {
                Side::Initiator => session.initiator_consent = Some(consent),
                Side::Target => session.target_consent = Some(consent),
            }
        }
        if session.grant_hash().is_some() {
            session.phase = Phase::Active;
        }
        for (index, signed) in stored.turns.iter().enumerate() {
            let turn = signed.verify().map_err(|err| SessionError::from_verify(Turn::NAME, err))?;
            let turn_no = index as u32 + 1;
            if session.phase != Phase::Active
                || turn.session != session.id()
                || turn.turn_no != turn_no
                || turn.prev != session.last_hash()
                || turn.speaker != session.speaker_of(turn_no)
            {
                return Err(SessionError::WrongPreviousHash { turn_no });
            }
            session.turn_hashes.push(turn_hash(signed));
            if let Some(marker) = turn.end {
                session.phase = Phase::Ending(marker);
            }
        }
        if stored.rejected {
            session.phase = Phase::Rejected;
        }
        if let Some(signed) = stored.close {
            let close = signed.verify().map_err(|err| SessionError::from_verify(Close::NAME, err))?;
            if close.turns != session.turns() {
                return Err(SessionError::TranscriptMismatch { their_turns: close.turns, our_turns: session.turns() });
            }
            session.phase = Phase::Closed(close.reason);
        }
        Ok(session)
    }

    /// Applies an owner's consent.
    pub fn apply_consent(
        &mut self,
        signed: &Signed<Consent>,
        rules: &SessionRules,
        now: Timestamp,
        ledger: &mut impl NonceLedger,
    ) -> Result<ConsentProgress, SessionError> {
        let what = Consent::NAME;
        self.check_awaiting_consent()?;
        self.owner_side(what, signed)?;
        let consent = signed.verify().map_err(|err| SessionError::from_verify(what, err))?;
        self.apply_own_consent(consent, rules, now, ledger)
    }

    /// Applies a consent this node has just signed: every check of [`Session::apply_consent`]
    /// but the signature's.
    pub fn apply_own_consent(
        &mut self,
        consent: Verified<Consent>,
        rules: &SessionRules,
        now: Timestamp,
        ledger: &mut impl NonceLedger,
    ) -> Result<ConsentProgress, SessionError> {
        let what = Consent::NAME;
        self.check_awaiting_consent()?;
        let (side, owner) = self.owner_side(what, consent.signed())?;
        if consent.owner != owner {
            return Err(SessionError::WrongSigner { what });
        }
        if consent.proposal != self.hash {
            return Err(SessionError::ProposalMismatch { what });
        }
        check_not_future(what, consent.issued_at, now, rules)?;
        if consent.expires_at <= now {
            return Err(SessionError::Expired { what });
        }
        if ledger.seen(&consent.nonce) {
            return Err(SessionError::Replay { what });
        }
        let slot = match side {
            Side::Initiator => &mut self.initiator_consent,
            Side::Target => &mut self.target_consent,
        };
        if slot.is_some() {
            return Err(SessionError::AlreadyConsented);
        }
        ledger.record(consent.nonce, consent.expires_at);
        *slot = Some(consent);
        match self.grant_hash() {
            Some(grant) => {
                self.phase = Phase::Active;
                Ok(ConsentProgress::Granted { grant })
            }
            None => Ok(ConsentProgress::AwaitingOther),
        }
    }

    /// Applies an owner's rejection: the session ends before it starts.
    pub fn apply_rejection(
        &mut self,
        signed: &Signed<Rejection>,
        rules: &SessionRules,
        now: Timestamp,
        ledger: &mut impl NonceLedger,
    ) -> Result<Verified<Rejection>, SessionError> {
        let what = Rejection::NAME;
        self.check_awaiting_consent()?;
        let (_, owner) = self.owner_side(what, signed)?;
        let rejection = signed.verify().map_err(|err| SessionError::from_verify(what, err))?;
        if rejection.owner != owner {
            return Err(SessionError::WrongSigner { what });
        }
        if rejection.proposal != self.hash {
            return Err(SessionError::ProposalMismatch { what });
        }
        check_len("reason", &rejection.reason, limits::MAX_REASON)?;
        check_not_future(what, rejection.issued_at, now, rules)?;
        if ledger.seen(&rejection.nonce) {
            return Err(SessionError::Replay { what });
        }
        ledger.record(rejection.nonce, self.proposal.expires_at);
        self.phase = Phase::Rejected;
        Ok(rejection)
    }

    /// Applies a turn signed by one of the two granted identities. `initiator` and `target` are
    /// the rosters of the two owners.
    pub fn apply_turn(
        &mut self,
        signed: &Signed<Turn>,
        initiator: &Roster,
        target: &Roster,
        rules: &SessionRules,
        now: Timestamp,
    ) -> Result<AcceptedTurn, SessionError> {
        self.check_takes_turns()?;
        let speaker = self.certified_speaker(signed.signer(), initiator, target)?;
        let turn = signed.verify().map_err(|err| SessionError::from_verify(Turn::NAME, err))?;
        self.accept_turn(speaker, &turn, rules, now)
    }

    /// Applies a turn this node has just signed ([`Verified::sign`]): every check of
    /// [`Session::apply_turn`] but the signature's, which holds by construction.
    pub fn apply_own_turn(
        &mut self,
        turn: &Verified<Turn>,
        initiator: &Roster,
        target: &Roster,
        rules: &SessionRules,
        now: Timestamp,
    ) -> Result<AcceptedTurn, SessionError> {
        self.check_takes_turns()?;
        let speaker = self.certified_speaker(turn.signer(), initiator, target)?;
        self.accept_turn(speaker, turn, rules, now)
    }

    fn check_not_over(&self) -> Result<(), SessionError> {
        match self.phase {
            Phase::Closed(_) | Phase::Rejected => Err(SessionError::SessionOver),
            _ => Ok(()),
        }
    }

    fn check_takes_turns(&self) -> Result<(), SessionError> {
        match self.phase {
            Phase::AwaitingConsent => Err(SessionError::NoGrant),
            Phase::Ending(_) => Err(SessionError::Ending),
            Phase::Closed(_) | Phase::Rejected => Err(SessionError::SessionOver),
            Phase::Active => Ok(()),
        }
    }

    /// The checks of a turn whose signature by `speaker`'s certified key holds.
    fn accept_turn(
        &mut self,
        speaker: IdentityId,
        turn: &Verified<Turn>,
        rules: &SessionRules,
        now: Timestamp,
    ) -> Result<AcceptedTurn, SessionError> {
        let what = Turn::NAME;
        if turn.speaker != speaker {
            return Err(SessionError::WrongSigner { what });
        }
        if turn.session != self.proposal.session {
            return Err(SessionError::WrongSession { what });
        }
        let max = self.proposal.max_turns;
        if turn.turn_no > u32::from(max) {
            return Err(SessionError::TurnLimitExceeded { turn_no: turn.turn_no, max });
        }
        let expected = self.turns() + 1;
        if turn.turn_no != expected {
            return Err(SessionError::WrongTurnNumber { expected, found: turn.turn_no });
        }
        if turn.prev != self.last_hash() {
            return Err(SessionError::WrongPreviousHash { turn_no: turn.turn_no });
        }
        if self.speaker_of(turn.turn_no) != speaker {
            return Err(SessionError::OutOfTurn { turn_no: turn.turn_no, speaker });
        }
        check_len("turn text", &turn.text, limits::MAX_TURN_TEXT)?;
        check_not_future(what, turn.sent_at, now, rules)?;

        let hash = turn_hash(turn.signed());
        self.turn_hashes.push(hash);
        if let Some(marker) = turn.end {
            self.phase = Phase::Ending(marker);
        }
        Ok(AcceptedTurn { turn_no: turn.turn_no, hash, end: turn.end, limit_reached: turn.turn_no == u32::from(max) })
    }

    /// Applies a close signed by either owner. A close may describe a prefix of the transcript
    /// this node holds (a turn crossed the close on the wire): the transcript is cut back to it,
    /// and the number of turns dropped is returned.
    pub fn apply_close(
        &mut self,
        signed: &Signed<Close>,
        rules: &SessionRules,
        now: Timestamp,
        ledger: &mut impl NonceLedger,
    ) -> Result<(Verified<Close>, u32), SessionError> {
        let what = Close::NAME;
        self.check_not_over()?;
        self.owner_side(what, signed)?;
        let close = signed.verify().map_err(|err| SessionError::from_verify(what, err))?;
        self.apply_own_close(close, rules, now, ledger)
    }

    /// Applies a close this node has just signed: every check of [`Session::apply_close`] but
    /// the signature's.
    pub fn apply_own_close(
        &mut self,
        close: Verified<Close>,
        rules: &SessionRules,
        now: Timestamp,
        ledger: &mut impl NonceLedger,
    ) -> Result<(Verified<Close>, u32), SessionError> {
        let what = Close::NAME;
        self.check_not_over()?;
        let (_, owner) = self.owner_side(what, close.signed())?;
        if close.owner != owner {
            return Err(SessionError::WrongSigner { what });
        }
        if close.session != self.proposal.session {
            return Err(SessionError::WrongSession { what });
        }
        let ours = self.turns();
        let their_turns = close.turns;
        if their_turns > ours || self.hash_after(their_turns) != close.last {
            return Err(SessionError::TranscriptMismatch { their_turns, our_turns: ours });
        }
        let fits = match close.reason {
            CloseReason::OwnerStopped => true,
            CloseReason::MaxTurns => their_turns == u32::from(self.proposal.max_turns),
            CloseReason::Ended(marker) => self.phase == Phase::Ending(marker) && their_turns == ours,
        };
        if !fits {
            return Err(SessionError::CloseReasonMismatch);
        }
        check_not_future(what, close.closed_at, now, rules)?;
        if ledger.seen(&close.nonce) {
            return Err(SessionError::Replay { what });
        }
        ledger.record(close.nonce, close.closed_at.plus(CLOSE_NONCE_RETENTION));
        let dropped = ours - their_turns;
        self.turn_hashes.truncate(their_turns as usize);
        self.phase = Phase::Closed(close.reason);
        Ok((close, dropped))
    }

    /// Checks that `child` may be opened from inside this session: this session is active, the
    /// child names it as parent one level down, and the child's initiator is one of its parties.
    pub fn check_child(&self, child: &Proposal) -> Result<(), SessionError> {
        if self.phase != Phase::Active {
            return Err(SessionError::SessionOver);
        }
        let extends = child.parent == Some(self.proposal.session)
            && Some(child.depth) == self.proposal.depth.checked_add(1)
            && (child.initiator.owner == self.proposal.initiator.owner
                || child.initiator.owner == self.proposal.target.owner);
        if extends { Ok(()) } else { Err(SessionError::InconsistentParent) }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.proposal.session
    }

    /// The verified proposal.
    pub fn proposal(&self) -> &Verified<Proposal> {
        &self.proposal
    }

    /// The proposal hash consents sign over.
    pub fn proposal_hash(&self) -> Hash32 {
        self.hash
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Turns accepted so far.
    pub fn turns(&self) -> u32 {
        // At most MAX_TURNS_CAP turns are ever accepted.
        self.turn_hashes.len() as u32
    }

    /// The hash the next turn must link to: the last turn's, or the grant's before any turn, or
    /// zero while there is no grant.
    pub fn last_hash(&self) -> Hash32 {
        self.hash_after(self.turns())
    }

    /// The identity whose turn `turn_no` is: the initiator speaks odd turns, the target even.
    pub fn speaker_of(&self, turn_no: u32) -> IdentityId {
        if turn_no % 2 == 1 { self.proposal.initiator.identity } else { self.proposal.target.identity }
    }

    /// The grant, once both owners consented.
    pub fn grant(&self) -> Option<SessionGrant> {
        Some(SessionGrant {
            proposal: self.proposal.signed().clone(),
            initiator_consent: self.initiator_consent.as_ref()?.signed().clone(),
            target_consent: self.target_consent.as_ref()?.signed().clone(),
        })
    }

    /// The consent given by `owner`, if any.
    pub fn consent_of(&self, owner: &OwnerId) -> Option<&Verified<Consent>> {
        if owner == &self.proposal.initiator.owner {
            self.initiator_consent.as_ref()
        } else if owner == &self.proposal.target.owner {
            self.target_consent.as_ref()
        } else {
            None
        }
    }

    /// The party `owner` is, if any.
    pub fn party_of(&self, owner: &OwnerId) -> Option<Party> {
        [self.proposal.initiator, self.proposal.target].into_iter().find(|party| &party.owner == owner)
    }

    fn hash_after(&self, turns: u32) -> Hash32 {
        match turns {
            0 => self.grant_hash().unwrap_or(Hash32::ZERO),
            n => self.turn_hashes[n as usize - 1],
        }
    }

    fn grant_hash(&self) -> Option<Hash32> {
        Some(grant_hash(
            self.proposal.signed(),
            self.initiator_consent.as_ref()?.signed(),
            self.target_consent.as_ref()?.signed(),
        ))
    }

    fn check_awaiting_consent(&self) -> Result<(), SessionError> {
        match self.phase {
            Phase::AwaitingConsent => Ok(()),
            Phase::Active | Phase::Ending(_) => Err(SessionError::AlreadyConsented),
            Phase::Closed(_) | Phase::Rejected => Err(SessionError::SessionOver),
        }
    }

    /// Which owner signed an owner-signed object, by its signing key.
    fn owner_side<T: Signable>(&self, what: &'static str, signed: &Signed<T>) -> Result<(Side, OwnerId), SessionError> {
        let signer = signed.signer();
        let initiator = self.proposal.initiator.owner;
        let target = self.proposal.target.owner;
        if signer == initiator.key() {
            Ok((Side::Initiator, initiator))
        } else if signer == target.key() {
            Ok((Side::Target, target))
        } else {
            Err(SessionError::NotAParty { what })
        }
    }

    /// The granted identity whose certified key is `key`.
    fn certified_speaker(
        &self,
        key: &SigningPublicKey,
        initiator: &Roster,
        target: &Roster,
    ) -> Result<IdentityId, SessionError> {
        let what = Turn::NAME;
        let parties = [(self.proposal.initiator, initiator), (self.proposal.target, target)];
        let mut untrusted = None;
        for (party, roster) in parties {
            if roster.owner() != &party.owner {
                return Err(SessionError::Untrusted { what, source: TrustError::Unknown(party.owner.fingerprint()) });
            }
            match roster.speaker(key) {
                Ok(cert) if cert.identity == party.identity => return Ok(cert.identity),
                Ok(cert) => return Err(SessionError::NotAParticipant(cert.identity)),
                Err(TrustError::Unknown(_)) => {}
                Err(source) => untrusted = Some(source),
            }
        }
        let source = untrusted.unwrap_or(TrustError::Unknown(self.proposal.initiator.owner.fingerprint()));
        Err(SessionError::Untrusted { what, source })
    }
}

fn check_not_future(
    what: &'static str,
    at: Timestamp,
    now: Timestamp,
    rules: &SessionRules,
) -> Result<(), SessionError> {
    if at > now.plus(rules.clock_skew) { Err(SessionError::FromTheFuture { what }) } else { Ok(()) }
}
