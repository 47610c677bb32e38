//! The owner's view of the file endpoint, shared by the `clawnet files` command and the local
//! API: the journal as people read it, scopes, and the filters of history and rollback.

use std::time::Duration;

use clawnet_crypto::{IdentityId, Timestamp};
use clawnet_protocol::SessionId;
use clawnet_protocol::audit::Actor;
use clawnet_storage::files::{FileOpRecord, FileOpState, FileScope};
use clawnet_storage::identities::IdentityRecord;
use serde::{Deserialize, Serialize};

use super::endpoint::{RollbackFilter, RollbackPlan};
use super::governed::GovernedFiles;
use super::path::FsPath;
use super::{FileError, parse_access};
use crate::error::NodeError;
use crate::home::NodeHome;

/// One journaled file operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOpView {
    /// Its number (for `clawnet files undo`).
    pub op: u64,
    /// When (ms since the epoch).
    pub time_ms: u64,
    /// Who: an identity's tag, `owner` or `node`.
    pub actor: String,
    /// The session it was done in (hex), if any.
    pub session: Option<String>,
    /// The primitive: `create`, `overwrite`, `move`, `undo`...
    pub kind: String,
    /// The paths.
    pub paths: String,
    /// `done`, `undone`, `abandoned`.
    pub state: String,
    /// The operation that undid it.
    pub undone_by: Option<u64>,
    /// Why it was allowed.
    pub basis: String,
}

impl FileOpView {
    /// The view of `record`, naming identities by tag.
    pub fn of(record: &FileOpRecord, identities: &[IdentityRecord]) -> FileOpView {
        let actor = match record.actor {
            Actor::Identity(id) => identities
                .iter()
                .find(|identity| identity.id == id)
                .map(|identity| identity.tag.to_string())
                .unwrap_or_else(|| id.to_hex()[..8].to_string()),
            Actor::Owner => "owner".into(),
            Actor::Node => "node".into(),
            Actor::Manager => "manager".into(),
            Actor::Peer(owner) => owner.fingerprint().to_string(),
        };
        FileOpView {
            op: record.number,
            time_ms: record.time.as_millis(),
            actor,
            session: record.session.map(|session| session.to_hex()),
            kind: record.kind.name().into(),
            paths: record.kind.describe(),
            state: record.state.name().into(),
            undone_by: match record.state {
                FileOpState::Undone { by } => Some(by),
                _ => None,
            },
            basis: record.basis.clone(),
        }
    }
}

/// An identity's scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeView {
    /// The identity's tag.
    pub identity: String,
    /// Its folders.
    pub grants: Vec<FolderView>,
}

impl ScopeView {
    /// The view of `scope`.
    pub fn of(identity: &str, scope: &FileScope) -> ScopeView {
        ScopeView {
            identity: identity.into(),
            grants: scope
                .grants
                .iter()
                .map(|grant| FolderView { path: grant.root.clone(), access: grant.access.as_str().into() })
                .collect(),
        }
    }
}

/// A folder and its access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderView {
    /// The folder.
    pub path: String,
    /// `read-only` or `read-write`.
    pub access: String,
}

/// Which journal entries a history or rollback covers, as the owner names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalQuery {
    /// An identity's tag.
    #[serde(default)]
    pub identity: Option<String>,
    /// A session id or a unique prefix of one.
    #[serde(default)]
    pub session: Option<String>,
    /// A time: `30m`, `2h`, `7d` (ago), `2026-11-23`, `2026-11-23T10:00[:00][Z]` (UTC), or unix seconds.
    #[serde(default)]
    pub since: Option<String>,
    /// The journal of this device's endpoint instead of the node's own (it must be connected).
    #[serde(default)]
    pub device: Option<String>,
}

impl JournalQuery {
    /// Whether it names nothing (a rollback must name something).
    pub fn is_empty(&self) -> bool {
        self.identity.is_none() && self.session.is_none() && self.since.is_none()
    }

    /// The filter it means, resolving the identity's tag and the session prefix.
    pub fn filter(&self, identities: &[IdentityRecord], journal: &[FileOpRecord]) -> Result<RollbackFilter, NodeError> {
        let identity = match &self.identity {
            Some(tag) => Some(identity_by_tag(identities, tag)?),
            None => None,
        };
        let session = match &self.session {
            Some(prefix) => Some(session_by_prefix(journal, prefix)?),
            None => None,
        };
        let since = self.since.as_deref().map(|text| parse_since(text, Timestamp::now())).transpose()?;
        Ok(RollbackFilter { session, identity, since })
    }
}

/// Rolling back, or what it would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackView {
    /// Only planned.
    pub dry_run: bool,
    /// The operations to undo, newest first.
    pub operations: Vec<u64>,
    /// Operations whose paths changed since (operation, path).
    pub conflicts: Vec<(u64, String)>,
    /// The undo operations made (empty in a dry run).
    pub undone: Vec<u64>,
}

impl RollbackView {
    /// A dry run's view.
    pub fn planned(plan: RollbackPlan) -> RollbackView {
        RollbackView { dry_run: true, operations: plan.operations, conflicts: plan.conflicts, undone: Vec::new() }
    }
}

/// A request to grant or revoke a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    /// The identity's tag.
    pub identity: String,
    /// The folder.
    pub path: String,
    /// `read-only` or `read-write` (ignored by revoke).
    #[serde(default)]
    pub access: Option<String>,
}

/// A rollback request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// What to roll back.
    #[serde(flatten)]
    pub query: JournalQuery,
    /// Only show what would be undone.
    #[serde(default)]
    pub dry_run: bool,
}

/// A request to undo one operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoRequest {
    /// The device whose journal the operation is in (the node's own if none).
    #[serde(default)]
    pub device: Option<String>,
}

/// The whole journal of the node's endpoint, or of the connected `device`'s (`files` is the
/// running node's; without it only the node's own journal can be read).
fn journal(
    home: &NodeHome,
    files: Option<&GovernedFiles>,
    device: Option<&str>,
) -> Result<Vec<FileOpRecord>, NodeError> {
    match device {
        // The running endpoint's journal has its last change once it settled.
        None => match files {
            Some(files) => Ok(files.history(&RollbackFilter::default())?),
            None => Ok(home.db().read()?.file_ops()?),
        },
        Some(device) => {
            let files = files.ok_or_else(|| {
                NodeError::Files(FileError::Remote {
                    device: device.into(),
                    detail: "not connected: start the node (`clawnet run`) so the device can register".into(),
                })
            })?;
            Ok(files.device_history(device, &RollbackFilter::default())?)
        }
    }
}

/// The journal, filtered, as the owner reads it.
pub fn history(
    home: &NodeHome,
    files: Option<&GovernedFiles>,
    query: &JournalQuery,
) -> Result<Vec<FileOpView>, NodeError> {
    let identities = home.identities()?;
    let journal = journal(home, files, query.device.as_deref())?;
    let filter = query.filter(&identities, &journal)?;
    Ok(journal
        .iter()
        .filter(|record| filter.selects(record))
        .map(|record| FileOpView::of(record, &identities))
        .collect())
}

/// An identity's scope.
pub fn scope(home: &NodeHome, tag: &str) -> Result<ScopeView, NodeError> {
    let identity = identity_by_tag(&home.identities()?, tag)?;
    Ok(ScopeView::of(tag, &home.db().read()?.file_scope(&identity)?))
}

/// Grants a folder (which must exist; its canonical path is what is granted).
pub fn grant(home: &NodeHome, files: &GovernedFiles, request: &GrantRequest) -> Result<ScopeView, NodeError> {
    let identity = identity_by_tag(&home.identities()?, &request.identity)?;
    let access = parse_access(request.access.as_deref().unwrap_or("read-only")).map_err(invalid)?;
    // A folder on a connected device is granted as written: it is resolved there.
    let on_device = FsPath::parse(&request.path).ok().filter(|path| files.remote().holding(path).is_some());
    let root = match on_device {
        Some(root) => root,
        None => {
            let canonical = std::fs::canonicalize(&request.path).map_err(|err| {
                invalid(format!(
                    "cannot grant {}: {err} (a folder on another device can be granted while its endpoint is \
                         connected)",
                    request.path
                ))
            })?;
            canonical
                .to_str()
                .and_then(|text| FsPath::parse(text).ok())
                .ok_or_else(|| invalid(format!("cannot grant {}: not a usable path", canonical.display())))?
        }
    };
    let scope = files.grant(identity, &root, access)?;
    Ok(ScopeView::of(&request.identity, &scope))
}

/// Takes a folder back.
pub fn revoke(home: &NodeHome, files: &GovernedFiles, request: &GrantRequest) -> Result<ScopeView, NodeError> {
    let identity = identity_by_tag(&home.identities()?, &request.identity)?;
    let text = std::fs::canonicalize(&request.path)
        .ok()
        .and_then(|path| path.to_str().map(str::to_owned))
        .unwrap_or_else(|| request.path.clone());
    let root = FsPath::parse(&text).map_err(|err| invalid(err.to_string()))?;
    let scope = files.revoke(identity, &root)?;
    Ok(ScopeView::of(&request.identity, &scope))
}

/// Undoes one operation (of the node's journal, or of `request.device`'s); returns the
/// undo's view.
pub fn undo(home: &NodeHome, files: &GovernedFiles, op: u64, request: &UndoRequest) -> Result<FileOpView, NodeError> {
    let device = request.device.as_deref();
    let undo = match device {
        None => files.undo(op)?,
        Some(device) => files.device_undo(device, op)?,
    };
    let record = match device {
        None => home.db().read()?.file_op(undo)?,
        // A device's journal is read as a whole: the call has no single-entry form.
        Some(_) => journal(home, Some(files), device)?.into_iter().find(|record| record.number == undo),
    };
    let record = record.ok_or_else(|| invalid(format!("operation {undo} vanished from the journal")))?;
    Ok(FileOpView::of(&record, &home.identities()?))
}

/// Rolls back (or plans to).
pub fn rollback(home: &NodeHome, files: &GovernedFiles, request: &RollbackRequest) -> Result<RollbackView, NodeError> {
    if request.query.is_empty() {
        return Err(invalid("say what to roll back: --session, --identity or --since".into()));
    }
    let device = request.query.device.as_deref();
    let filter = request.query.filter(&home.identities()?, &journal(home, Some(files), device)?)?;
    let plan = match device {
        None => files.plan_rollback(&filter)?,
        Some(device) => files.device_plan_rollback(device, &filter)?,
    };
    if request.dry_run {
        return Ok(RollbackView::planned(plan));
    }
    let undone = match device {
        None => files.rollback(&filter)?,
        Some(device) => files.device_rollback(device, &filter)?,
    };
    Ok(RollbackView { dry_run: false, operations: plan.operations, conflicts: plan.conflicts, undone })
}

fn invalid(message: String) -> NodeError {
    NodeError::Files(FileError::Invalid(message))
}

/// The active identity tagged `tag`.
pub fn identity_by_tag(identities: &[IdentityRecord], tag: &str) -> Result<IdentityId, NodeError> {
    identities
        .iter()
        .find(|identity| identity.is_active() && identity.tag.to_string() == tag)
        .map(|identity| identity.id)
        .ok_or_else(|| NodeError::NoSuchIdentity(tag.to_string()))
}

/// The one session in the journal whose id starts with `prefix`.
pub fn session_by_prefix(journal: &[FileOpRecord], prefix: &str) -> Result<SessionId, NodeError> {
    let mut found: Vec<SessionId> = journal
        .iter()
        .filter_map(|record| record.session)
        .filter(|session| session.to_hex().starts_with(&prefix.to_lowercase()))
        .collect();
    found.sort_by_key(|session| session.to_hex());
    found.dedup();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(NodeError::Session(format!("no file operation was done in a session starting with {prefix:?}"))),
        _ => Err(NodeError::Session(format!("{prefix:?} names several sessions; give more of the id"))),
    }
}

/// Parses a `--since` time (see [`JournalQuery::since`]).
pub fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, NodeError> {
    let bad = || {
        invalid(format!(
            "{text:?} is not a time: use 30m, 2h or 7d (ago), 2026-11-23, 2026-11-23T10:00Z, or unix seconds"
        ))
    };
    let text = text.trim();
    if let Some(unit) = text.chars().last().filter(|c| matches!(c, 's' | 'm' | 'h' | 'd')) {
        let amount: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        let secs = match unit {
            's' => amount,
            'm' => amount * 60,
            'h' => amount * 3600,
            _ => amount * 86_400,
        };
        return Ok(Timestamp(now.as_millis().saturating_sub(Duration::from_secs(secs).as_millis() as u64)));
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Timestamp(secs * 1000));
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once('T').unwrap_or((text, "00:00"));
    let numbers = |part: &str, sep: char| -> Result<Vec<u64>, NodeError> {
        part.split(sep).map(|n| n.parse::<u64>().map_err(|_| bad())).collect()
    };
    let [year, month, day] = numbers(date, '-')?[..] else { return Err(bad()) };
    let clock = numbers(time, ':')?;
    let (hour, minute, second) = match clock[..] {
        [h, m] => (h, m, 0),
        [h, m, s] => (h, m, s),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year < 1970
    {
        return Err(bad());
    }
    let days = days_from_civil(year as i64, month as i64, day as i64);
    let secs = days as u64 * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(Timestamp(secs * 1000))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_understands_ages_dates_and_seconds() {
        let now = Timestamp(1_800_000_000_000);
        assert_eq!(parse_since("2h", now).unwrap(), Timestamp(1_800_000_000_000 - 7_200_000));
        assert_eq!(parse_since("30m", now).unwrap(), Timestamp(1_800_000_000_000 - 1_800_000));
        assert_eq!(parse_since("1700000000", now).unwrap(), Timestamp(1_700_000_000_000));
        assert_eq!(parse_since("1970-01-02", now).unwrap(), Timestamp(86_400_000));
        // 2026-11-23T10:00:00Z, checked with `date -u -d 2026-11-23T10:00:00Z +%s`.
        assert_eq!(parse_since("2026-11-23T10:00Z", now).unwrap(), Timestamp(1_795_428_000_000));
        assert_eq!(parse_since("2024-02-29T23:59:59", now).unwrap(), Timestamp(1_709_251_199_000));
        for bad in ["", "yesterday", "2026-13-01", "2026-11-23T25:00", "h"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }
}
