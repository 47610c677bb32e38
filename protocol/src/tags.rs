//! Identity-tag announcements: what an owner's identity agents look like, signed by the owner
//! and sealed to exactly the contacts authorized to see them.
//!
//! An announcement travels as a [`SealedTags`] on the owner's feed (or directly, to sync a
//! contact that was offline). The seal is bound to the feed and sequence number, so ciphertext
//! cannot be replayed into another feed or position, and the signed announcement repeats both.

use clawnet_crypto::rng::OsRng;
use clawnet_crypto::seal::{OpenError, SealError};
use clawnet_crypto::{
    AgreementPublicKey, AgreementSecret, Domain, Hash32, IdentityCert, OwnerId, Revocation, SealedEnvelope, Signable,
    Signed, Timestamp, Verified, VerifyError, WireFormat,
};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::limits::{self, FieldTooLong, check_len};

/// A feed: the topic one owner's announcements are published on. It is random and shared only
/// with contacts, so outsiders cannot link it to the owner; removing a contact replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeedId(pub Hash32);

impl FeedId {
    /// A fresh random feed.
    pub fn random() -> FeedId {
        FeedId(Hash32(clawnet_crypto::rng::random_bytes()))
    }

    /// The gossipsub topic name of this feed.
    pub fn topic(&self) -> String {
        format!("clawnet/feed/{}", self.0.to_hex())
    }
}

/// What one identity agent presents to the contacts allowed to see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityTag {
    /// Its owner-signed certificate (id, role tag, keys).
    pub cert: Signed<IdentityCert>,
    /// What it is, for people and agents.
    pub description: String,
    /// What it can help with.
    pub offers: Vec<String>,
}

/// The owner's current set of identity tags for the recipients of one envelope. Signed by the
/// owner's root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagAnnouncement {
    /// The announcing owner.
    pub owner: OwnerId,
    /// The feed it is published on.
    pub feed: FeedId,
    /// Increases with every announcement on the feed; a lower one than already seen is stale.
    pub seq: u64,
    /// The tags these recipients may see.
    pub tags: Vec<IdentityTag>,
    /// Identities that lost their authority.
    pub revocations: Vec<Signed<Revocation>>,
    /// When.
    pub issued_at: Timestamp,
}

impl WireFormat for TagAnnouncement {
    const NAME: &'static str = "tag announcement";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 128 * 1024;
}

impl Signable for TagAnnouncement {
    const DOMAIN: Domain = Domain::TagAnnouncement;
}

/// A sealed announcement as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedTags {
    /// The feed.
    pub feed: FeedId,
    /// Its sequence number, repeated inside.
    pub seq: u64,
    /// The signed announcement, sealed.
    pub envelope: SealedEnvelope,
}

/// Why an announcement could not be sealed or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// We are not a recipient, or the envelope was moved to another feed or position.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The sealed content is not a signed announcement.
    #[error("sealed tags do not contain a signed announcement: {0}")]
    Malformed(String),
    /// The announcement is not signed by the expected owner.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The signed announcement names another feed, position or owner than its envelope.
    #[error("tag announcement does not match its envelope")]
    ContextMismatch,
    /// Too many tags or offers, or a field over its limit.
    #[error(transparent)]
    FieldTooLong(#[from] FieldTooLong),
    /// More tags than allowed.
    #[error("tag announcement with {0} tags, more than the limit of {max}", max = limits::MAX_TAGS)]
    TooManyTags(usize),
    /// An identity tag lists more offers than allowed.
    #[error("identity tag with {0} offers, more than the limit of {max}", max = limits::MAX_OFFERS)]
    TooManyOffers(usize),
}

impl SealedTags {
    /// Seals a signed announcement to `recipients`, bound to its feed and sequence number.
    pub fn seal(signed: &Signed<TagAnnouncement>, recipients: &[AgreementPublicKey]) -> Result<SealedTags, TagError> {
        SealedTags::seal_with(&mut OsRng::new(), signed, recipients)
    }

    /// Like [`SealedTags::seal`] with the given RNG (seeded RNGs make test vectors).
    pub fn seal_with<R: CryptoRng + ?Sized>(
        rng: &mut R,
        signed: &Signed<TagAnnouncement>,
        recipients: &[AgreementPublicKey],
    ) -> Result<SealedTags, TagError> {
        let announcement = signed.decode_unverified().map_err(|err| TagError::Malformed(err.to_string()))?;
        let (feed, seq) = (announcement.feed, announcement.seq);
        let payload = postcard::to_allocvec(signed).map_err(|err| TagError::Malformed(err.to_string()))?;
        let envelope = SealedEnvelope::seal_with(rng, &payload, recipients, &seal_context(&feed, seq))?;
        Ok(SealedTags { feed, seq, envelope })
    }

    /// Opens the envelope with our contact key and verifies it is `owner`'s announcement for this
    /// feed and position.
    pub fn open(&self, secret: &AgreementSecret, owner: &OwnerId) -> Result<Verified<TagAnnouncement>, TagError> {
        let payload = self.envelope.open(secret, &seal_context(&self.feed, self.seq))?;
        if payload.len() > TagAnnouncement::MAX_LEN + 256 {
            return Err(TagError::Malformed("oversized".into()));
        }
        let signed: Signed<TagAnnouncement> =
            postcard::from_bytes(&payload).map_err(|err| TagError::Malformed(err.to_string()))?;
        let announcement = signed.verify_signed_by(owner.key())?;
        if announcement.owner != *owner || announcement.feed != self.feed || announcement.seq != self.seq {
            return Err(TagError::ContextMismatch);
        }
        check_announcement(&announcement)?;
        Ok(announcement)
    }
}

/// Checks an announcement's counts and field lengths.
pub fn check_announcement(announcement: &TagAnnouncement) -> Result<(), TagError> {
    if announcement.tags.len() > limits::MAX_TAGS {
        return Err(TagError::TooManyTags(announcement.tags.len()));
    }
    for tag in &announcement.tags {
        check_len("description", &tag.description, limits::MAX_DESCRIPTION)?;
        if tag.offers.len() > limits::MAX_OFFERS {
            return Err(TagError::TooManyOffers(tag.offers.len()));
        }
        for offer in &tag.offers {
            check_len("offer", offer, limits::MAX_OFFER)?;
        }
    }
    Ok(())
}

/// The context a feed envelope is sealed under: the feed and the sequence number.
fn seal_context(feed: &FeedId, seq: u64) -> Vec<u8> {
    let mut context = b"clawnet/v1/tags\0".to_vec();
    context.extend_from_slice(feed.0.as_bytes());
    context.extend_from_slice(&seq.to_le_bytes());
    context
}
