//! Recovery at open: a decision the journal never received (the process died before the
//! settling thread committed it) is journaled first; then the journal entry a crash left
//! decided but maybe unapplied is rolled forward (or recorded as abandoned: always for a write
//! that was not installed, whose staged content may not be on disk), and what a change
//! interrupted before its decision staged is cleared.

use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_storage::Change;
use clawnet_storage::files::{FileAccess, FileOpRecord, FileOpState, Fingerprint, PathChange};

use super::super::FileError;
use super::super::decision::Decision;
use super::super::entry::{self, Walk};
use super::super::path::FsPath;
use super::super::sandbox::{Place, io, lstat};
use super::{FileEndpoint, Step, apply, as_move, dup, journal_entry, parse_stored, sync_dirs};

impl FileEndpoint {
    /// Journals the decision a crash kept from the journal, rolls forward the journal entries a
    /// crash left unapplied, and clears what a change the crash interrupted before its decision
    /// left behind.
    pub(super) fn recover(&self) -> Result<(), FileError> {
        self.journal_last_decision()?;
        let view = self.db.read()?;
        let settled = view.file_ops_settled()?;
        let next = view.next_file_op()?;
        let last = next.saturating_sub(1);
        let uncommitted = self.intent.last().filter(|(op, _)| *op >= next);
        if last <= settled && uncommitted.is_none() {
            return Ok(());
        }
        // Backups still linked to the files they saved (the change not made, or not yet) become
        // copies first: the files are singly linked again, as the checks below expect.
        self.blobs.unshare()?;
        if let Some((op, paths)) = uncommitted {
            for path in paths {
                if let Ok(place) = self.whitelist.resolve(&path, FileAccess::ReadOnly) {
                    let _ = entry::remove_tree(&place.parent, &format!(".clawnet-{op}-0.new"));
                }
            }
        }
        if last <= settled {
            return Ok(());
        }
        for number in settled + 1..=last {
            let Some(record) = view.file_op(number)? else { continue };
            if record.state != FileOpState::Done {
                continue;
            }
            let outcome = self.roll_forward(&record);
            let mut settled_record = record.clone();
            let audit = match outcome {
                Ok(()) => AuditDraft::new(
                    Actor::Node,
                    "files.recover",
                    format!("operation {number}: {}", record.kind.describe()),
                    "journal entry committed before a restart",
                    Outcome::Success,
                ),
                Err(err) => {
                    settled_record.state = FileOpState::Abandoned;
                    AuditDraft::new(
                        Actor::Node,
                        "files.recover",
                        format!("operation {number}: {}", record.kind.describe()),
                        "journal entry committed before a restart",
                        Outcome::Failed(err.to_string()),
                    )
                }
            };
            self.db.commit(Change::new(move |txn| txn.put_file_op(&settled_record)).with_audit(audit))?;
        }
        self.db.commit(Change::new(move |txn| txn.set_file_ops_settled(last)))?;
        Ok(())
    }

    /// Commits the last decision to the journal if the process died before its settling did
    /// (with the mark on the entry it undoes, and its audit entry): from here on the journal
    /// holds every decided change, and the rest of recovery reads only the journal.
    fn journal_last_decision(&self) -> Result<(), FileError> {
        let Some(Decision { record, undoes }) = self.decisions.last() else { return Ok(()) };
        let view = self.db.read()?;
        if record.number != view.next_file_op()? {
            // In the journal already (or, older than it, superseded).
            return Ok(());
        }
        let undone = match undoes {
            Some(number) => view.file_op(number)?,
            None => None,
        };
        drop(view);
        self.db.commit(journal_entry(record, undone))?;
        Ok(())
    }

    /// Brings the file system to what `record` says it did, from wherever the crash left it.
    fn roll_forward(&self, record: &FileOpRecord) -> Result<(), FileError> {
        let number = record.number;
        let mut places = Vec::new();
        for change in &record.changes {
            let path = parse_stored(&change.path)?;
            places.push((self.changeable(&path)?, change, path));
        }
        let current: Vec<Fingerprint> = places
            .iter()
            .map(|(place, _, path)| {
                Walk::fingerprints(&self.whitelist, place.dev).fingerprint(&place.parent, &place.name, path)
            })
            .collect::<Result<_, _>>()?;
        let applied = places.iter().zip(&current).all(|((_, change, _), now)| change.after.as_ref() == Some(now));
        let untouched = places.iter().zip(&current).all(|((_, change, _), now)| change.before == *now);
        let leftovers = |places: &[(Place, &PathChange, FsPath)]| {
            for (place, _, _) in places {
                let _ = entry::remove_tree(&place.parent, &format!(".clawnet-{number}-0.new"));
                let _ = entry::remove_tree(&place.parent, &format!(".clawnet-{number}-0.del"));
            }
        };
        if applied {
            // Applied, but perhaps only in memory if the crash was the process's alone, its
            // directories still unsynced (they sync after the reply).
            for (place, _, _) in &places {
                rustix::fs::fsync(&place.parent).map_err(io("syncing a directory"))?;
            }
            leftovers(&places);
            return Ok(());
        }
        if !untouched {
            leftovers(&places);
            return Err(FileError::Invalid("the files changed in a way the journal does not explain".into()));
        }
        if record.kind.is_write() {
            // A write's staged content syncs while its journal entry commits, so the content of
            // a write that was not installed may never have reached the disk. Nobody was told
            // the write was done (that comes after the install), so it is abandoned instead.
            leftovers(&places);
            return Err(FileError::Invalid(
                "the write was interrupted before it took effect; the file keeps its previous state".into(),
            ));
        }
        let steps = match (as_move(record), places.as_slice()) {
            (Some(_), [(source, _, _), (target, _, _)]) => vec![Step::Move {
                from_dir: dup(&source.parent)?,
                from: source.name.clone(),
                to_dir: dup(&target.parent)?,
                to: target.name.clone(),
            }],
            (None, [(place, change, _)]) => {
                let staged = format!(".clawnet-{number}-0.new");
                match change.after {
                    Some(Fingerprint::Absent) => vec![Step::Remove {
                        dir: dup(&place.parent)?,
                        name: place.name.clone(),
                        aside: format!(".clawnet-{number}-0.del"),
                    }],
                    _ if lstat(&place.parent, &staged)?.is_some() => vec![Step::Install {
                        dir: dup(&place.parent)?,
                        temp: staged,
                        name: place.name.clone(),
                        replace: change.before != Fingerprint::Absent,
                    }],
                    _ => return Err(FileError::Invalid("the staged content is gone".into())),
                }
            }
            _ => return Err(FileError::Invalid("an operation of unknown shape".into())),
        };
        sync_dirs(&apply(steps)?)?;
        leftovers(&places);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use clawnet_crypto::Timestamp;
    use clawnet_storage::files::FileOpKind;
    use rustix::fs::{Mode, OFlags};

    use super::super::super::decision::Decisions;
    use super::super::super::request::{FileDirective, FileRequest, WriteMode};
    use super::super::super::sandbox::FolderConfig;
    use super::super::{EndpointConfig, RollbackFilter};
    use super::*;
    use crate::home::{KeyProtection, NodeHome, UnlockedHome};

    fn write(path: &std::path::Path, content: &[u8], mode: WriteMode) -> FileDirective {
        let path = FsPath::parse(path.to_str().unwrap()).unwrap();
        FileDirective {
            actor: Actor::Owner,
            session: None,
            basis: "test".into(),
            request: FileRequest::Write { path, content: content.to_vec(), mode },
        }
    }

    #[test]
    fn a_write_journaled_but_not_installed_is_abandoned_and_the_old_content_stays() {
        let (_temp, home, config, file) = created_and_closed();
        let before = home.db().read().unwrap().file_op(1).unwrap().unwrap().changes[0].after.clone().unwrap();
        let folder = file.parent().unwrap();

        // What a crash leaves when the overwrite was decided while its staged content was still
        // syncing, before the install (once its decision is journaled): the entry, and the staged
        // file.
        let dir = rustix::fs::open(folder, OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let (_, after) = entry::stage_bytes(&dir, ".clawnet-2-0.new", None, b"new", 0o644).unwrap();
        journal_op_2(
            &home,
            FileOpKind::Overwrite { path: file.to_str().unwrap().into() },
            vec![PathChange { path: file.to_str().unwrap().into(), before, saved: None, after: Some(after) }],
        );

        let endpoint = FileEndpoint::open(&config, home.db().clone()).unwrap();
        let view = endpoint.db.read().unwrap();
        assert_eq!(view.file_op(2).unwrap().unwrap().state, FileOpState::Abandoned);
        assert_eq!(view.file_ops_settled().unwrap(), 2);
        assert_eq!(fs::read(&file).unwrap(), b"plan");
        assert!(!folder.join(".clawnet-2-0.new").exists(), "the staged file was left behind");
        let recovered = home.db().audit_entries().unwrap().into_iter().find(|e| e.action == "files.recover").unwrap();
        assert!(
            matches!(&recovered.outcome, Outcome::Failed(reason) if reason.contains("interrupted")),
            "{recovered:?}"
        );
        // And the file can be written again.
        endpoint.execute(&write(&file, b"newer", WriteMode::Overwrite)).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"newer");
    }

    /// A folder with a node, its endpoint's configuration, and `plan.md` created as operation 1
    /// by an endpoint that was then closed.
    fn created_and_closed() -> (tempfile::TempDir, UnlockedHome, EndpointConfig, std::path::PathBuf) {
        let temp = tempfile::tempdir().unwrap();
        let base = temp.path().canonicalize().unwrap();
        let (data, folder) = (base.join("node"), base.join("work"));
        fs::create_dir_all(&folder).unwrap();
        let home = NodeHome::init(&data, "Ada", KeyProtection::None).unwrap();
        let config = crate::files::endpoint_config(
            &data,
            &[FolderConfig { path: folder.clone(), access: FileAccess::ReadWrite }],
        );
        let file = folder.join("plan.md");
        FileEndpoint::open(&config, home.db().clone())
            .unwrap()
            .execute(&write(&file, b"plan", WriteMode::Create))
            .unwrap();
        (temp, home, config, file)
    }

    /// Commits operation 2 as decided (done) without applying it: what the journal holds once
    /// recovery journaled a decision whose renames never happened (or never reached the disk).
    fn journal_op_2(home: &UnlockedHome, kind: FileOpKind, changes: Vec<PathChange>) {
        let record = op_2(kind, changes);
        home.db().commit(Change::new(move |txn| txn.put_file_op(&record))).unwrap();
    }

    /// Operation 2, done, by the owner.
    fn op_2(kind: FileOpKind, changes: Vec<PathChange>) -> FileOpRecord {
        FileOpRecord {
            number: 2,
            time: Timestamp::now(),
            actor: Actor::Owner,
            session: None,
            basis: "test".into(),
            kind,
            changes,
            state: FileOpState::Done,
        }
    }

    #[test]
    fn a_move_decided_but_never_journaled_is_journaled_and_rolled_forward() {
        let (_temp, home, config, file) = created_and_closed();
        let created = home.db().read().unwrap().file_op(1).unwrap().unwrap().changes[0].after.clone().unwrap();
        let to = file.with_file_name("plan-v1.md");
        let (from_text, to_text) = (file.to_str().unwrap().to_owned(), to.to_str().unwrap().to_owned());
        // What a kill leaves after a move's decision was synced and before its rename and its
        // journal commit (which follows the reply): the decision alone.
        let record = op_2(
            FileOpKind::Move { from: from_text.clone(), to: to_text.clone() },
            vec![
                PathChange { path: from_text, before: created.clone(), saved: None, after: Some(Fingerprint::Absent) },
                PathChange { path: to_text, before: Fingerprint::Absent, saved: None, after: Some(created) },
            ],
        );
        Decisions::open(&config.state_dir).unwrap().record(&Decision { record: record.clone(), undoes: None }).unwrap();
        assert_eq!(home.db().read().unwrap().next_file_op().unwrap(), 2, "the journal does not have it");

        let endpoint = FileEndpoint::open(&config, home.db().clone()).unwrap();
        assert!(!file.exists(), "the move was not rolled forward");
        assert_eq!(fs::read(&to).unwrap(), b"plan");
        assert_eq!(endpoint.history(&RollbackFilter::default()).unwrap().last(), Some(&record));
        let audit = home.db().audit_entries().unwrap();
        assert!(audit.iter().any(|entry| entry.action == "files.move"), "the move's own audit entry is missing");
        let [recovered] = recoveries(&home).try_into().unwrap();
        assert_eq!(recovered.outcome, Outcome::Success, "{recovered:?}");
        home.db().verify_audit().unwrap();
        drop(endpoint);

        // A decision the journal already has is not copied again.
        let _reopened = FileEndpoint::open(&config, home.db().clone()).unwrap();
        assert_eq!(home.db().read().unwrap().next_file_op().unwrap(), 3);
        assert_eq!(home.db().audit_entries().unwrap().iter().filter(|entry| entry.action == "files.move").count(), 1);
    }

    fn recoveries(home: &UnlockedHome) -> Vec<clawnet_protocol::audit::AuditEntry> {
        home.db().audit_entries().unwrap().into_iter().filter(|entry| entry.action == "files.recover").collect()
    }

    #[test]
    fn a_clean_stop_leaves_nothing_to_recover_even_if_the_owner_then_edits_the_files() {
        let (_temp, home, config, file) = created_and_closed();
        assert_eq!(home.db().read().unwrap().file_ops_settled().unwrap(), 1, "closing marks the last change settled");
        // The owner edits the file while the node is stopped; the journal entry of the change
        // that created it must stay what it was (it once turned into "abandoned" at the next
        // start, as its last entry was always checked again).
        fs::write(&file, b"the owner's own edit").unwrap();
        let endpoint = FileEndpoint::open(&config, home.db().clone()).unwrap();
        assert_eq!(endpoint.db.read().unwrap().file_op(1).unwrap().unwrap().state, FileOpState::Done);
        assert_eq!(recoveries(&home), Vec::new());
        assert_eq!(fs::read(&file).unwrap(), b"the owner's own edit");
    }

    #[test]
    fn a_move_journaled_but_not_renamed_is_rolled_forward() {
        let (_temp, home, config, file) = created_and_closed();
        let created = home.db().read().unwrap().file_op(1).unwrap().unwrap().changes[0].after.clone().unwrap();
        let to = file.with_file_name("plan-v1.md");
        let (from_text, to_text) = (file.to_str().unwrap().to_owned(), to.to_str().unwrap().to_owned());
        // What a crash leaves when a move was decided and its rename never reached the disk (the
        // directory syncs after the reply), once its decision is journaled: the entry, the file
        // where it was.
        journal_op_2(
            &home,
            FileOpKind::Move { from: from_text.clone(), to: to_text.clone() },
            vec![
                PathChange { path: from_text, before: created.clone(), saved: None, after: Some(Fingerprint::Absent) },
                PathChange { path: to_text, before: Fingerprint::Absent, saved: None, after: Some(created) },
            ],
        );

        let endpoint = FileEndpoint::open(&config, home.db().clone()).unwrap();
        assert!(!file.exists(), "the move was not rolled forward");
        assert_eq!(fs::read(&to).unwrap(), b"plan");
        let view = endpoint.db.read().unwrap();
        assert_eq!(view.file_op(2).unwrap().unwrap().state, FileOpState::Done);
        assert_eq!(view.file_ops_settled().unwrap(), 2);
        let [recovered] = recoveries(&home).try_into().unwrap();
        assert_eq!(recovered.outcome, Outcome::Success, "{recovered:?}");
        assert!(recovered.object.starts_with("operation 2: "), "{recovered:?}");
    }
}
