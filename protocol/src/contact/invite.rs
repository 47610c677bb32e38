//! Invite codes: what an owner hands to someone out of band (chat, email, QR) so that person's
//! node can reach theirs and ask to become a contact.
//!
//! A code carries the inviting owner's key (the requester will trust it as that person: compare
//! the fingerprint), the node's device key and addresses, a one-time token and its expiry. It is
//! text: `clawnet-invite:` followed by the URL-safe base64 of the canonical encoding.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawnet_crypto::{DecodeError, OwnerId, SigningPublicKey, Timestamp, WireFormat, encoding};
use serde::{Deserialize, Serialize};

use super::InviteToken;
use crate::limits::{self, FieldTooLong, check_len};

const PREFIX: &str = "clawnet-invite:";

/// Everything a node needs to send a contact request to the inviting owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteCode {
    /// The inviting owner.
    pub owner: OwnerId,
    /// Their node's device key (its libp2p peer id derives from it).
    pub device_key: SigningPublicKey,
    /// Their name, as they present it.
    pub display_name: String,
    /// Where their node can be reached (multiaddrs).
    pub addresses: Vec<String>,
    /// The one-time token the request must present.
    pub token: InviteToken,
    /// When the invite stops being valid.
    pub expires_at: Timestamp,
}

impl WireFormat for InviteCode {
    const NAME: &'static str = "invite code";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 4096;
}

/// Why a text is not a usable invite code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteCodeError {
    /// It does not start with `clawnet-invite:`.
    #[error("not a ClawNet invite code (it should start with {PREFIX:?})")]
    NotAnInvite,
    /// The text after the prefix is not base64.
    #[error("the invite code is damaged (not base64): copy all of it")]
    NotBase64,
    /// The bytes do not decode.
    #[error("the invite code is damaged: {0}")]
    Decode(#[from] DecodeError),
    /// A field is over its limit.
    #[error(transparent)]
    FieldTooLong(#[from] FieldTooLong),
    /// The invite has expired.
    #[error("the invite code has expired: ask for a new one")]
    Expired,
}

impl InviteCode {
    /// The text form.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(encoding::encode(self)))
    }

    /// Parses the text form (surrounding whitespace allowed) and checks it is still valid.
    pub fn from_text(text: &str, now: Timestamp) -> Result<InviteCode, InviteCodeError> {
        let body = text.trim().strip_prefix(PREFIX).ok_or(InviteCodeError::NotAnInvite)?;
        if body.len() > InviteCode::MAX_LEN * 4 / 3 + 4 {
            return Err(
                DecodeError::TooLarge { what: InviteCode::NAME, len: body.len(), max: InviteCode::MAX_LEN }.into()
            );
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| InviteCodeError::NotBase64)?;
        let code: InviteCode = encoding::decode(&bytes)?;
        check_len("display name", &code.display_name, limits::MAX_DISPLAY_NAME)?;
        limits::check_addresses(&code.addresses)?;
        if code.expires_at <= now {
            return Err(InviteCodeError::Expired);
        }
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawnet_crypto::SigningSecret;

    fn code() -> InviteCode {
        let owner = SigningSecret::from_bytes(&[1; 32]).public_key();
        InviteCode {
            owner: OwnerId::from_key(owner),
            device_key: SigningSecret::from_bytes(&[2; 32]).public_key(),
            display_name: "Alice".into(),
            addresses: vec!["/ip4/127.0.0.1/tcp/4002".into()],
            token: InviteToken([7; 32]),
            expires_at: Timestamp(1000),
        }
    }

    #[test]
    fn text_round_trip() {
        let text = code().to_text();
        assert!(text.starts_with(PREFIX));
        assert_eq!(InviteCode::from_text(&format!("  {text}\n"), Timestamp(999)), Ok(code()));
    }

    #[test]
    fn damaged_or_expired_codes_are_refused() {
        let text = code().to_text();
        assert_eq!(InviteCode::from_text("hello", Timestamp(0)), Err(InviteCodeError::NotAnInvite));
        assert_eq!(InviteCode::from_text(&format!("{text}!"), Timestamp(0)), Err(InviteCodeError::NotBase64));
        assert!(matches!(
            InviteCode::from_text(&text[..text.len() - 10], Timestamp(0)),
            Err(InviteCodeError::Decode(_))
        ));
        assert_eq!(InviteCode::from_text(&text, Timestamp(1000)), Err(InviteCodeError::Expired));
    }
}
