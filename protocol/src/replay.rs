//! Replay protection: the nonces of accepted signed objects, kept until those objects expire.

use std::collections::BTreeMap;

use clawnet_crypto::Timestamp;

use crate::ids::Nonce;

/// Remembers nonces that were accepted. State machines consult it before accepting a signed
/// object and record the nonce only once every other check passed.
pub trait NonceLedger {
    /// Whether `nonce` was accepted before.
    fn seen(&self, nonce: &Nonce) -> bool;
    /// Remembers `nonce` until `keep_until` (after which the object carrying it is expired and
    /// refused on that ground anyway).
    fn record(&mut self, nonce: Nonce, keep_until: Timestamp);
}

/// An in-memory [`NonceLedger`], for tests and short-lived tools. Nodes use the persistent one in
/// storage.
#[derive(Debug, Default, Clone)]
pub struct MemoryLedger {
    nonces: BTreeMap<Nonce, Timestamp>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }

    /// Forgets nonces whose objects expired before `now`.
    pub fn prune(&mut self, now: Timestamp) {
        self.nonces.retain(|_, keep_until| *keep_until >= now);
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.nonces.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.nonces.is_empty()
    }
}

impl NonceLedger for MemoryLedger {
    fn seen(&self, nonce: &Nonce) -> bool {
        self.nonces.contains_key(nonce)
    }

    fn record(&mut self, nonce: Nonce, keep_until: Timestamp) {
        self.nonces.insert(nonce, keep_until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_forgets_only_expired() {
        let mut ledger = MemoryLedger::new();
        ledger.record(Nonce([1; 16]), Timestamp(10));
        ledger.record(Nonce([2; 16]), Timestamp(20));
        ledger.prune(Timestamp(15));
        assert!(!ledger.seen(&Nonce([1; 16])));
        assert!(ledger.seen(&Nonce([2; 16])));
        assert_eq!(ledger.len(), 1);
    }
}
