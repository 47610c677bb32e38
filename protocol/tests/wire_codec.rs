//! The delivery decoder fed hostile input: oversized, truncated, unknown versions, garbage.

use clawnet_crypto::DecodeError;
use clawnet_protocol::limits::MAX_WIRE_MESSAGE;
use clawnet_protocol::testkit::TestOwner;
use clawnet_protocol::wire::{ProposalOffer, WireMessage};
use proptest::prelude::*;

fn sample() -> WireMessage {
    let alice = TestOwner::new(1, &["procurement"]);
    let bob = TestOwner::new(2, &["sales"]);
    let proposal = alice.sign_proposal("procurement", &alice.propose("procurement", &bob, "sales", 4));
    let consent = alice.consent(&proposal, b"a");
    WireMessage::Proposal(Box::new(ProposalOffer { proposal, consent }))
}

#[test]
fn round_trip_and_id_is_stable() {
    let message = sample();
    let bytes = message.encode();
    assert_eq!(WireMessage::decode(&bytes), Ok(message.clone()));
    assert_eq!(message.id(), WireMessage::decode(&bytes).unwrap().id());
}

#[test]
fn decoder_rejects_oversized_input() {
    let bytes = vec![1u8; MAX_WIRE_MESSAGE + 1];
    assert_eq!(
        WireMessage::decode(&bytes),
        Err(DecodeError::TooLarge { what: "wire message", len: MAX_WIRE_MESSAGE + 1, max: MAX_WIRE_MESSAGE })
    );
}

#[test]
fn decoder_rejects_truncated_input() {
    let bytes = sample().encode();
    for cut in 0..bytes.len() {
        let err = WireMessage::decode(&bytes[..cut]).expect_err("a truncated message decoded");
        // A cut inside a signed body yields a shorter byte string that is still a complete
        // postcard value only if lengths line up; postcard length prefixes make that impossible,
        // so every cut must report truncation.
        assert_eq!(err, DecodeError::Truncated { what: "wire message" }, "cut at {cut}");
    }
}

#[test]
fn decoder_rejects_unknown_version() {
    let mut bytes = sample().encode();
    bytes[0] = 2;
    assert!(matches!(WireMessage::decode(&bytes), Err(DecodeError::UnknownVersion { found: 2, supported: 1, .. })));
}

#[test]
fn decoder_rejects_unknown_message_kind() {
    let mut bytes = sample().encode();
    bytes[1] = 200; // no such variant
    assert!(matches!(WireMessage::decode(&bytes), Err(DecodeError::Malformed { .. })));
}

/// A manager agent has no id, key or address: no message kind can carry one to it. This pins the
/// set of message kinds, so adding one makes this test fail until someone checks it addresses
/// only owners, identities or sessions.
#[test]
fn no_message_kind_addresses_a_manager() {
    let kinds = [
        "contact request",
        "contact accept",
        "contact removal",
        "tag sync",
        "proposal",
        "consent",
        "rejection",
        "turn",
        "close",
    ];
    for variant in 0u8..=20 {
        let mut bytes = sample().encode();
        bytes[1] = variant;
        if let Ok(message) = WireMessage::decode(&bytes) {
            assert!(kinds.contains(&message.kind()), "unexpected kind {}", message.kind());
        }
    }
    assert_eq!(sample().kind(), "proposal");
}

proptest! {
    #[test]
    fn decoder_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = WireMessage::decode(&bytes);
    }

    #[test]
    fn decoder_never_panics_on_mutations(idx in 0usize..400, value in any::<u8>()) {
        let mut bytes = sample().encode();
        let idx = idx % bytes.len();
        bytes[idx] = value;
        if let Ok(message) = WireMessage::decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes (canonical encoding).
            prop_assert_eq!(message.encode(), bytes);
        }
    }
}

#[test]
fn kind_of_reads_the_tag_without_decoding() {
    let message = sample();
    assert_eq!(WireMessage::kind_of(&message.encode()), message.kind());
    assert_eq!(WireMessage::kind_of(&[1, 200]), "message");
    assert_eq!(WireMessage::kind_of(&[]), "message");
}

#[test]
fn delivery_batches_are_bounded() {
    use clawnet_protocol::wire::{BatchError, DeliveryBatch, MAX_BATCH_MESSAGES};
    let one = DeliveryBatch { messages: vec![sample().encode()] };
    assert_eq!(DeliveryBatch::decode(&one.encode()).unwrap(), one);
    assert_eq!(one.ids(), vec![sample().id()]);
    let empty = DeliveryBatch { messages: vec![] };
    assert_eq!(DeliveryBatch::decode(&empty.encode()), Err(BatchError::Count(0)));
    let overfull = DeliveryBatch { messages: vec![vec![1]; MAX_BATCH_MESSAGES + 1] };
    assert_eq!(DeliveryBatch::decode(&overfull.encode()), Err(BatchError::Count(MAX_BATCH_MESSAGES + 1)));
    assert!(matches!(DeliveryBatch::decode(&[1, 0xff, 0xff]), Err(BatchError::Decode(_))));
}
