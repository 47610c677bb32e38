//! Signature benchmark: what a governed session pays per turn signature, next to raw
//! ed25519-dalek measured in the same run.
//!
//! Per signature, on turn-sized bodies ([`BODY`] bytes):
//! - signing: ours ([`SigningSecret::sign`], domain-separated) against dalek's `sign`;
//! - one at a time: ours ([`SigningPublicKey::verify`], `crypto/src/verification.rs`) against
//!   dalek's `verify_strict`;
//! - in batches of [`BATCH`] ([`SigningPublicKey::verify_batch`]), as the session handler checks
//!   the turns (or consents) of one delivery: all by one key (one speaker, the usual case) and
//!   each by another key (the worst case).
//!
//! Ratios are against `verify_strict` (signing: against dalek's `sign`); each figure is the
//! median of [`RUNS`] runs. Run: `cargo bench -p clawnet-crypto --bench verify`.

use std::hint::black_box;
use std::time::Instant;

use clawnet_crypto::{Domain, Signature, SigningPublicKey, SigningSecret};
use ed25519_dalek::{Signer, SigningKey};

/// Bytes signed: about an encoded turn with a sentence of text.
const BODY: usize = 300;
/// Signatures checked together: a delivery's worth of turns under load.
const BATCH: usize = 10;
/// Signatures per run of each measurement.
const PER_RUN: usize = 2000;
/// Runs; the median is printed.
const RUNS: usize = 5;

fn main() {
    let bodies: Vec<Vec<u8>> = (0..BATCH).map(|i| vec![i as u8; BODY]).collect();

    let dalek = SigningKey::from_bytes(&[7; 32]);
    let dalek_signatures: Vec<ed25519_dalek::Signature> = bodies.iter().map(|body| dalek.sign(body)).collect();
    let dalek_key = dalek.verifying_key();

    let one_secret = SigningSecret::from_bytes(&[7; 32]);
    let one_key = one_secret.public_key();
    let secrets: Vec<SigningSecret> = (0..BATCH).map(|i| SigningSecret::from_bytes(&[i as u8 + 1; 32])).collect();
    let keys: Vec<SigningPublicKey> = secrets.iter().map(SigningSecret::public_key).collect();
    let by_one: Vec<Signature> = bodies.iter().map(|body| one_secret.sign(Domain::Turn, body)).collect();
    let by_many: Vec<Signature> =
        bodies.iter().zip(&secrets).map(|(body, secret)| secret.sign(Domain::Turn, body)).collect();
    let one_items: Vec<(&SigningPublicKey, &[u8], &Signature)> =
        bodies.iter().zip(&by_one).map(|(body, signature)| (&one_key, body.as_slice(), signature)).collect();
    let many_items: Vec<(&SigningPublicKey, &[u8], &Signature)> = keys
        .iter()
        .zip(&bodies)
        .zip(&by_many)
        .map(|((key, body), signature)| (key, body.as_slice(), signature))
        .collect();

    let raw_sign = per_signature(1, || {
        black_box(dalek.sign(black_box(&bodies[0])));
    });
    let sign = per_signature(1, || {
        black_box(one_secret.sign(Domain::Turn, black_box(&bodies[0])));
    });
    let strict = per_signature(BATCH, || {
        for (body, signature) in bodies.iter().zip(&dalek_signatures) {
            assert!(dalek_key.verify_strict(body, signature).is_ok());
        }
    });
    let one = per_signature(BATCH, || {
        for (body, signature) in bodies.iter().zip(&by_one) {
            assert!(one_key.verify(Domain::Turn, body, signature).is_ok());
        }
    });
    let batch_one_key = per_signature(BATCH, || {
        assert!(SigningPublicKey::verify_batch(Domain::Turn, &one_items).is_ok());
    });
    let batch_many_keys = per_signature(BATCH, || {
        assert!(SigningPublicKey::verify_batch(Domain::Turn, &many_items).is_ok());
    });

    println!("per signature, {BODY}-byte bodies, median of {RUNS} runs of {PER_RUN}");
    let line = |label: &str, us: f64, base: f64, of: &str| {
        println!("  {label:<46} {us:>7.2} us   {:>5.2}x {of}", us / base);
    };
    line("raw ed25519-dalek sign:", raw_sign, raw_sign, "raw sign");
    line("ours: sign:", sign, raw_sign, "raw sign");
    line("raw ed25519-dalek verify_strict:", strict, strict, "verify_strict");
    line("ours: one at a time:", one, strict, "verify_strict");
    line(&format!("ours: batches of {BATCH}, one key:"), batch_one_key, strict, "verify_strict");
    line(&format!("ours: batches of {BATCH}, {BATCH} keys:"), batch_many_keys, strict, "verify_strict");
}

/// Median over [`RUNS`] runs of the time per signature of `work`, which handles `signatures`.
fn per_signature(signatures: usize, mut work: impl FnMut()) -> f64 {
    let rounds = PER_RUN / signatures;
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..rounds {
                work();
            }
            started.elapsed().as_secs_f64() * 1e6 / (rounds * signatures) as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}
