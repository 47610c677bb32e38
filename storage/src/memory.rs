//! Identity memory: what each identity agent knows, in three layers (DESIGN.md, "Agents").
//!
//! *Factual* (files, projects, contacts, schedules), *pattern* (habits, preferences, style per
//! counterpart) and *value* (never-share items, bottom lines, stance). Entries are keyed by
//! (identity, number), numbers counting up per identity so the owner can name them
//! (`clawnet memory edit work 3`). Which agent may read or write which entries is the node's
//! decision; this module only stores them.

use std::fmt;

use clawnet_crypto::{IdentityId, Timestamp, WireFormat, encoding};
use redb::ReadableTableMetadata;
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::MEMORY;
use crate::view::{ReadView, Txn, decode_value};

/// The longest memory text, in bytes.
pub const MAX_MEMORY_TEXT: usize = 2000;

/// The three layers of an identity's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemoryLayer {
    /// Files, projects, contacts, schedules.
    Factual,
    /// Habits, preferences, style per counterpart.
    Pattern,
    /// Never-share items, bottom lines, stance.
    Value,
}

impl MemoryLayer {
    /// Its lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            MemoryLayer::Factual => "factual",
            MemoryLayer::Pattern => "pattern",
            MemoryLayer::Value => "value",
        }
    }
}

impl fmt::Display for MemoryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an entry is; the layer follows from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemoryKind {
    /// A fact (factual layer).
    Fact,
    /// A habit, preference or style (pattern layer).
    Pattern,
    /// Something that must never leave the node (value layer; enforced by the disclosure guard).
    NeverShare,
    /// How to behave, for example "be polite but firm" (value layer).
    Stance,
    /// A limit to negotiate within (value layer).
    BottomLine(Bound),
}

impl MemoryKind {
    /// The layer this kind belongs to.
    pub fn layer(&self) -> MemoryLayer {
        match self {
            MemoryKind::Fact => MemoryLayer::Factual,
            MemoryKind::Pattern => MemoryLayer::Pattern,
            MemoryKind::NeverShare | MemoryKind::Stance | MemoryKind::BottomLine(_) => MemoryLayer::Value,
        }
    }

    /// Its lowercase name, as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            MemoryKind::Fact => "fact",
            MemoryKind::Pattern => "pattern",
            MemoryKind::NeverShare => "never-share",
            MemoryKind::Stance => "stance",
            MemoryKind::BottomLine(_) => "bottom-line",
        }
    }
}

/// Which side of a limit is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Accept the limit or more (a seller's price, a deadline's slack).
    AtLeast,
    /// Accept the limit or less (a buyer's price).
    AtMost,
}

/// A negotiable quantity with a limit that must hold and the value to open with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    /// What is negotiated ("unit price").
    pub subject: String,
    /// Which side of `limit` is acceptable.
    pub direction: Direction,
    /// The worst acceptable value.
    pub limit: Amount,
    /// The value to open with (on the good side of `limit`).
    pub target: Amount,
    /// Unit, for example "EUR" (may be empty).
    pub unit: String,
}

impl Bound {
    /// Whether `value` is acceptable.
    pub fn accepts(&self, value: Amount) -> bool {
        match self.direction {
            Direction::AtLeast => value >= self.limit,
            Direction::AtMost => value <= self.limit,
        }
    }

    /// Whether `a` is better for us than `b`.
    pub fn prefers(&self, a: Amount, b: Amount) -> bool {
        match self.direction {
            Direction::AtLeast => a > b,
            Direction::AtMost => a < b,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.direction {
            Direction::AtLeast => "at least",
            Direction::AtMost => "at most",
        };
        let unit = if self.unit.is_empty() { String::new() } else { format!(" {}", self.unit) };
        write!(f, "{}: {side} {}{unit}, open at {}{unit}", self.subject, self.limit, self.target)
    }
}

/// A decimal quantity in hundredths (exact, so limits compare without rounding surprises).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Amount(pub i64);

impl Amount {
    /// `units` whole units.
    pub fn units(units: i64) -> Amount {
        Amount(units.saturating_mul(100))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Who wrote an entry last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemoryAuthor {
    /// The owner (CLI, API).
    Owner,
    /// The identity agent itself, through its memory tool.
    Agent,
}

/// One memory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRecord {
    /// Its number within the identity's memory.
    pub id: u64,
    /// What it is.
    pub kind: MemoryKind,
    /// The entry itself.
    pub text: String,
    /// Who wrote it last.
    pub author: MemoryAuthor,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl MemoryRecord {
    /// Its layer.
    pub fn layer(&self) -> MemoryLayer {
        self.kind.layer()
    }
}

impl WireFormat for MemoryRecord {
    const NAME: &'static str = "memory entry";
    const VERSION: u8 = 1;
    // Text, plus a bottom line's subject and unit cut from that text.
    const MAX_LEN: usize = 3 * MAX_MEMORY_TEXT + 256;
}

impl ReadView {
    /// Every entry of `identity`'s memory, by number.
    pub fn memories(&self, identity: &IdentityId) -> Result<Vec<MemoryRecord>, StoreError> {
        let table = self.tx.open_table(MEMORY).ctx("reading memory")?;
        let mut records = Vec::new();
        for row in table.range((&identity.0, 0)..=(&identity.0, u64::MAX)).ctx("reading memory")? {
            let (_, value) = row.ctx("reading memory")?;
            records.push(decode_value(value.value())?);
        }
        Ok(records)
    }

    /// Entry `id` of `identity`'s memory.
    pub fn memory(&self, identity: &IdentityId, id: u64) -> Result<Option<MemoryRecord>, StoreError> {
        let table = self.tx.open_table(MEMORY).ctx("reading memory")?;
        let value = table.get((&identity.0, id)).ctx("reading memory")?;
        value.map(|value| decode_value(value.value())).transpose()
    }

    /// The number the next entry of `identity`'s memory gets.
    pub fn next_memory_id(&self, identity: &IdentityId) -> Result<u64, StoreError> {
        let table = self.tx.open_table(MEMORY).ctx("reading memory")?;
        let last = table.range((&identity.0, 0)..=(&identity.0, u64::MAX)).ctx("reading memory")?.next_back();
        match last {
            Some(row) => Ok(row.ctx("reading memory")?.0.value().1.saturating_add(1)),
            None => Ok(1),
        }
    }

    /// How many entries all identities hold together.
    pub fn memory_count(&self) -> Result<u64, StoreError> {
        let table = self.tx.open_table(MEMORY).ctx("reading memory")?;
        table.len().ctx("reading memory")
    }
}

impl Txn<'_> {
    /// Stores an entry under its number, replacing what was there. The caller allocates numbers
    /// with [`ReadView::next_memory_id`] while holding its own lock on memory writes (a step
    /// cannot refuse: a failing step fails the whole group commit).
    pub fn put_memory(&mut self, identity: &IdentityId, record: &MemoryRecord) -> Result<(), StoreError> {
        let mut table = self.write_table(MEMORY).ctx("writing memory")?;
        table.insert((&identity.0, record.id), encoding::encode(record).as_slice()).ctx("writing memory")?;
        Ok(())
    }

    /// Deletes entry `id`; returns whether it existed.
    pub fn delete_memory(&mut self, identity: &IdentityId, id: u64) -> Result<bool, StoreError> {
        let mut table = self.write_table(MEMORY).ctx("deleting memory")?;
        table.remove((&identity.0, id)).ctx("deleting memory")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_print_exactly() {
        assert_eq!(Amount(4200).to_string(), "42.00");
        assert_eq!(Amount(-5).to_string(), "-0.05");
        assert_eq!(Amount::units(7).to_string(), "7.00");
    }

    #[test]
    fn bounds_know_their_good_side() {
        let price = Bound {
            subject: "unit price".into(),
            direction: Direction::AtMost,
            limit: Amount(4200),
            target: Amount(3800),
            unit: "EUR".into(),
        };
        assert!(price.accepts(Amount(4200)) && price.accepts(Amount(100)) && !price.accepts(Amount(4201)));
        assert!(price.prefers(Amount(3900), Amount(4000)));
        assert_eq!(price.to_string(), "unit price: at most 42.00 EUR, open at 38.00 EUR");
        assert_eq!(MemoryKind::BottomLine(price).layer(), MemoryLayer::Value);
    }
}
