//! Test vectors for every signed or sealed format, checked into `tests/vectors/`.
//!
//! Each vector is rebuilt from fixed seeds and compared with the file, so any change to an
//! encoding, a domain context or a construction fails here. Each file is also checked on its own
//! terms (the signature verifies, the envelope opens), which is what another implementation
//! would do with it. After an intentional format change, regenerate with
//! `CLAWNET_UPDATE_VECTORS=1 cargo test -p clawnet-protocol --test vectors` and bump the version.

use std::path::PathBuf;

use clawnet_crypto::keystore::{self, KdfParams, LockKey, Passphrase};
use clawnet_crypto::{
    AgreementSecret, Hash32, IdentityId, Keyring, OwnerId, SealedEnvelope, Signable, Signature, Signed,
    SigningPublicKey,
};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome, SealedEntry, link_hash, parse_record};
use clawnet_protocol::contact::{ContactAccept, ContactRemoval, ContactRequest, InviteToken, request_hash};
use clawnet_protocol::mailbox::letter::{Letter, open_letter, seal_letter_with};
use clawnet_protocol::mailbox::seal_context;
use clawnet_protocol::session::{CloseReason, EndMarker, turn_hash};
use clawnet_protocol::tags::{FeedId, IdentityTag, SealedTags, TagAnnouncement};
use clawnet_protocol::testkit::{T0, TestOwner, rng};
use clawnet_protocol::wire::WireMessage;
use clawnet_protocol::{MessageId, Nonce};
use serde_json::{Value, json};

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(format!("{name}.json"))
}

/// Compares `actual` with the checked-in vector, or writes it when asked to.
fn check_vector(name: &str, actual: &Value) -> Value {
    let path = vector_path(name);
    if std::env::var_os("CLAWNET_UPDATE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err} (regenerate with CLAWNET_UPDATE_VECTORS=1)", path.display()));
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(&stored, actual, "{name}: the format changed; see the module docs");
    stored
}

fn signed_vector<T: Signable>(signed: &Signed<T>) -> Value {
    let mut input = T::DOMAIN.context().as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(signed.body());
    json!({
        "format": T::NAME,
        "version": T::VERSION,
        "domain": T::DOMAIN.context(),
        "signer_public_key": hex::encode(signed.signer().as_bytes()),
        "body": hex::encode(signed.body()),
        "signing_input": hex::encode(input),
        "signature": signed.signature().to_hex(),
    })
}

/// Checks a stored signed vector independently of how it was made: decode and verify it.
fn verify_stored<T: Signable>(stored: &Value) -> T {
    let field = |key: &str| hex::decode(stored[key].as_str().unwrap()).unwrap();
    let signer = SigningPublicKey::from_bytes(&field("signer_public_key").try_into().unwrap()).unwrap();
    let signature = Signature(field("signature").try_into().unwrap());
    let signed = Signed::<T>::from_parts(field("body"), signer, signature);
    signed.verify().expect("stored vector verifies").into_value()
}

fn check_signed<T: Signable + PartialEq + std::fmt::Debug>(name: &str, signed: &Signed<T>) {
    let stored = check_vector(name, &signed_vector(signed));
    assert_eq!(verify_stored::<T>(&stored), signed.decode_unverified().unwrap());
}

fn owners() -> (TestOwner, TestOwner) {
    (TestOwner::new(1, &["procurement"]), TestOwner::new(2, &["sales"]))
}

#[test]
fn certificates() {
    let (alice, _) = owners();
    check_signed("device_cert", &alice.device_cert());
    check_signed("identity_cert", &alice.identity("procurement").cert);
    check_signed("revocation", &alice.revoke("procurement"));
}

#[test]
fn contact_messages() {
    let (alice, bob) = owners();
    let request = ContactRequest {
        from: bob.id(),
        to: alice.id(),
        display_name: "Bob".into(),
        contact_key: bob.keys.agreement.public_key(),
        device: bob.device_cert(),
        addresses: vec!["/ip4/127.0.0.1/tcp/4002".into()],
        invite: InviteToken([0x11; 32]),
        created_at: T0,
        nonce: Nonce([1; 16]),
    };
    let request = Signed::sign(&request, &bob.keys.signing);
    check_signed("contact_request", &request);
    let accept = ContactAccept {
        from: alice.id(),
        to: bob.id(),
        request: request_hash(&request),
        display_name: "Alice".into(),
        contact_key: alice.keys.agreement.public_key(),
        device: alice.device_cert(),
        addresses: vec!["/ip4/127.0.0.1/tcp/4002".into()],
        created_at: T0,
        nonce: Nonce([2; 16]),
    };
    check_signed("contact_accept", &Signed::sign(&accept, &alice.keys.signing));
    let removal = ContactRemoval { from: alice.id(), to: bob.id(), created_at: T0, nonce: Nonce([3; 16]) };
    check_signed("contact_removal", &Signed::sign(&removal, &alice.keys.signing));
}

#[test]
fn session_messages() {
    let (alice, bob) = owners();
    let proposal = alice.sign_proposal("procurement", &alice.propose("procurement", &bob, "sales", 6));
    check_signed("proposal", &proposal);
    check_signed("consent", &alice.consent(&proposal, b"a"));
    check_signed("rejection", &bob.reject(&proposal, "not this quarter"));
    let session = proposal.decode_unverified().unwrap().session;
    let turn = alice.turn("procurement", session, 1, Hash32([9; 32]), "500 units by March?", None);
    check_signed("turn", &turn);
    let last = bob.turn("sales", session, 2, turn_hash(&turn), "Agreed.", Some(EndMarker::Resolved));
    check_signed("close", &bob.close(session, CloseReason::Ended(EndMarker::Resolved), 2, turn_hash(&last)));

    // The same turn as a delivery.
    let message = WireMessage::Turn(turn);
    let bytes = message.encode();
    let stored = check_vector(
        "wire_message",
        &json!({ "format": "wire message", "bytes": hex::encode(&bytes), "message_id": message.id().0.to_hex() }),
    );
    let stored_bytes = hex::decode(stored["bytes"].as_str().unwrap()).unwrap();
    assert_eq!(WireMessage::decode(&stored_bytes).unwrap(), message);
    assert_eq!(MessageId::of(&stored_bytes).0.to_hex(), stored["message_id"].as_str().unwrap());
}

#[test]
fn tag_announcement_signed_and_sealed() {
    let (alice, bob) = owners();
    let feed = FeedId(Hash32([0x42; 32]));
    let announcement = TagAnnouncement {
        owner: alice.id(),
        feed,
        seq: 3,
        tags: vec![IdentityTag {
            cert: alice.identity("procurement").cert.clone(),
            description: "Buys components for ACME".into(),
            offers: vec!["purchase orders".into()],
        }],
        revocations: vec![],
        issued_at: T0,
    };
    let signed = Signed::sign(&announcement, &alice.keys.signing);
    check_signed("tag_announcement", &signed);

    let sealed = SealedTags::seal_with(&mut rng(7), &signed, &[bob.keys.agreement.public_key()]).unwrap();
    let stored = check_vector(
        "sealed_tags",
        &json!({
            "format": "sealed tags",
            "recipient_secret_key": hex::encode(*bob.keys.agreement.to_bytes()),
            "announcer": alice.id().to_hex(),
            "bytes": hex::encode(postcard::to_allocvec(&sealed).unwrap()),
        }),
    );
    let bytes = hex::decode(stored["bytes"].as_str().unwrap()).unwrap();
    let decoded: SealedTags = postcard::from_bytes(&bytes).unwrap();
    let secret = AgreementSecret::from_bytes(
        hex::decode(stored["recipient_secret_key"].as_str().unwrap()).unwrap().try_into().unwrap(),
    );
    assert_eq!(decoded.open(&secret, &alice.id()).unwrap().into_value(), announcement);
}

#[test]
fn mailbox_letter_signed_and_sealed() {
    let (alice, bob) = owners();
    let bob_device = bob.device.public_key();
    let proposal = bob.sign_proposal("sales", &bob.propose("sales", &alice, "procurement", 4));
    let message = WireMessage::Rejection(alice.reject(&proposal, "not this quarter")).encode();
    let letter = Letter { to: bob_device, message: message.clone() };
    check_signed("mailbox_letter", &Signed::sign(&letter, &alice.device));

    let item =
        seal_letter_with(&mut rng(13), &alice.device, bob_device, &bob.keys.agreement.public_key(), message.clone())
            .unwrap();
    let stored = check_vector(
        "mailbox_item",
        &json!({
            "format": "mailbox item (a signed letter, sealed)",
            "recipient_device_key": hex::encode(bob_device.as_bytes()),
            "recipient_secret_key": hex::encode(*bob.keys.agreement.to_bytes()),
            "context": hex::encode(seal_context(&bob_device)),
            "sealed": hex::encode(item.as_bytes()),
        }),
    );
    let envelope = SealedEnvelope::from_bytes(hex::decode(stored["sealed"].as_str().unwrap()).unwrap()).unwrap();
    let secret = AgreementSecret::from_bytes(
        hex::decode(stored["recipient_secret_key"].as_str().unwrap()).unwrap().try_into().unwrap(),
    );
    let opened = open_letter(&envelope, &secret, &bob_device).unwrap();
    assert_eq!((opened.from, opened.message), (alice.device.public_key(), message));
}

#[test]
fn sealed_envelope() {
    let mut keys_rng = rng(11);
    let recipients: Vec<AgreementSecret> = (0..3).map(|_| AgreementSecret::generate_with(&mut keys_rng)).collect();
    let publics: Vec<_> = recipients.iter().map(AgreementSecret::public_key).collect();
    let sealed = SealedEnvelope::seal_with(&mut rng(12), b"hello, contacts", &publics, b"context").unwrap();
    let stored = check_vector(
        "sealed_envelope",
        &json!({
            "format": "sealed envelope",
            "recipient_secret_keys": recipients.iter().map(|k| hex::encode(*k.to_bytes())).collect::<Vec<_>>(),
            "context": hex::encode(b"context"),
            "payload": hex::encode(b"hello, contacts"),
            "sealed": hex::encode(sealed.as_bytes()),
        }),
    );
    let envelope = SealedEnvelope::from_bytes(hex::decode(stored["sealed"].as_str().unwrap()).unwrap()).unwrap();
    for key in stored["recipient_secret_keys"].as_array().unwrap() {
        let secret = AgreementSecret::from_bytes(hex::decode(key.as_str().unwrap()).unwrap().try_into().unwrap());
        assert_eq!(envelope.open(&secret, b"context").unwrap().as_slice(), b"hello, contacts");
    }
}

#[test]
fn audit_entry() {
    let (alice, _) = owners();
    let draft = AuditDraft::new(
        Actor::Identity(IdentityId([3; 16])),
        "session.turn",
        "session 00ff turn 1",
        "consent 1234",
        Outcome::Success,
    );
    let entry = draft.into_entry(1, Hash32::ZERO, T0, alice.id());
    let sealed = SealedEntry::seal(&entry, &alice.device);
    let stored = check_vector(
        "audit_entry",
        &json!({
            "format": "audit entry",
            "domain": clawnet_protocol::audit::AuditEntry::DOMAIN.context(),
            "node_public_key": alice.device.public_key().to_hex(),
            "record": hex::encode(&sealed.record),
            "link": sealed.link.to_hex(),
        }),
    );
    let record = hex::decode(stored["record"].as_str().unwrap()).unwrap();
    let parsed = parse_record(&record).unwrap();
    let (body, signature) = (parsed.body, parsed.signature.expect("a one-entry commit is signed"));
    let node = SigningPublicKey::from_bytes(
        &hex::decode(stored["node_public_key"].as_str().unwrap()).unwrap().try_into().unwrap(),
    )
    .unwrap();
    node.verify(clawnet_protocol::audit::AuditEntry::DOMAIN, body, &signature).unwrap();
    assert_eq!(link_hash(body).to_hex(), stored["link"].as_str().unwrap());
}

#[test]
fn keystore() {
    let (alice, _) = owners();
    let keyring = Keyring::from_bytes(&{
        // A keyring with the test owner's keys, round-tripped through its own encoding.
        let mut ring = Keyring::generate();
        ring.owner.signing = clawnet_crypto::SigningSecret::from_bytes(&alice.keys.signing.to_bytes());
        ring.owner.agreement = AgreementSecret::from_bytes(*alice.keys.agreement.to_bytes());
        ring.device = clawnet_crypto::SigningSecret::from_bytes(&alice.device.to_bytes());
        ring.to_bytes()
    })
    .unwrap();
    let plaintext = keyring.to_bytes();
    let passphrase = Passphrase::new("correct horse battery staple".into());
    let lock = LockKey::derive_with(&mut rng(21), &passphrase, KdfParams::MINIMAL).unwrap();
    let blob = lock.lock_with(&mut rng(22), &plaintext);
    let stored = check_vector(
        "keystore",
        &json!({
            "format": "keystore",
            "passphrase": "correct horse battery staple",
            "kdf": "argon2id m=8KiB t=1 p=1",
            "plaintext": hex::encode(plaintext.as_slice()),
            "blob": hex::encode(&blob),
        }),
    );
    let blob = hex::decode(stored["blob"].as_str().unwrap()).unwrap();
    let (secrets, _) = keystore::unlock(&blob, Some(&passphrase)).unwrap();
    let restored = Keyring::from_bytes(&secrets).unwrap();
    assert_eq!(restored.owner.owner_id(), OwnerId::from_key(alice.keys.signing.public_key()));
}
