//! Undo and rollback: an operation reversed as a new journaled change, after checking every
//! path it touched still looks as it left it, and resolving them through layer 2 again.

use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_storage::files::{FileAccess, FileOpKind, FileOpRecord, FileOpState, Fingerprint, PathChange, SavedEntry};

use super::super::entry::{self, Walk};
use super::super::path::FsPath;
use super::super::{FileError, Layer};
use super::{FileEndpoint, Plan, RollbackFilter, RollbackPlan, Step, as_move, dup, parse_stored};

impl FileEndpoint {
    /// Undoes operation `number`, as a new journaled operation; returns its number. Refuses if
    /// anything it changed has changed since, and (re-checking layer 2) anything outside the
    /// whitelist, whatever the journal says.
    pub fn undo(&self, number: u64, actor: Actor) -> Result<u64, FileError> {
        let _serial = self.changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The owner reads the journal next: the undo is in it when this returns.
        let result = self.undo_locked(number, actor).and_then(|undo| self.settler.wait().map(|()| undo));
        if let Err(err @ FileError::Denied { .. }) = &result {
            self.audit(AuditDraft::new(
                actor,
                "security.files",
                format!("undo of operation {number}"),
                Layer::Whitelist.label(),
                Outcome::Denied(err.to_string()),
            ))?;
        }
        result
    }

    /// What rolling back `filter` would undo, and what stands in the way.
    pub fn plan_rollback(&self, filter: &RollbackFilter) -> Result<RollbackPlan, FileError> {
        // The last change is in the journal once settled (a failure to settle stops changes,
        // not plans).
        let _ = self.settler.wait();
        let records: Vec<FileOpRecord> = self.db.read()?.file_ops()?;
        let mut operations = Vec::new();
        let mut conflicts = Vec::new();
        let mut touched_later: Vec<String> = Vec::new();
        for record in records.iter().rev().filter(|record| record.state == FileOpState::Done && filter.covers(record)) {
            operations.push(record.number);
            for change in &record.changes {
                if touched_later.iter().any(|later| within(&change.path, later) || within(later, &change.path)) {
                    continue;
                }
                let current = self.fingerprint_at(&change.path)?;
                if Some(&current) != change.after.as_ref() {
                    conflicts.push((record.number, change.path.clone()));
                }
            }
            touched_later.extend(record.changes.iter().map(|change| change.path.clone()));
        }
        Ok(RollbackPlan { operations, conflicts })
    }

    /// Undoes every operation `filter` covers, newest first; stops at the first that cannot be
    /// undone. Returns the undo operations' numbers.
    pub fn rollback(&self, filter: &RollbackFilter, actor: Actor) -> Result<Vec<u64>, FileError> {
        let plan = self.plan_rollback(filter)?;
        let mut done = Vec::new();
        for number in plan.operations {
            match self.undo(number, actor) {
                Ok(undo) => done.push(undo),
                Err(err) => {
                    return Err(FileError::NotUndoable(format!(
                        "rollback stopped at operation {number} after undoing {} operation(s): {err}",
                        done.len()
                    )));
                }
            }
        }
        Ok(done)
    }

    fn undo_locked(&self, number: u64, actor: Actor) -> Result<u64, FileError> {
        self.settler.wait()?;
        let view = self.db.read()?;
        let record = view.file_op(number)?.ok_or_else(|| FileError::NotUndoable(format!("no operation {number}")))?;
        match record.state {
            FileOpState::Done => {}
            FileOpState::Undone { by } => {
                return Err(FileError::NotUndoable(format!("operation {number} was already undone by {by}")));
            }
            state => {
                return Err(FileError::NotUndoable(format!("operation {number} is {}, not done", state.name())));
            }
        }
        let undo_number = view.next_file_op()?;
        drop(view);
        // Every path must look exactly as the operation left it.
        for change in &record.changes {
            let current = self.fingerprint_at(&change.path)?;
            if Some(&current) != change.after.as_ref() {
                return Err(FileError::Conflict { op: number, path: change.path.clone() });
            }
        }
        let moved = as_move(&record);
        if moved.is_none() {
            // (Moving back prepares nothing on disk, so it needs no note; see `change`.)
            let changed = record.changes.iter().filter_map(|change| parse_stored(&change.path).ok());
            self.intent.record(undo_number, changed.collect())?;
        }
        let basis = format!("owner undo of operation {number}");
        let plan = match moved {
            Some((from, to)) => {
                let mut plan = self.prepare_move(&to, &from, basis)?;
                plan.kind = FileOpKind::Undo { of: number };
                plan
            }
            None => self.prepare_restore(undo_number, &record, basis)?,
        };
        self.run(undo_number, plan, actor, None, Some(record))?;
        Ok(undo_number)
    }

    /// Puts the (single) path of `record` back as it was before it.
    fn prepare_restore(&self, number: u64, record: &FileOpRecord, basis: String) -> Result<Plan, FileError> {
        let [change] = record.changes.as_slice() else {
            return Err(FileError::NotUndoable(format!("operation {} cannot be reversed", record.number)));
        };
        let path = parse_stored(&change.path)?;
        let place = self.changeable(&path)?;
        let mut walk = Walk::saving(&self.whitelist, place.dev, &self.blobs);
        let current = walk.read(&place.parent, &place.name, &path)?;
        let temp = format!(".clawnet-{number}-0.new");
        let dir = dup(&place.parent)?;
        let step = match (&change.before, &change.saved) {
            (Fingerprint::Absent, _) => {
                Step::Remove { dir, name: place.name.clone(), aside: format!(".clawnet-{number}-0.del") }
            }
            (_, Some(saved)) => {
                entry::stage_saved(&self.blobs, &place.parent, &temp, saved)?;
                Step::Install { dir, temp, name: place.name.clone(), replace: current != SavedEntry::Absent }
            }
            (_, None) => {
                return Err(FileError::NotUndoable(format!(
                    "operation {} kept no backup of {}",
                    record.number, change.path
                )));
            }
        };
        let before = current.fingerprint();
        let saved = (current != SavedEntry::Absent).then_some(current);
        Ok(Plan {
            kind: FileOpKind::Undo { of: record.number },
            changes: vec![PathChange { path: change.path.clone(), before, saved, after: Some(change.before.clone()) }],
            steps: vec![step],
            linked: std::mem::take(&mut walk.linked),
            places: vec![place],
            basis,
            unsynced: Vec::new(),
            spare: None,
        })
    }

    /// The current state at a stored path, resolved through the whitelist.
    fn fingerprint_at(&self, text: &str) -> Result<Fingerprint, FileError> {
        let path = parse_stored(text)?;
        let place = match self.whitelist.resolve(&path, FileAccess::ReadOnly) {
            Ok(place) => place,
            Err(FileError::NotFound(_)) => return Ok(Fingerprint::Absent),
            Err(err) => return Err(err),
        };
        Walk::fingerprints(&self.whitelist, place.dev).fingerprint(&place.parent, place.at_name(), &path)
    }
}

fn within(path: &str, root: &str) -> bool {
    match (FsPath::parse(path), FsPath::parse(root)) {
        (Ok(path), Ok(root)) => path.is_within(&root),
        _ => false,
    }
}
