//! The persistent replay cache. A [`NonceCheck`] lets a protocol state machine consult the
//! stored nonces and collect the new ones, which the caller then commits with its change.

use std::collections::BTreeMap;

use clawnet_crypto::Timestamp;
use clawnet_protocol::{Nonce, NonceLedger};

use crate::error::{DbResultExt, StoreError};
use crate::schema::NONCES;
use crate::view::{ReadView, Txn};

/// A [`NonceLedger`] over a read snapshot plus the nonces accepted since.
#[derive(Debug)]
pub struct NonceCheck<'v> {
    view: &'v ReadView,
    pending: BTreeMap<Nonce, Timestamp>,
}

impl<'v> NonceCheck<'v> {
    /// A check against `view`.
    pub fn new(view: &'v ReadView) -> NonceCheck<'v> {
        NonceCheck { view, pending: BTreeMap::new() }
    }

    /// The nonces accepted, to record with [`Txn::record_nonces`].
    pub fn into_pending(self) -> Vec<(Nonce, Timestamp)> {
        self.pending.into_iter().collect()
    }
}

impl NonceLedger for NonceCheck<'_> {
    fn seen(&self, nonce: &Nonce) -> bool {
        // Fail closed: a nonce we cannot look up is treated as seen, so the input is refused.
        self.pending.contains_key(nonce) || self.view.nonce_seen(nonce).unwrap_or(true)
    }

    fn record(&mut self, nonce: Nonce, keep_until: Timestamp) {
        self.pending.insert(nonce, keep_until);
    }
}

impl ReadView {
    /// Whether `nonce` was recorded.
    pub fn nonce_seen(&self, nonce: &Nonce) -> Result<bool, StoreError> {
        let table = self.tx.open_table(NONCES).ctx("reading the replay cache")?;
        Ok(table.get(&nonce.0).ctx("reading the replay cache")?.is_some())
    }
}

impl Txn<'_> {
    /// Records accepted nonces until their objects expire.
    pub fn record_nonces(&mut self, nonces: &[(Nonce, Timestamp)]) -> Result<(), StoreError> {
        let mut table = self.write_table(NONCES).ctx("writing the replay cache")?;
        for (nonce, keep_until) in nonces {
            table.insert(&nonce.0, keep_until.as_millis()).ctx("writing the replay cache")?;
        }
        Ok(())
    }

    /// Forgets nonces whose objects expired before `now`; returns how many.
    pub fn prune_nonces(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let mut table = self.write_table(NONCES).ctx("pruning the replay cache")?;
        let mut pruned = 0;
        table
            .retain(|_, keep_until| {
                let keep = keep_until >= now.as_millis();
                pruned += u64::from(!keep);
                keep
            })
            .ctx("pruning the replay cache")?;
        Ok(pruned)
    }
}
