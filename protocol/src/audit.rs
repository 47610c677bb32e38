//! The audit chain format: entries linked by hash and signed by the node key, and the pure
//! verifier that walks a chain and names the first bad entry.
//!
//! Each entry's `prev` is the hash of the previous entry's *body* (the canonical encoding of
//! an [`AuditEntry`]; the first entry's `prev` is zero). So a signature on one entry's body
//! covers every entry before it, as a signed tree head covers its log.
//!
//! A writer therefore signs once per commit ([`seal_batch`]): the last entry a commit appends
//! is stored as `body || signature (64)`, the node key's signature over `body` in the
//! audit-entry domain; the entries before it in the same commit are stored as `body` alone,
//! *covered* by that signature. A commit is atomic, so the chain on disk always ends with a
//! signed entry, and a chain that ends with covered ones has lost its tail or was forged
//! ([`ChainProblem::Unsigned`]). Which form a record has is read off the record itself: a
//! body's encoding is self-delimiting ([`encoding::decode_prefix`]), and only nothing or a
//! signature may follow it. (Until 2026-12-06 every entry was signed; those chains verify
//! unchanged.)
//!
//! The verifier names the first bad entry; an edited entry without a signature of its own can
//! only show as the next entry no longer linking to it, so it may be named one later.

use clawnet_crypto::{
    DecodeError, Domain, Hash32, HashDomain, IdentityId, OwnerId, Signable, Signature, SigningPublicKey, SigningSecret,
    Timestamp, WireFormat, encoding,
};
use serde::{Deserialize, Serialize};

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// The owner, through the CLI, API or UI.
    Owner,
    /// The node itself (delivery, maintenance).
    Node,
    /// The owner's manager agent.
    Manager,
    /// One of the owner's identity agents.
    Identity(IdentityId),
    /// Another owner whose message caused the entry (for example a refused attack).
    Peer(OwnerId),
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused by governance.
    Denied(String),
    /// Attempted and failed.
    Failed(String),
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Hash of the previous entry's body; zero for the first.
    pub prev: Hash32,
    /// When it was recorded.
    pub time: Timestamp,
    /// The owner of the node.
    pub owner: OwnerId,
    /// Who acted.
    pub actor: Actor,
    /// What kind of action (`identity.create`, `security.replay`).
    pub action: String,
    /// What it acted on.
    pub object: String,
    /// Under what authority (owner command, consent hash, policy).
    pub basis: String,
    /// How it ended.
    pub outcome: Outcome,
}

impl WireFormat for AuditEntry {
    const NAME: &'static str = "audit entry";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 4 * 1024;
}

impl Signable for AuditEntry {
    const DOMAIN: Domain = Domain::AuditEntry;
}

impl AuditEntry {
    /// Whether this entry records a security event.
    pub fn is_security_event(&self) -> bool {
        self.action.starts_with(SECURITY_PREFIX)
    }
}

/// The action prefix of security events.
pub const SECURITY_PREFIX: &str = "security.";
const MAX_ACTION: usize = 64;
const MAX_TEXT: usize = 1000;

/// What a caller asks the audit log to record; the log adds seq, link, time and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// Who acted.
    pub actor: Actor,
    /// What kind of action.
    pub action: String,
    /// What it acted on.
    pub object: String,
    /// Under what authority.
    pub basis: String,
    /// How it ended.
    pub outcome: Outcome,
}

impl AuditDraft {
    /// An action with its outcome. Over-long text is cut (an audit entry must never fail to be
    /// written because a message was long).
    pub fn new(
        actor: Actor,
        action: impl Into<String>,
        object: impl Into<String>,
        basis: impl Into<String>,
        outcome: Outcome,
    ) -> AuditDraft {
        let outcome = match outcome {
            Outcome::Denied(reason) => Outcome::Denied(cut(reason, MAX_TEXT)),
            Outcome::Failed(reason) => Outcome::Failed(cut(reason, MAX_TEXT)),
            Outcome::Success => Outcome::Success,
        };
        AuditDraft {
            actor,
            action: cut(action.into(), MAX_ACTION),
            object: cut(object.into(), MAX_TEXT),
            basis: cut(basis.into(), MAX_TEXT),
            outcome,
        }
    }

    /// A refused attack or violation: action `security.<kind>`, outcome denied with `reason`.
    pub fn security_event(
        actor: Actor,
        kind: &str,
        object: impl Into<String>,
        reason: impl Into<String>,
    ) -> AuditDraft {
        AuditDraft::new(
            actor,
            format!("{SECURITY_PREFIX}{kind}"),
            object,
            "protocol validation",
            Outcome::Denied(reason.into()),
        )
    }

    /// Completes the draft into the entry at `seq` after `prev`.
    pub fn into_entry(self, seq: u64, prev: Hash32, time: Timestamp, owner: OwnerId) -> AuditEntry {
        AuditEntry {
            seq,
            prev,
            time,
            owner,
            actor: self.actor,
            action: self.action,
            object: self.object,
            basis: self.basis,
            outcome: self.outcome,
        }
    }
}

fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// An entry sealed for storage: its encoded body, and the node's signature if it ends a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEntry {
    /// The entry's sequence number.
    pub seq: u64,
    /// The hash the next entry links to.
    pub link: Hash32,
    /// `body || signature`, or `body` alone for an entry a later one covers, as stored.
    pub record: Vec<u8>,
}

impl SealedEntry {
    /// Encodes and signs `entry` with the node key: a commit of this one entry.
    pub fn seal(entry: &AuditEntry, node_key: &SigningSecret) -> SealedEntry {
        LinkedEntry::new(entry).sign(node_key)
    }
}

/// Seals the entries one commit appends, in chain order: the last one is signed and covers
/// the others, which are stored without a signature of their own.
pub fn seal_batch(linked: Vec<LinkedEntry>, node_key: &SigningSecret) -> Vec<SealedEntry> {
    let last = linked.len().saturating_sub(1);
    linked
        .into_iter()
        .enumerate()
        .map(|(index, entry)| if index == last { entry.sign(node_key) } else { entry.covered() })
        .collect()
}

/// An entry encoded and linked but not yet sealed. Linking is sequential (each entry names its
/// predecessor's link); sealing signs only the last entry of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedEntry {
    seq: u64,
    link: Hash32,
    body: Vec<u8>,
}

impl LinkedEntry {
    /// Encodes `entry` and computes its link hash.
    pub fn new(entry: &AuditEntry) -> LinkedEntry {
        let body = encoding::encode(entry);
        LinkedEntry { seq: entry.seq, link: link_hash(&body), body }
    }

    /// The hash the next entry links to.
    pub fn link(&self) -> Hash32 {
        self.link
    }

    /// Signs the entry with the node key.
    pub fn sign(self, node_key: &SigningSecret) -> SealedEntry {
        let signature = node_key.sign(AuditEntry::DOMAIN, &self.body);
        let mut record = self.body;
        record.extend_from_slice(&signature.0);
        SealedEntry { seq: self.seq, link: self.link, record }
    }

    /// Stores the entry without a signature: a later entry of the same commit signs for it.
    pub fn covered(self) -> SealedEntry {
        SealedEntry { seq: self.seq, link: self.link, record: self.body }
    }
}

/// The hash of an entry body, which the next entry's `prev` must equal.
pub fn link_hash(body: &[u8]) -> Hash32 {
    Hash32::of(HashDomain::AuditLink, body)
}

/// A stored record, split: the entry, its encoded body, and its signature if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRecord<'a> {
    /// The decoded entry.
    pub entry: AuditEntry,
    /// The entry's canonical encoding, which links and signatures cover.
    pub body: &'a [u8],
    /// The node's signature; `None` for an entry covered by a later one of its commit.
    pub signature: Option<Signature>,
}

/// Splits and decodes a stored record (`body || signature`, or `body` alone). Signatures are
/// not checked.
pub fn parse_record(record: &[u8]) -> Result<ParsedRecord<'_>, DecodeError> {
    let (entry, rest) = encoding::decode_prefix::<AuditEntry>(record)?;
    let body = &record[..record.len() - rest.len()];
    let signature = match <[u8; 64]>::try_from(rest) {
        Ok(bytes) => Some(Signature(bytes)),
        Err(_) if rest.is_empty() => None,
        Err(_) => return Err(DecodeError::TrailingBytes { what: AuditEntry::NAME, extra: rest.len() }),
    };
    Ok(ParsedRecord { entry, body, signature })
}

/// What is wrong with one entry of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainProblem {
    /// The record does not decode.
    #[error("record does not decode: {0}")]
    Undecodable(DecodeError),
    /// The entry's sequence number is not the next one (entries missing, reordered or renumbered).
    #[error("sequence number {found} where {expected} was expected")]
    SequenceMismatch {
        /// The next number in the chain.
        expected: u64,
        /// The one stored.
        found: u64,
    },
    /// The entry does not link to the previous entry (one was altered, removed or inserted).
    #[error("does not link to the previous entry")]
    BrokenLink,
    /// The entry names another owner.
    #[error("names another owner than this node's")]
    WrongOwner,
    /// The node's signature does not verify: the entry was altered.
    #[error("signature does not verify")]
    BadSignature,
    /// No signature covers the entry: the chain ends with it or after it without a signed
    /// entry (its signed tail was cut off, or unsigned entries were appended).
    #[error("no signature covers it: the chain ends before the entry that would sign it")]
    Unsigned,
}

/// The first bad entry of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq} is invalid: {problem}")]
pub struct ChainError {
    /// Its sequence number (its position when the stored number cannot be trusted).
    pub seq: u64,
    /// What is wrong with it.
    pub problem: ChainProblem,
}

/// A chain that verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSummary {
    /// How many entries.
    pub entries: u64,
    /// Hash of the last entry's body (zero for an empty chain): what a consent pins.
    pub head: Hash32,
}

/// How many signatures are checked in one batch.
pub const VERIFY_BATCH: usize = 256;

/// Walks a chain entry by entry: links and sequence numbers immediately, signatures in batches.
/// Single-threaded; [`ChainWalker`] lets signature batches be verified elsewhere.
#[derive(Debug)]
pub struct ChainVerifier {
    walker: ChainWalker,
}

impl ChainVerifier {
    /// A verifier for a chain signed by `node_key` on behalf of `owner`.
    pub fn new(node_key: SigningPublicKey, owner: OwnerId) -> ChainVerifier {
        ChainVerifier { walker: ChainWalker::new(node_key, owner) }
    }

    /// Checks the next stored record, filed under `stored_seq`.
    pub fn push(&mut self, stored_seq: u64, record: &[u8]) -> Result<(), ChainError> {
        match self.walker.push(stored_seq, record) {
            Ok(Some(batch)) => batch.verify(),
            Ok(None) => Ok(()),
            Err(err) => {
                // An earlier entry with a bad signature is the first bad one, not this one.
                self.walker.take_pending().verify()?;
                Err(err)
            }
        }
    }

    /// Verifies the signatures still pending and returns the chain's summary.
    pub fn finish(self) -> Result<ChainSummary, ChainError> {
        let (pending, summary) = self.walker.finish();
        pending.verify()?;
        summary
    }
}

/// The structural half of chain verification: decodes each record and checks its sequence
/// number, link and owner, and hands out its signatures in batches of [`VERIFY_BATCH`]. Every
/// batch handed out must be verified, in order, and a signature failure in an earlier batch
/// takes precedence over a structural error found later.
#[derive(Debug)]
pub struct ChainWalker {
    node_key: SigningPublicKey,
    owner: OwnerId,
    next_seq: u64,
    prev: Hash32,
    pending: Vec<(u64, Vec<u8>, Signature)>,
    /// The first entry since the last signed one, if any: it needs a signature further on.
    uncovered: Option<u64>,
}

impl ChainWalker {
    /// A walker for a chain signed by `node_key` on behalf of `owner`.
    pub fn new(node_key: SigningPublicKey, owner: OwnerId) -> ChainWalker {
        ChainWalker {
            node_key,
            owner,
            next_seq: 1,
            prev: Hash32::ZERO,
            pending: Vec::with_capacity(VERIFY_BATCH),
            uncovered: None,
        }
    }

    /// Checks the structure of the next stored record, filed under `stored_seq`. Returns a batch
    /// of signatures to verify whenever one fills up.
    pub fn push(&mut self, stored_seq: u64, record: &[u8]) -> Result<Option<SignatureBatch>, ChainError> {
        self.check_structure(stored_seq, record).map_err(|problem| ChainError { seq: self.next_seq, problem })?;
        Ok((self.pending.len() >= VERIFY_BATCH).then(|| self.take_pending()))
    }

    /// The signatures collected but not yet handed out.
    pub fn take_pending(&mut self) -> SignatureBatch {
        SignatureBatch {
            node_key: self.node_key,
            items: std::mem::replace(&mut self.pending, Vec::with_capacity(VERIFY_BATCH)),
        }
    }

    /// The last signatures to verify, and the chain's summary if they verify (or the first
    /// entry no signature covers; a bad signature in the batch outranks it).
    pub fn finish(mut self) -> (SignatureBatch, Result<ChainSummary, ChainError>) {
        let summary = match self.uncovered {
            Some(seq) => Err(ChainError { seq, problem: ChainProblem::Unsigned }),
            None => Ok(ChainSummary { entries: self.next_seq - 1, head: self.prev }),
        };
        (self.take_pending(), summary)
    }

    fn check_structure(&mut self, stored_seq: u64, record: &[u8]) -> Result<(), ChainProblem> {
        let ParsedRecord { entry, body, signature } = parse_record(record).map_err(ChainProblem::Undecodable)?;
        for found in [stored_seq, entry.seq] {
            if found != self.next_seq {
                return Err(ChainProblem::SequenceMismatch { expected: self.next_seq, found });
            }
        }
        if entry.prev != self.prev {
            return Err(ChainProblem::BrokenLink);
        }
        if entry.owner != self.owner {
            return Err(ChainProblem::WrongOwner);
        }
        self.prev = link_hash(body);
        match signature {
            Some(signature) => {
                self.pending.push((entry.seq, body.to_vec(), signature));
                self.uncovered = None;
            }
            None => {
                self.uncovered.get_or_insert(entry.seq);
            }
        }
        self.next_seq += 1;
        Ok(())
    }
}

/// Consecutive entries' signatures, verified together.
#[derive(Debug)]
pub struct SignatureBatch {
    node_key: SigningPublicKey,
    items: Vec<(u64, Vec<u8>, Signature)>,
}

impl SignatureBatch {
    /// Verifies every signature (in one batch equation); names the first bad entry if any.
    pub fn verify(&self) -> Result<(), ChainError> {
        let items: Vec<(&SigningPublicKey, &[u8], &Signature)> =
            self.items.iter().map(|(_, body, sig)| (&self.node_key, body.as_slice(), sig)).collect();
        if SigningPublicKey::verify_batch(AuditEntry::DOMAIN, &items).is_ok() {
            return Ok(());
        }
        // Find which one, in order.
        for (seq, body, sig) in &self.items {
            if self.node_key.verify(AuditEntry::DOMAIN, body, sig).is_err() {
                return Err(ChainError { seq: *seq, problem: ChainProblem::BadSignature });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64, key: &SigningSecret, owner: OwnerId) -> Vec<SealedEntry> {
        let mut prev = Hash32::ZERO;
        (1..=n)
            .map(|seq| {
                let draft = AuditDraft::new(Actor::Owner, "test.step", format!("step {seq}"), "test", Outcome::Success);
                let sealed = SealedEntry::seal(&draft.into_entry(seq, prev, Timestamp(seq), owner), key);
                prev = sealed.link;
                sealed
            })
            .collect()
    }

    /// A chain appended by commits of `sizes` entries each, sealed as the writer seals them.
    fn chain_in_commits(sizes: &[u64], key: &SigningSecret, owner: OwnerId) -> Vec<(u64, Vec<u8>)> {
        let (mut prev, mut seq) = (Hash32::ZERO, 0);
        let mut records = Vec::new();
        for &size in sizes {
            let linked: Vec<LinkedEntry> = (0..size)
                .map(|_| {
                    seq += 1;
                    let draft =
                        AuditDraft::new(Actor::Node, "test.step", format!("step {seq}"), "test", Outcome::Success);
                    let linked = LinkedEntry::new(&draft.into_entry(seq, prev, Timestamp(seq), owner));
                    prev = linked.link();
                    linked
                })
                .collect();
            records.extend(seal_batch(linked, key).into_iter().map(|e| (e.seq, e.record)));
        }
        records
    }

    fn verify(key: &SigningSecret, owner: OwnerId, records: &[(u64, Vec<u8>)]) -> Result<ChainSummary, ChainError> {
        let mut verifier = ChainVerifier::new(key.public_key(), owner);
        for (seq, record) in records {
            verifier.push(*seq, record)?;
        }
        verifier.finish()
    }

    fn setup(n: u64) -> (SigningSecret, OwnerId, Vec<(u64, Vec<u8>)>) {
        let key = SigningSecret::from_bytes(&[4; 32]);
        let owner = OwnerId::from_key(SigningSecret::from_bytes(&[5; 32]).public_key());
        let records = chain(n, &key, owner).into_iter().map(|e| (e.seq, e.record)).collect();
        (key, owner, records)
    }

    #[test]
    fn intact_chain_verifies() {
        let (key, owner, records) = setup(600);
        let summary = verify(&key, owner, &records).unwrap();
        assert_eq!(summary.entries, 600);
        assert_eq!(summary.head, link_hash(parse_record(&records[599].1).unwrap().body));
    }

    #[test]
    fn every_altered_byte_names_its_entry() {
        let (key, owner, records) = setup(4);
        for idx in 0..records.len() {
            for byte in 0..records[idx].1.len() {
                let mut altered = records.clone();
                altered[idx].1[byte] ^= 0x01;
                let err = verify(&key, owner, &altered).unwrap_err();
                assert_eq!(err.seq, idx as u64 + 1, "byte {byte} of entry {}: {err}", idx + 1);
            }
        }
    }

    #[test]
    fn a_commit_is_signed_once_and_its_signature_covers_the_rest() {
        let key = SigningSecret::from_bytes(&[4; 32]);
        let owner = OwnerId::from_key(SigningSecret::from_bytes(&[5; 32]).public_key());
        let records = chain_in_commits(&[3, 1, 4, 2], &key, owner);
        let signed: Vec<u64> =
            records.iter().filter(|(_, r)| parse_record(r).unwrap().signature.is_some()).map(|(seq, _)| *seq).collect();
        assert_eq!(signed, [3, 4, 8, 10]);
        assert_eq!(verify(&key, owner, &records).unwrap().entries, 10);
    }

    #[test]
    fn every_altered_byte_of_a_commit_is_caught_at_its_entry_or_the_next() {
        let key = SigningSecret::from_bytes(&[4; 32]);
        let owner = OwnerId::from_key(SigningSecret::from_bytes(&[5; 32]).public_key());
        let records = chain_in_commits(&[3, 2], &key, owner);
        for idx in 0..records.len() {
            let covered = parse_record(&records[idx].1).unwrap().signature.is_none();
            for byte in 0..records[idx].1.len() {
                let mut altered = records.clone();
                altered[idx].1[byte] ^= 0x01;
                let err = verify(&key, owner, &altered).unwrap_err();
                let seq = idx as u64 + 1;
                // An altered covered entry no longer matches the link of the entry after it.
                let named = if covered { seq..=seq + 1 } else { seq..=seq };
                assert!(named.contains(&err.seq), "byte {byte} of entry {seq}: {err}");
            }
        }
    }

    #[test]
    fn a_chain_whose_signed_tail_is_cut_off_is_refused() {
        let key = SigningSecret::from_bytes(&[4; 32]);
        let owner = OwnerId::from_key(SigningSecret::from_bytes(&[5; 32]).public_key());
        let mut records = chain_in_commits(&[2, 3], &key, owner);
        records.pop();
        let err = verify(&key, owner, &records).unwrap_err();
        assert_eq!((err.seq, err.problem), (3, ChainProblem::Unsigned));
        // Stripping the last signature is the same.
        let mut records = chain_in_commits(&[2, 3], &key, owner);
        let last = &mut records[4].1;
        last.truncate(last.len() - 64);
        assert_eq!(verify(&key, owner, &records).unwrap_err().problem, ChainProblem::Unsigned);
    }

    #[test]
    fn a_record_with_anything_but_a_signature_after_its_body_is_undecodable() {
        let (key, owner, mut records) = setup(2);
        records[1].1.push(0);
        let err = verify(&key, owner, &records).unwrap_err();
        assert_eq!(err.seq, 2);
        assert!(matches!(err.problem, ChainProblem::Undecodable(DecodeError::TrailingBytes { extra: 65, .. })));
    }

    #[test]
    fn removed_entry_is_a_sequence_gap() {
        let (key, owner, mut records) = setup(5);
        records.remove(2);
        let err = verify(&key, owner, &records).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(matches!(err.problem, ChainProblem::SequenceMismatch { expected: 3, found: 4 }));
    }

    #[test]
    fn chain_signed_by_another_key_fails() {
        let (_, owner, records) = setup(3);
        let other = SigningSecret::from_bytes(&[9; 32]);
        assert_eq!(verify(&other, owner, &records).unwrap_err().problem, ChainProblem::BadSignature);
    }

    #[test]
    fn long_text_is_cut_not_refused() {
        let draft =
            AuditDraft::new(Actor::Node, "x".repeat(100), "é".repeat(2000), "b", Outcome::Failed("r".repeat(5000)));
        assert!(draft.action.len() <= MAX_ACTION);
        assert!(draft.object.len() <= MAX_TEXT && draft.object.ends_with("..."));
        let key = SigningSecret::from_bytes(&[1; 32]);
        let owner = OwnerId::from_key(key.public_key());
        let sealed = SealedEntry::seal(&draft.into_entry(1, Hash32::ZERO, Timestamp(1), owner), &key);
        assert!(sealed.record.len() <= AuditEntry::MAX_LEN + 64);
        assert!(parse_record(&sealed.record).unwrap().signature.is_some());
    }
}
