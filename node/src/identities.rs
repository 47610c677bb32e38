//! Creating, listing and retiring this owner's identity agents. Each change is one atomic,
//! audited commit: the identity record, the re-locked keystore and the audit entry.

use clawnet_crypto::cert::ContextTag;
use clawnet_crypto::{IdentityCert, IdentityId, IdentitySecrets, Revocation, Timestamp};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::limits::MAX_DESCRIPTION;
use clawnet_storage::Change;
use clawnet_storage::identities::{IdentityRecord, IdentityStatus};

use crate::error::NodeError;
use crate::home::{NodeHome, UnlockedHome};

impl NodeHome {
    /// Every identity, active and retired.
    pub fn identities(&self) -> Result<Vec<IdentityRecord>, NodeError> {
        let mut identities = self.db().identities()?.to_vec();
        identities.sort_by(|a, b| (a.created_at, &a.tag).cmp(&(b.created_at, &b.tag)));
        Ok(identities)
    }
}

impl UnlockedHome {
    /// Creates an identity agent with fresh keys and an owner-signed certificate.
    pub fn create_identity(&self, tag: &str, description: &str) -> Result<IdentityRecord, NodeError> {
        let tag: ContextTag = tag.parse()?;
        let _serialized = self.identity_changes.lock().unwrap_or_else(|poison| poison.into_inner());
        if description.len() > MAX_DESCRIPTION {
            return Err(NodeError::DescriptionTooLong { len: description.len(), max: MAX_DESCRIPTION });
        }
        if self.db().read()?.active_identity_by_tag(&tag)?.is_some() {
            return Err(NodeError::TagInUse(tag.to_string()));
        }
        let id = IdentityId::random();
        let secrets = IdentitySecrets::generate(0);
        let now = Timestamp::now();
        let cert = IdentityCert {
            owner: self.owner(),
            identity: id,
            tag: tag.clone(),
            signing_key: secrets.signing.public_key(),
            agreement_key: secrets.agreement.public_key(),
            epoch: secrets.epoch,
            issued_at: now,
        };
        let record = IdentityRecord {
            id,
            tag,
            description: description.to_owned(),
            cert: self.sign_as_owner(&cert),
            created_at: now,
            status: IdentityStatus::Active,
        };
        self.keys_mut().identities.insert(id, secrets);
        let audit = AuditDraft::new(
            Actor::Owner,
            "identity.create",
            format!("identity {} ({id})", record.tag),
            "owner command",
            Outcome::Success,
        );
        if let Err(err) = self.commit_identity(&record, audit) {
            self.keys_mut().identities.remove(&id);
            return Err(err);
        }
        Ok(record)
    }

    /// Retires the active identity `tag`: signs its revocation, archives its record and drops
    /// its secret keys.
    pub fn retire_identity(&self, tag: &str) -> Result<IdentityRecord, NodeError> {
        let tag: ContextTag = tag.parse()?;
        let _serialized = self.identity_changes.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut record = self
            .db()
            .read()?
            .active_identity_by_tag(&tag)?
            .ok_or_else(|| NodeError::NoSuchIdentity(tag.to_string()))?;
        let cert = record.cert.decode_unverified().map_err(|err| NodeError::KeyringCorrupt(err.to_string()))?;
        let now = Timestamp::now();
        let revocation = Revocation {
            owner: self.owner(),
            identity: record.id,
            epoch: cert.epoch,
            revoked_at: now,
            reason: "retired by owner".into(),
        };
        record.status = IdentityStatus::Retired { at: now, revocation: Box::new(self.sign_as_owner(&revocation)) };
        let secrets = self.keys_mut().identities.remove(&record.id);
        let audit = AuditDraft::new(
            Actor::Owner,
            "identity.retire",
            format!("identity {} ({})", record.tag, record.id),
            "owner command",
            Outcome::Success,
        );
        if let Err(err) = self.commit_identity(&record, audit) {
            if let Some(secrets) = secrets {
                self.keys_mut().identities.insert(record.id, secrets);
            }
            return Err(err);
        }
        Ok(record)
    }

    fn commit_identity(&self, record: &IdentityRecord, audit: AuditDraft) -> Result<(), NodeError> {
        let blob = self.locked_keyring();
        let record = record.clone();
        let change = Change::new(move |txn| {
            txn.put_identity(&record)?;
            txn.put_keystore(&blob)
        })
        .with_audit(audit);
        self.db().commit(change)?;
        Ok(())
    }
}
