//! Identity memory as the node governs it: who may read and write which entries, the audit of
//! every write, and retrieval ranked for a query.
//!
//! Reading: an identity agent reads only its own identity's entries; the manager reads every
//! identity's ([`MemoryScope`]). Writing: the owner writes anything; an identity agent only adds
//! factual and pattern entries to its own memory, never value entries (a model talked into
//! "forgetting" a never-share item must not be able to), and never edits or deletes.

use std::collections::HashMap;

use clawnet_crypto::{IdentityId, Timestamp};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_storage::Change;
use clawnet_storage::identities::IdentityRecord;
use clawnet_storage::memory::{
    Amount, Bound, Direction, MAX_MEMORY_TEXT, MemoryAuthor, MemoryKind, MemoryLayer, MemoryRecord,
};
use serde::{Deserialize, Serialize};

use super::amounts::parse_amount;
use crate::error::NodeError;
use crate::home::{NodeHome, UnlockedHome};

/// Whose memory a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryScope {
    /// One identity's memory (what an identity agent sees).
    Identity(IdentityId),
    /// Every identity's memory (what the manager sees).
    All,
}

/// Who is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryWriter {
    /// The owner, through the CLI or API.
    Owner,
    /// An identity agent, through its memory tool, on its own memory.
    Agent(IdentityId),
}

impl MemoryWriter {
    fn actor(self) -> Actor {
        match self {
            MemoryWriter::Owner => Actor::Owner,
            MemoryWriter::Agent(id) => Actor::Identity(id),
        }
    }

    fn basis(self) -> &'static str {
        match self {
            MemoryWriter::Owner => "owner command",
            MemoryWriter::Agent(_) => "agent tool memory_store",
        }
    }

    fn author(self) -> MemoryAuthor {
        match self {
            MemoryWriter::Owner => MemoryAuthor::Owner,
            MemoryWriter::Agent(_) => MemoryAuthor::Agent,
        }
    }
}

/// A memory entry with the identity it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryItem {
    /// The identity's tag.
    pub identity: String,
    /// Its number within that identity's memory.
    pub id: u64,
    /// `factual`, `pattern` or `value`.
    pub layer: String,
    /// `fact`, `pattern`, `never-share`, `stance` or `bottom-line`.
    pub kind: String,
    /// The entry.
    pub text: String,
    /// `owner` or `agent`.
    pub author: String,
    /// When it last changed (ms since the epoch).
    pub updated_at_ms: u64,
    /// The stored record, for code that needs the structured kind (bottom lines).
    #[serde(skip)]
    pub record: Option<MemoryRecord>,
}

impl MemoryItem {
    fn of(identity: &IdentityRecord, record: &MemoryRecord) -> MemoryItem {
        MemoryItem {
            identity: identity.tag.to_string(),
            id: record.id,
            layer: record.layer().to_string(),
            kind: record.kind.name().into(),
            text: record.text.clone(),
            author: match record.author {
                MemoryAuthor::Owner => "owner",
                MemoryAuthor::Agent => "agent",
            }
            .into(),
            updated_at_ms: record.updated_at.as_millis(),
            record: Some(record.clone()),
        }
    }

    /// The structured kind, if this item came from the database.
    pub fn kind(&self) -> Option<&MemoryKind> {
        self.record.as_ref().map(|record| &record.kind)
    }
}

impl NodeHome {
    /// The entries `scope` may read, in `layer` if given, by identity then number. Retired
    /// identities' memories are archived: the manager still reads them, no agent writes them.
    pub fn memories(&self, scope: MemoryScope, layer: Option<MemoryLayer>) -> Result<Vec<MemoryItem>, NodeError> {
        let in_scope = |id: &IdentityId| match scope {
            MemoryScope::Identity(only) => *id == only,
            MemoryScope::All => true,
        };
        if layer == Some(MemoryLayer::Value) {
            // Read for every message an identity agent sends (its role prompt, the disclosure
            // guard), so from the copy the database keeps in memory, not a scan of all memory.
            let (identities, values) = (self.db().identities()?, self.db().value_memories()?);
            return Ok(values
                .iter()
                .filter(|(id, _)| in_scope(id))
                .filter_map(|(id, record)| {
                    identities
                        .iter()
                        .find(|identity| identity.id == *id)
                        .map(|identity| MemoryItem::of(identity, record))
                })
                .collect());
        }
        let read = self.db().read()?;
        let mut items = Vec::new();
        for identity in read.identities()? {
            if !in_scope(&identity.id) {
                continue;
            }
            for record in read.memories(&identity.id)? {
                if layer.is_none_or(|layer| record.layer() == layer) {
                    items.push(MemoryItem::of(&identity, &record));
                }
            }
        }
        Ok(items)
    }
}

impl UnlockedHome {
    /// Adds an entry to the memory of the active identity `tag`, audited.
    pub async fn memory_add(
        &self,
        tag: &str,
        kind: MemoryKind,
        text: &str,
        writer: MemoryWriter,
    ) -> Result<MemoryItem, NodeError> {
        let identity = self.active_identity(tag)?;
        let text = checked_text(text)?;
        match writer {
            MemoryWriter::Agent(id) if id != identity.id => {
                return Err(NodeError::NotAllowed("an identity agent writes only its own memory".into()));
            }
            MemoryWriter::Agent(_) if kind.layer() == MemoryLayer::Value => {
                return Err(NodeError::NotAllowed(
                    "only the owner writes value memory (never-share items, bottom lines, stance)".into(),
                ));
            }
            _ => {}
        }
        let _serialized = self.memory_writes.lock().await;
        let now = Timestamp::now();
        let record = MemoryRecord {
            id: self.db().read()?.next_memory_id(&identity.id)?,
            kind,
            text,
            author: writer.author(),
            created_at: now,
            updated_at: now,
        };
        let audit = write_audit(writer, "memory.add", &identity, &record);
        let (id, stored) = (identity.id, record.clone());
        crate::node::commit(self.db(), Change::new(move |txn| txn.put_memory(&id, &stored)).with_audit(audit)).await?;
        Ok(MemoryItem::of(&identity, &record))
    }

    /// Replaces the text (and, if given, the kind) of entry `number` of identity `tag`. Owner only.
    pub async fn memory_edit(
        &self,
        tag: &str,
        number: u64,
        text: &str,
        kind: Option<MemoryKind>,
    ) -> Result<MemoryItem, NodeError> {
        let identity = self.active_identity(tag)?;
        let text = checked_text(text)?;
        let _serialized = self.memory_writes.lock().await;
        let mut record = self.existing_memory(&identity, number)?;
        record.text = text;
        if let Some(kind) = kind {
            record.kind = kind;
        }
        record.author = MemoryAuthor::Owner;
        record.updated_at = Timestamp::now();
        let audit = write_audit(MemoryWriter::Owner, "memory.edit", &identity, &record);
        let (id, stored) = (identity.id, record.clone());
        crate::node::commit(self.db(), Change::new(move |txn| txn.put_memory(&id, &stored)).with_audit(audit)).await?;
        Ok(MemoryItem::of(&identity, &record))
    }

    /// Deletes entry `number` of identity `tag`. Owner only.
    pub async fn memory_delete(&self, tag: &str, number: u64) -> Result<MemoryItem, NodeError> {
        let identity = self.active_identity(tag)?;
        let _serialized = self.memory_writes.lock().await;
        let record = self.existing_memory(&identity, number)?;
        let audit = write_audit(MemoryWriter::Owner, "memory.delete", &identity, &record);
        let id = identity.id;
        crate::node::commit(
            self.db(),
            Change::new(move |txn| txn.delete_memory(&id, number).map(drop)).with_audit(audit),
        )
        .await?;
        Ok(MemoryItem::of(&identity, &record))
    }

    fn active_identity(&self, tag: &str) -> Result<IdentityRecord, NodeError> {
        let tag = tag.parse()?;
        self.db().active_identity_by_tag(&tag)?.ok_or_else(|| NodeError::NoSuchIdentity(tag.to_string()))
    }

    fn existing_memory(&self, identity: &IdentityRecord, number: u64) -> Result<MemoryRecord, NodeError> {
        self.db()
            .read()?
            .memory(&identity.id, number)?
            .ok_or_else(|| NodeError::NoSuchMemory { identity: identity.tag.to_string(), number })
    }
}

/// The kind named `name` (`fact`, `pattern`, `never-share`, `stance`, `bottom-line`); a bottom
/// line's bound is read from `text` (see [`parse_bound`]).
pub fn parse_kind(name: &str, text: &str) -> Result<MemoryKind, NodeError> {
    match name.trim().to_ascii_lowercase().as_str() {
        "fact" | "factual" => Ok(MemoryKind::Fact),
        "pattern" => Ok(MemoryKind::Pattern),
        "never-share" | "nevershare" | "secret" => Ok(MemoryKind::NeverShare),
        "stance" => Ok(MemoryKind::Stance),
        "bottom-line" | "bottomline" => parse_bound(text).map(MemoryKind::BottomLine),
        other => Err(NodeError::InvalidMemory(format!(
            "unknown kind {other:?}: use fact, pattern (layers factual, pattern) or never-share, stance, bottom-line \
             (layer value)"
        ))),
    }
}

/// Reads a bottom line: `SUBJECT at most|at least LIMIT [UNIT][, open at TARGET]`, for example
/// "unit price at most 42 EUR, open at 38". Without a target it opens 10% on the good side.
pub fn parse_bound(text: &str) -> Result<Bound, NodeError> {
    let invalid = |why: &str| {
        NodeError::InvalidMemory(format!(
            "{why}: write a bottom line as \"SUBJECT at most|at least LIMIT [UNIT][, open at TARGET]\", for example \
             \"unit price at most 42 EUR, open at 38\""
        ))
    };
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` slice `text`.
    let lower = text.to_ascii_lowercase();
    let (at, operator, direction) = [
        (" at most ", Direction::AtMost),
        (" at least ", Direction::AtLeast),
        ("<=", Direction::AtMost),
        (">=", Direction::AtLeast),
    ]
    .iter()
    .filter_map(|(operator, direction)| lower.find(operator).map(|at| (at, *operator, *direction)))
    .min_by_key(|(at, _, _)| *at)
    .ok_or_else(|| invalid("no \"at most\" or \"at least\""))?;
    let subject = text[..at].trim().trim_end_matches(':').trim();
    if subject.is_empty() {
        return Err(invalid("the subject is missing"));
    }
    let rest = &text[at + operator.len()..];
    let rest_lower = &lower[at + operator.len()..];
    let (limit_part, target_part) = match rest_lower.find("open at") {
        Some(open) => (&rest[..open], Some(&rest[open + "open at".len()..])),
        None => (rest, None),
    };
    let mut words = limit_part.trim().trim_end_matches([',', ';']).split_whitespace();
    let limit = words.next().and_then(parse_amount).ok_or_else(|| invalid("the limit is not a number"))?;
    let unit = words.collect::<Vec<_>>().join(" ");
    let target = match target_part {
        Some(part) => part
            .split_whitespace()
            .next()
            .and_then(parse_amount)
            .ok_or_else(|| invalid("the opening value is not a number"))?,
        None => {
            let margin = (limit.0.abs() / 10).max(1);
            match direction {
                Direction::AtMost => Amount(limit.0 - margin),
                Direction::AtLeast => Amount(limit.0 + margin),
            }
        }
    };
    let bound = Bound { subject: subject.to_owned(), direction, limit, target, unit };
    if !bound.accepts(target) {
        return Err(invalid("the opening value is beyond the limit"));
    }
    Ok(bound)
}

/// The audit entry of a memory write. It names the entry, never its text: an audit export
/// must not carry never-share items.
fn write_audit(writer: MemoryWriter, action: &str, identity: &IdentityRecord, record: &MemoryRecord) -> AuditDraft {
    AuditDraft::new(
        writer.actor(),
        action,
        format!("memory {}#{} ({})", identity.tag, record.id, describe_kind(&record.kind)),
        writer.basis(),
        Outcome::Success,
    )
}

/// "factual", "pattern" or "value/never-share".
fn describe_kind(kind: &MemoryKind) -> String {
    match kind.layer() {
        MemoryLayer::Value => format!("value/{}", kind.name()),
        layer => layer.to_string(),
    }
}

fn checked_text(text: &str) -> Result<String, NodeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(NodeError::InvalidMemory("the entry is empty".into()));
    }
    if text.len() > MAX_MEMORY_TEXT {
        return Err(NodeError::InvalidMemory(format!(
            "the entry is {} bytes; the limit is {MAX_MEMORY_TEXT}: split it into several entries",
            text.len()
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(NodeError::InvalidMemory("the entry contains control characters".into()));
    }
    Ok(text.to_owned())
}

/// Ranks memory entries for a query. Lexical today; an embedding ranker implements the same
/// trait.
pub trait Retriever: Send + Sync {
    /// The entries relevant to `query`, best first, at most `limit`, with their scores.
    fn rank<'a>(&self, query: &str, items: &'a [MemoryItem], limit: usize) -> Vec<(f32, &'a MemoryItem)>;
}

/// BM25 over normalized word stems: good at "what do we know about the Falcon deadline",
/// blind to synonyms.
#[derive(Debug, Clone, Copy, Default)]
pub struct LexicalRetriever;

impl Retriever for LexicalRetriever {
    fn rank<'a>(&self, query: &str, items: &'a [MemoryItem], limit: usize) -> Vec<(f32, &'a MemoryItem)> {
        const K1: f32 = 1.2;
        const B: f32 = 0.75;
        let query: Vec<String> = {
            let mut terms = terms(query);
            terms.sort();
            terms.dedup();
            terms
        };
        if query.is_empty() || items.is_empty() {
            return Vec::new();
        }
        let docs: Vec<Vec<String>> = items.iter().map(|item| terms(&item.text)).collect();
        let average = docs.iter().map(Vec::len).sum::<usize>() as f32 / docs.len() as f32;
        let mut frequency: HashMap<&str, usize> = HashMap::new();
        for doc in &docs {
            let mut seen: Vec<&str> = doc.iter().map(String::as_str).collect();
            seen.sort_unstable();
            seen.dedup();
            for term in seen {
                *frequency.entry(term).or_default() += 1;
            }
        }
        let n = docs.len() as f32;
        let mut ranked: Vec<(f32, &MemoryItem)> = docs
            .iter()
            .zip(items)
            .filter_map(|(doc, item)| {
                let len = doc.len() as f32;
                let score: f32 = query
                    .iter()
                    .map(|term| {
                        let tf = doc.iter().filter(|t| *t == term).count() as f32;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let df = frequency.get(term.as_str()).copied().unwrap_or(0) as f32;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / average.max(1.0)))
                    })
                    .sum();
                (score > 0.0).then_some((score, item))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| (&a.1.identity, a.1.id).cmp(&(&b.1.identity, b.1.id))));
        ranked.truncate(limit);
        ranked
    }
}

/// Words that say nothing about what an entry is about.
const STOP_WORDS: &[&str] = &[
    "a", "about", "all", "an", "and", "any", "are", "as", "at", "be", "by", "can", "could", "did", "do", "does", "for",
    "from", "had", "has", "have", "how", "i", "if", "in", "is", "it", "its", "know", "me", "my", "of", "on", "or",
    "our", "should", "so", "tell", "that", "the", "their", "them", "there", "this", "to", "us", "was", "we", "what",
    "when", "where", "which", "who", "why", "will", "with", "would", "you", "your",
];

/// Lowercase word stems of `text`, stop words removed.
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .filter(|word| !STOP_WORDS.contains(&word.as_str()))
        .map(|word| stem(&word))
        .collect()
}

/// A light English stemmer: enough that "deadlines" finds "deadline" and "shipping" finds
/// "ship", without pretending to be Porter's.
fn stem(word: &str) -> String {
    // "shipp" -> "ship", but "call" stays.
    fn undouble(stem: &str) -> String {
        let chars: Vec<char> = stem.chars().collect();
        match chars.as_slice() {
            [.., a, b] if chars.len() >= 4 && a == b && !"lsz".contains(*a) => {
                chars[..chars.len() - 1].iter().collect()
            }
            _ => stem.to_owned(),
        }
    }
    if word.chars().count() <= 3 {
        return word.to_owned();
    }
    if let Some(stem) = word.strip_suffix("ies") {
        return format!("{stem}y");
    }
    for suffix in ["ing", "ed"] {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.chars().count() >= 3
        {
            return undouble(stem);
        }
    }
    if let Some(stem) = word.strip_suffix("es")
        && ["s", "x", "z", "ch", "sh"].iter().any(|end| stem.ends_with(end))
    {
        return stem.to_owned();
    }
    match word.strip_suffix('s') {
        Some(stem) if !stem.ends_with('s') && !stem.ends_with('u') => stem.to_owned(),
        _ => word.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(identity: &str, id: u64, text: &str) -> MemoryItem {
        MemoryItem {
            identity: identity.into(),
            id,
            layer: "factual".into(),
            kind: "fact".into(),
            text: text.into(),
            author: "owner".into(),
            updated_at_ms: 0,
            record: None,
        }
    }

    #[test]
    fn bottom_lines_parse_or_explain() {
        let bound = parse_bound("Unit price: at most 42 EUR, open at 38").unwrap();
        assert_eq!(bound.to_string(), "Unit price: at most 42.00 EUR, open at 38.00 EUR");
        let bound = parse_bound("daily rate >= 600 EUR/day").unwrap();
        assert_eq!(
            (bound.direction, bound.target, bound.unit.as_str()),
            (Direction::AtLeast, Amount(66000), "EUR/day")
        );
        for bad in ["price 42", "at most 42", "price at most lots", "price at most 42, open at 50"] {
            let err = parse_bound(bad).unwrap_err().to_string();
            assert!(err.contains("for example"), "{bad}: {err}");
        }
        assert!(matches!(parse_kind("never-share", "x"), Ok(MemoryKind::NeverShare)));
        assert!(parse_kind("gossip", "x").is_err());
    }

    #[test]
    fn stems_fold_plurals_and_gerunds() {
        assert_eq!(terms("Deadlines, SHIPPING and companies!"), ["deadline", "ship", "company"]);
        assert_eq!(terms("boxes shipped; calling class status"), ["box", "ship", "call", "class", "status"]);
    }

    #[test]
    fn ranking_prefers_rare_matching_terms_and_drops_unrelated_entries() {
        let items = [
            item("work", 1, "Project Falcon deadline is 14 March"),
            item("work", 2, "The office is closed on Fridays"),
            item("work", 3, "Falcon budget is 20000 EUR and the Falcon team has four people"),
            item("work", 4, "Lunch with the team on Tuesdays"),
        ];
        let ranked = LexicalRetriever.rank("When is the Falcon deadline?", &items, 10);
        let ids: Vec<u64> = ranked.iter().map(|(_, item)| item.id).collect();
        assert_eq!(ids, [1, 3], "{ranked:?}");
        assert!(LexicalRetriever.rank("weather in Lisbon", &items, 10).is_empty());
        assert!(LexicalRetriever.rank("the of and", &items, 10).is_empty());
        assert_eq!(LexicalRetriever.rank("team", &items, 1).len(), 1);
    }
}
