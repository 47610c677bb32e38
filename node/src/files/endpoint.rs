//! The file endpoint: executes directives inside the whitelist (layer 2), and journals, backs up
//! and audits every change so it can be undone.
//!
//! A change runs in four steps, one at a time (changes are serialized):
//! 1. **Prepare**: resolve every path through the whitelist, read the state of what will change
//!    (saving the content of anything the change destroys in the blob store, durably), and stage
//!    the new content under a temporary name beside its destination (a write's: in a spare file
//!    in the state directory, the `spare` module), written and synced (a small write's content
//!    syncs during step 2 instead, on another thread).
//! 2. **Decide**: the journal entry (what each path was, its backup, what it will be) is
//!    written and synced to the state directory (the `decision` module). This decides the
//!    operation.
//! 3. **Apply**: one atomic rename (or unlink) per path. A write syncs the directories before
//!    its reply; any other change replies now and its directories sync on the settling thread
//!    (the `settler` module), as recovery would roll it forward from its decision.
//! 4. After the reply the settling thread commits the entry to the journal with its audit
//!    entry. The next change waits for that, and its commit implies this entry settled (a clean
//!    stop marks it). If the process dies between 2 and 4, the next start copies the decision
//!    into the journal if it is not there yet and rolls the entry forward (or, if it cannot,
//!    records why; a write not yet installed is abandoned, as its staged content may not be on
//!    disk), so the file system ends in the old or the new state and the journal says which,
//!    with the backup present.
//!
//! Before step 1 the operation's number and paths are noted (synced) outside the folders
//! (the `intent` module). If the process dies before step 2, the next start finds a note the
//! journal never caught up with, removes what was staged beside those paths, and turns backups
//! still linked to live files into copies: the old state, with nothing left behind. A move
//! stages and links nothing, so it takes no note.

mod reading;
mod recovery;
mod settler;
mod undo;
mod writing;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clawnet_crypto::IdentityId;
use clawnet_crypto::Timestamp;
use clawnet_protocol::SessionId;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_storage::files::{FileAccess, FileOpKind, FileOpRecord, FileOpState, Fingerprint, PathChange, SavedEntry};
use clawnet_storage::{Change, NodeDb};
use rustix::fs::{AtFlags, FileType, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::FileError;
use super::blobs::BlobStore;
use super::decision::{Decision, Decisions};
use super::entry::{self, Walk};
use super::intent::Intent;
use super::path::{FsPath, is_plain_name};
use super::request::{FileDirective, FileReply, FileRequest, RESERVED_PREFIX};
use super::sandbox::{Denial, FolderConfig, Place, Whitelist, io, lstat};
use super::spare::Spares;
use settler::Settler;

/// Largest file a write may create, and most bytes one read returns.
pub const MAX_FILE_LEN: u64 = 64 * 1024 * 1024;
/// Most entries a list or search returns.
pub const MAX_LISTED: usize = 1000;
/// How deep a search descends.
pub const MAX_SEARCH_DEPTH: usize = 16;

/// How an endpoint is set up.
#[derive(Debug, Clone, Default)]
pub struct EndpointConfig {
    /// The whitelisted folders (layer 2).
    pub folders: Vec<FolderConfig>,
    /// Where the backup store lives (outside every folder).
    pub state_dir: PathBuf,
    /// Locations that stay out of reach whatever the folders say (the node's data directory).
    pub protected: Vec<PathBuf>,
}

/// Which journal entries a rollback (or a history) covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackFilter {
    /// Only this session's.
    pub session: Option<SessionId>,
    /// Only this identity's.
    pub identity: Option<IdentityId>,
    /// Only those at or after this time.
    pub since: Option<Timestamp>,
}

impl RollbackFilter {
    /// Whether `record` is in the history this filter shows.
    pub fn selects(&self, record: &FileOpRecord) -> bool {
        self.session.is_none_or(|session| record.session == Some(session))
            && self.identity.is_none_or(|identity| record.actor == Actor::Identity(identity))
            && self.since.is_none_or(|since| record.time >= since)
    }

    /// Whether a rollback undoes `record` (undo entries never: a rollback does not redo).
    pub fn covers(&self, record: &FileOpRecord) -> bool {
        !matches!(record.kind, FileOpKind::Undo { .. }) && self.selects(record)
    }
}

/// What a rollback would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackPlan {
    /// The operations to undo, newest first.
    pub operations: Vec<u64>,
    /// Paths that changed since, which stop the rollback (operation, path).
    pub conflicts: Vec<(u64, String)>,
}

/// The endpoint.
#[derive(Debug)]
pub struct FileEndpoint {
    whitelist: Whitelist,
    blobs: BlobStore,
    /// The change being prepared (cleared up after a crash before its commit).
    intent: Intent,
    /// Where writes stage their content.
    spares: Arc<Spares>,
    /// The decision of the last change, until the journal has it.
    decisions: Decisions,
    db: NodeDb,
    changes: Mutex<()>,
    /// Finishes each change after its reply.
    settler: Settler,
}

/// One atomic step of applying a change.
#[derive(Debug)]
enum Step {
    /// Rename the staged `temp` to `name` (replacing what is there, or only where nothing is).
    Install { dir: OwnedFd, temp: String, name: String, replace: bool },
    /// Rename the filled `spare` in the spare-file directory `spares` to `name` in `dir`.
    InstallSpare { spares: OwnedFd, spare: String, dir: OwnedFd, name: String, replace: bool },
    /// Rename an entry to where nothing is.
    Move { from_dir: OwnedFd, from: String, to_dir: OwnedFd, to: String },
    /// Rename an entry aside, then remove it.
    Remove { dir: OwnedFd, name: String, aside: String },
}

/// A prepared change.
#[derive(Debug)]
struct Plan {
    kind: FileOpKind,
    changes: Vec<PathChange>,
    steps: Vec<Step>,
    /// Blobs made by linking a live file, released if the change does not happen.
    linked: Vec<clawnet_crypto::Hash32>,
    /// The directory and name of each change (for removing what was staged).
    places: Vec<Place>,
    basis: String,
    /// Staged files not synced yet: they sync while the decision is written (both are durable
    /// before any step applies; see `recovery.rs` for why a write may take this shortcut).
    unsynced: Vec<File>,
    /// The spare file the content is staged in, if it is.
    spare: Option<String>,
}

impl FileEndpoint {
    /// Opens the endpoint and settles any change a crash interrupted.
    pub fn open(config: &EndpointConfig, db: NodeDb) -> Result<FileEndpoint, FileError> {
        let mut protected = config.protected.clone();
        protected.push(config.state_dir.clone());
        let whitelist = Whitelist::open(&config.folders, &protected)?;
        let blobs = BlobStore::open(&config.state_dir.join("blobs"))?;
        let intent = Intent::open(&config.state_dir)?;
        let decisions = Decisions::open(&config.state_dir)?;
        let spares = Arc::new(Spares::open(&config.state_dir.join("staging"))?);
        let settler = Settler::start(db.clone(), spares.clone())?;
        let endpoint =
            FileEndpoint { whitelist, blobs, intent, spares, decisions, db, changes: Mutex::new(()), settler };
        endpoint.recover()?;
        Ok(endpoint)
    }

    /// The whitelist.
    pub fn whitelist(&self) -> &Whitelist {
        &self.whitelist
    }

    /// The backup store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Executes `directive` (layer 1 already allowed it). A layer-2 refusal is recorded as a
    /// security event; every other outcome of a change is journaled and audited.
    pub fn execute(&self, directive: &FileDirective) -> Result<FileReply, FileError> {
        let result = if directive.request.is_mutation() { self.change(directive) } else { self.look(directive) };
        if let Err(err @ FileError::Denied { .. }) = &result {
            self.security_event(directive.actor, &directive.request, err)?;
        }
        result
    }

    /// Waits until the last change is settled: its journal entry committed and the directories
    /// it changed synced (a change replies before that, as recovery would finish it from its
    /// decision). An error means a change could not be made durable; restart the node so its
    /// recovery checks it.
    pub fn settle(&self) -> Result<(), FileError> {
        self.settler.wait()
    }

    /// The journal, oldest first, filtered.
    pub fn history(&self, filter: &RollbackFilter) -> Result<Vec<FileOpRecord>, FileError> {
        // The last change is in it once settled (a failure to settle stops changes, not reads).
        let _ = self.settler.wait();
        let records = self.db.read()?.file_ops()?;
        Ok(records.into_iter().filter(|record| filter.selects(record)).collect())
    }

    // ---- changing ----

    fn change(&self, directive: &FileDirective) -> Result<FileReply, FileError> {
        let _serial = self.changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(name) = directive.request.reserved_name() {
            return Err(FileError::Invalid(format!(
                "{name}: names starting with {RESERVED_PREFIX} are reserved for the endpoint's temporary files"
            )));
        }
        // The last change is in the journal (and its directories synced) before this one is
        // numbered.
        self.settler.wait()?;
        let number = self.db.read()?.next_file_op()?;
        if !matches!(directive.request, FileRequest::Move { .. } | FileRequest::Rename { .. }) {
            // A move prepares nothing on disk (no staged content, no linked backup), so a crash
            // before its decision leaves nothing to clear and it needs no note.
            let accesses = directive.request.accesses();
            let changed = accesses.into_iter().filter(|(_, access)| access.can_write()).map(|(path, _)| path.clone());
            self.intent.record(number, changed.collect())?;
        }
        let plan = self.prepare(number, &directive.request, &directive.basis)?;
        self.run(number, plan, directive.actor, directive.session, None)?;
        Ok(FileReply::Done { op: number })
    }

    fn prepare(&self, number: u64, request: &FileRequest, basis: &str) -> Result<Plan, FileError> {
        let basis = format!("{basis}; {}", self.basis_l2(request));
        let temp = |index: usize| format!(".clawnet-{number}-{index}.new");
        match request {
            FileRequest::Write { path, content, mode } => self.prepare_write(number, path, content, *mode, basis),
            FileRequest::Mkdir { path } => {
                let place = self.changeable(path)?;
                if lstat(&place.parent, &place.name)?.is_some() {
                    return Err(FileError::Exists(path.to_string()));
                }
                let staged = entry::make_dir(&place.parent, &temp(0), 0o755, "creating a directory")?;
                entry::finish_dir(&staged, 0o755, None)?;
                let after = Fingerprint::Dir { mode: 0o755, entries: Vec::new() };
                let dir = dup(&place.parent)?;
                Ok(Plan {
                    kind: FileOpKind::Mkdir { path: path.to_string() },
                    changes: vec![PathChange {
                        path: path.to_string(),
                        before: Fingerprint::Absent,
                        saved: None,
                        after: Some(after),
                    }],
                    steps: vec![Step::Install { dir, temp: temp(0), name: place.name.clone(), replace: false }],
                    linked: Vec::new(),
                    places: vec![place],
                    basis,
                    unsynced: Vec::new(),
                    spare: None,
                })
            }
            FileRequest::Move { from, to } => self.prepare_move(from, to, basis),
            FileRequest::Rename { path, name } => {
                if !is_plain_name(name) {
                    return Err(FileError::Invalid(format!("{name:?} is not a plain name (no '/', not '.' or '..')")));
                }
                let parent = parent_of(path)?;
                let to = parent.join(name).map_err(|err| FileError::Invalid(err.to_string()))?;
                self.prepare_move(path, &to, basis)
            }
            FileRequest::Copy { from, to } => {
                let source = self.whitelist.resolve(from, FileAccess::ReadOnly)?;
                if source.is_folder_itself() {
                    return Err(FileError::Invalid(format!("{from} is a whitelisted folder; copy what is in it")));
                }
                if lstat(&source.parent, &source.name)?.is_some_and(|facts| facts.kind == FileType::Symlink) {
                    // A copy of what a link names is a copy through the link (links inside a
                    // copied tree are copied as links).
                    return Err(FileError::denied_l2(Denial::Symlink(from.to_string())));
                }
                let target = self.changeable(to)?;
                if lstat(&target.parent, &target.name)?.is_some() {
                    return Err(FileError::Exists(to.to_string()));
                }
                let mut walk = Walk::fingerprints(&self.whitelist, source.dev);
                entry::stage_copy(&mut walk, &source.parent, &source.name, from, &target.parent, &temp(0))?;
                let mut check = Walk::fingerprints(&self.whitelist, target.dev);
                let after = check.fingerprint(&target.parent, &temp(0), to)?;
                let dir = dup(&target.parent)?;
                Ok(Plan {
                    kind: FileOpKind::Copy { from: from.to_string(), to: to.to_string() },
                    changes: vec![PathChange {
                        path: to.to_string(),
                        before: Fingerprint::Absent,
                        saved: None,
                        after: Some(after),
                    }],
                    steps: vec![Step::Install { dir, temp: temp(0), name: target.name.clone(), replace: false }],
                    linked: Vec::new(),
                    places: vec![target],
                    basis,
                    unsynced: Vec::new(),
                    spare: None,
                })
            }
            FileRequest::Delete { path } => {
                let place = self.changeable(path)?;
                let mut walk = Walk::saving(&self.whitelist, place.dev, &self.blobs);
                let saved = walk.read(&place.parent, &place.name, path)?;
                if saved == SavedEntry::Absent {
                    return Err(FileError::NotFound(path.to_string()));
                }
                let dir = dup(&place.parent)?;
                Ok(Plan {
                    kind: FileOpKind::Delete { path: path.to_string() },
                    changes: vec![PathChange {
                        path: path.to_string(),
                        before: saved.fingerprint(),
                        saved: Some(saved),
                        after: Some(Fingerprint::Absent),
                    }],
                    steps: vec![Step::Remove {
                        dir,
                        name: place.name.clone(),
                        aside: format!(".clawnet-{number}-0.del"),
                    }],
                    linked: std::mem::take(&mut walk.linked),
                    places: vec![place],
                    basis,
                    unsynced: Vec::new(),
                    spare: None,
                })
            }
            FileRequest::Read { .. }
            | FileRequest::List { .. }
            | FileRequest::Stat { .. }
            | FileRequest::Search { .. } => Err(FileError::Invalid("not a change".into())),
        }
    }

    fn prepare_move(&self, from: &FsPath, to: &FsPath, basis: String) -> Result<Plan, FileError> {
        let source = self.changeable(from)?;
        let target = self.changeable(to)?;
        if to.is_within(from) {
            return Err(FileError::Invalid(format!("cannot move {from} into itself")));
        }
        if source.dev != target.dev {
            return Err(FileError::Invalid(format!(
                "{from} and {to} are on different file systems; copy, then delete"
            )));
        }
        let mut walk = Walk::fingerprints(&self.whitelist, source.dev);
        let moved = walk.fingerprint(&source.parent, &source.name, from)?;
        if moved == Fingerprint::Absent {
            return Err(FileError::NotFound(from.to_string()));
        }
        if lstat(&target.parent, &target.name)?.is_some() {
            return Err(FileError::Exists(to.to_string()));
        }
        let step = Step::Move {
            from_dir: dup(&source.parent)?,
            from: source.name.clone(),
            to_dir: dup(&target.parent)?,
            to: target.name.clone(),
        };
        Ok(Plan {
            kind: FileOpKind::Move { from: from.to_string(), to: to.to_string() },
            changes: vec![
                PathChange {
                    path: from.to_string(),
                    before: moved.clone(),
                    saved: None,
                    after: Some(Fingerprint::Absent),
                },
                PathChange { path: to.to_string(), before: Fingerprint::Absent, saved: None, after: Some(moved) },
            ],
            steps: vec![step],
            linked: Vec::new(),
            places: vec![source, target],
            basis,
            unsynced: Vec::new(),
            spare: None,
        })
    }

    /// Resolves a path a change will touch: writable, not a whitelisted folder itself.
    fn changeable(&self, path: &FsPath) -> Result<Place, FileError> {
        let place = self.whitelist.resolve(path, FileAccess::ReadWrite)?;
        if place.is_folder_itself() {
            return Err(FileError::denied_l2(Denial::FolderItself));
        }
        Ok(place)
    }

    /// Decides `plan` as operation `number` (undoing `undoes`, if it is an undo), applies it,
    /// and hands its journal entry to the settling thread. The caller has waited for the last
    /// change to settle.
    fn run(
        &self,
        number: u64,
        mut plan: Plan,
        actor: Actor,
        session: Option<SessionId>,
        undoes: Option<FileOpRecord>,
    ) -> Result<(), FileError> {
        let record = FileOpRecord {
            number,
            time: Timestamp::now(),
            actor,
            session,
            basis: plan.basis.clone(),
            kind: plan.kind.clone(),
            changes: plan.changes.clone(),
            state: FileOpState::Done,
        };
        let decision = Decision { record: record.clone(), undoes: undoes.as_ref().map(|undone| undone.number) };
        let (decided, synced) = if plan.unsynced.is_empty() {
            (self.decisions.record(&decision), Ok(()))
        } else {
            // The staged content syncs on another thread while the decision is written: two
            // waits for the disk overlap instead of adding up.
            std::thread::scope(|scope| {
                let syncing = scope.spawn(|| plan.unsynced.iter().try_for_each(File::sync_all));
                let decided = self.decisions.record(&decision);
                let synced = syncing.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (decided, synced.map_err(FileError::std_io("syncing a file")))
            })
        };
        if let Err(err) = decided {
            // Whether the decision reached the disk is unknown, so the change may yet be rolled
            // forward by recovery: nothing more is built on it until a restart settles that.
            self.abandon_staged(number, &plan);
            self.settler.fail(number, err.clone());
            return Err(err);
        }
        let dirs = match synced.and_then(|()| apply(std::mem::take(&mut plan.steps))) {
            Ok(dirs) => dirs,
            Err(err) => {
                // Decided but not applied: say so in the journal and the audit log.
                let mut failed = record;
                failed.state = FileOpState::Abandoned;
                self.abandon_staged(number, &plan);
                self.db.commit(
                    Change::new(move |txn| {
                        txn.put_file_op(&failed)?;
                        txn.set_file_ops_settled(failed.number)
                    })
                    .with_audit(AuditDraft::new(
                        actor,
                        format!("files.{}", plan.kind.name()),
                        format!("operation {number}: {}", plan.kind.describe()),
                        plan.basis.clone(),
                        Outcome::Failed(err.to_string()),
                    )),
                )?;
                return Err(err);
            }
        };
        let journaled = journal_entry(record, undoes);
        if plan.kind.is_write() {
            // Recovery abandons a write it finds not installed (its staged content may not be
            // on disk), so a write's rename is durable before its reply. Everything else rolls
            // forward from its decision, so its directories sync after the reply.
            if let Err(err) = sync_dirs(&dirs) {
                self.settler.fail(number, err.clone());
                return Err(err);
            }
            self.settler.hand_over(number, Vec::new(), journaled);
        } else {
            self.settler.hand_over(number, dirs, journaled);
        }
        Ok(())
    }

    /// Removes what a change that will not happen staged, and blobs that share a live inode.
    fn abandon_staged(&self, number: u64, plan: &Plan) {
        for place in &plan.places {
            let _ = entry::remove_tree(&place.parent, &format!(".clawnet-{number}-0.new"));
        }
        if let Some(spare) = &plan.spare {
            self.spares.discard(spare);
        }
        for hash in &plan.linked {
            self.blobs.release(hash);
        }
    }

    // ---- audit ----

    fn security_event(&self, actor: Actor, request: &FileRequest, err: &FileError) -> Result<(), FileError> {
        let FileError::Denied { layer, reason } = err else { return Ok(()) };
        self.audit(AuditDraft::new(
            actor,
            "security.files",
            format!("{} {}", request.name(), request.describe()),
            layer.label(),
            Outcome::Denied(reason.clone()),
        ))
    }

    /// Records `draft` in the chain the journal lives in (a remote endpoint's refusals).
    pub(crate) fn audit_event(&self, draft: AuditDraft) -> Result<(), FileError> {
        self.audit(draft)
    }

    fn audit(&self, draft: AuditDraft) -> Result<(), FileError> {
        self.db.append(draft)?;
        Ok(())
    }

    fn basis_l2(&self, request: &FileRequest) -> String {
        let mut folders: Vec<String> = Vec::new();
        for (path, _) in request.accesses() {
            if let Some(folder) = self.whitelist.folder_of(path) {
                let line = format!("{} ({})", folder.path, folder.access.as_str());
                if !folders.contains(&line) {
                    folders.push(line);
                }
            }
        }
        format!("L2 folder {}", folders.join(", "))
    }
}

/// The journal entry of a decided change, `record`, with its audit entry, and the entry it
/// undoes marked so.
fn journal_entry(record: FileOpRecord, undoes: Option<FileOpRecord>) -> Change {
    let audit = AuditDraft::new(
        record.actor,
        format!("files.{}", record.kind.name()),
        format!("operation {}: {}", record.number, record.kind.describe()),
        record.basis.clone(),
        Outcome::Success,
    );
    Change::new(move |txn| {
        txn.put_file_op(&record)?;
        if let Some(mut undone) = undoes {
            undone.state = FileOpState::Undone { by: record.number };
            txn.put_file_op(&undone)?;
        }
        Ok(())
    })
    .with_audit(audit)
}

/// Applies steps in order; returns the directories they changed, which still need a sync for
/// the changes to be durable (a delete's directory sync while it removes a tree excepted).
fn apply(steps: Vec<Step>) -> Result<Vec<OwnedFd>, FileError> {
    let mut changed: Vec<OwnedFd> = Vec::new();
    let mut note = |dir: OwnedFd| {
        if !changed.iter().any(|known| same_dir(known, &dir)) {
            changed.push(dir);
        }
    };
    for step in steps {
        match step {
            Step::Install { dir, temp, name, replace } => {
                let flags = if replace { RenameFlags::empty() } else { RenameFlags::NOREPLACE };
                rename(&dir, &temp, &dir, &name, flags)?;
                note(dir);
            }
            Step::InstallSpare { spares, spare, dir, name, replace } => {
                let flags = if replace { RenameFlags::empty() } else { RenameFlags::NOREPLACE };
                rename(&spares, &spare, &dir, &name, flags)?;
                // Only the destination's directory needs a sync: if a crash loses the spare's
                // removal from its directory, the next start removes that name.
                note(dir);
            }
            Step::Move { from_dir, from, to_dir, to } => {
                rename(&from_dir, &from, &to_dir, &to, RenameFlags::NOREPLACE)?;
                note(to_dir);
                note(from_dir);
            }
            Step::Remove { dir, name, aside } => {
                let is_dir = lstat(&dir, &name)?.is_some_and(|facts| facts.kind == FileType::Directory);
                if is_dir {
                    // Out of sight in one atomic step, durably before its content goes (so a
                    // crash never leaves a half-removed tree at the path); the removal of the
                    // content may take longer.
                    rename(&dir, &name, &dir, &aside, RenameFlags::NOREPLACE)?;
                    rustix::fs::fsync(&dir).map_err(io("syncing a directory"))?;
                    // From here the delete has happened (the tree is out of sight and backed
                    // up): content the system will not let go of (an immutable file) stays
                    // under the reserved name, which no agent can touch, for the owner.
                    if let Err(err) = entry::remove_tree(&dir, &aside) {
                        tracing::warn!(%err, aside, "a deleted tree could not be removed completely; remove it by hand");
                    }
                } else {
                    rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty()).map_err(io("removing a file"))?;
                }
                note(dir);
            }
        }
    }
    Ok(changed)
}

/// Syncs `dirs`.
fn sync_dirs(dirs: &[OwnedFd]) -> Result<(), FileError> {
    dirs.iter().try_for_each(|dir| rustix::fs::fsync(dir).map_err(io("syncing a directory")))
}

/// Whether two handles are the same directory (changes within it need one sync).
fn same_dir(a: &OwnedFd, b: &OwnedFd) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

fn rename(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str, flags: RenameFlags) -> Result<(), FileError> {
    match rustix::fs::renameat_with(from_dir, from, to_dir, to, flags) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) => Err(FileError::Exists(to.to_string())),
        Err(err) => Err(FileError::io("renaming", err)),
    }
}

/// A move's two paths, if `record` moved one entry (a move, a rename, or the undo of one).
fn as_move(record: &FileOpRecord) -> Option<(FsPath, FsPath)> {
    let [from, to] = record.changes.as_slice() else { return None };
    let moved = from.saved.is_none()
        && from.after == Some(Fingerprint::Absent)
        && to.before == Fingerprint::Absent
        && to.after.as_ref() == Some(&from.before);
    if !moved {
        return None;
    }
    Some((FsPath::parse(&from.path).ok()?, FsPath::parse(&to.path).ok()?))
}

fn parse_stored(text: &str) -> Result<FsPath, FileError> {
    FsPath::parse(text).map_err(|err| FileError::Invalid(format!("a journal path is malformed: {err}")))
}

fn parent_of(path: &FsPath) -> Result<FsPath, FileError> {
    let parts = path.parts();
    let Some((_, parent)) = parts.split_last() else {
        return Err(FileError::Invalid("/ has no parent".into()));
    };
    FsPath::parse(&format!("/{}", parent.join("/"))).map_err(|err| FileError::Invalid(err.to_string()))
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, FileError> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(io("duplicating a handle"))
}
