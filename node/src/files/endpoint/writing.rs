//! Preparing a write (create, overwrite, append): the content staged in a spare file made
//! ahead of time (or beside its destination), the old content saved in the backup store, both
//! at once for a large file.

use std::fs::File;

use clawnet_storage::files::{FileOpKind, Fingerprint, PathChange, SavedEntry};
use rustix::fs::FileType;

use super::super::FileError;
use super::super::entry::{self, Walk};
use super::super::path::FsPath;
use super::super::request::WriteMode;
use super::super::sandbox::{Denial, lstat};
use super::{FileEndpoint, MAX_FILE_LEN, Plan, Step, dup};

/// From this size of the file an overwrite or append replaces, its backup is saved on another
/// thread while the new content is staged and synced (below it, the thread costs more than it
/// saves).
const PARALLEL_SAVE_LEN: u64 = 256 * 1024;

impl FileEndpoint {
    /// Prepares writing `content` to `path` as operation `number`.
    pub(super) fn prepare_write(
        &self,
        number: u64,
        path: &FsPath,
        content: &[u8],
        mode: WriteMode,
        basis: String,
    ) -> Result<Plan, FileError> {
        let temp = format!(".clawnet-{number}-0.new");
        if content.len() as u64 > MAX_FILE_LEN {
            return Err(FileError::TooLarge { what: format!("the content for {path}"), limit: MAX_FILE_LEN });
        }
        let place = self.changeable(path)?;
        let current = lstat(&place.parent, &place.name)?;
        if current.is_some_and(|facts| facts.kind == FileType::Symlink) {
            // Writing "through" a link is what an attack asks for; it is never followed.
            return Err(FileError::denied_l2(Denial::Symlink(path.to_string())));
        }
        // Blobs it links are released if this returns early (when `walk` drops).
        let mut walk = Walk::saving(&self.whitelist, place.dev, &self.blobs);
        // Staged in a spare file made ahead of time where one can be installed (returning
        // its name), beside the destination elsewhere (or if no spare can be made).
        let stage = |prefix: Option<&File>, file_mode| {
            let spare = self.spares.serves(&place.parent).then(|| self.spares.take()).and_then(|spare| {
                spare.inspect_err(|err| tracing::warn!(%err, "no spare file; staging beside the file")).ok()
            });
            if let Some(spare) = spare {
                let (file, after) = entry::stage_in_spare(spare.file, prefix, content, file_mode)
                    .inspect_err(|_| self.spares.discard(&spare.name))?;
                Ok((file, after, Some(spare.name)))
            } else {
                let (file, after) = entry::stage_bytes(&place.parent, &temp, prefix, content, file_mode)?;
                Ok((file, after, None))
            }
        };
        let unstage = |spare: Option<String>| match spare {
            Some(name) => self.spares.discard(&name),
            None => {
                let _ = entry::remove_tree(&place.parent, &temp);
            }
        };
        let (kind, saved, (staged, after, spare), synced) = match (mode, current) {
            (WriteMode::Create, None) => {
                (FileOpKind::Create { path: path.to_string() }, None, stage(None, 0o644)?, false)
            }
            (WriteMode::Create, Some(_)) => return Err(FileError::Exists(path.to_string())),
            (_, None) => return Err(FileError::NotFound(path.to_string())),
            (_, Some(facts)) if facts.kind != FileType::RegularFile => {
                self.whitelist.check_entry(&facts, path, place.dev)?;
                return Err(FileError::NotAFile(path.to_string()));
            }
            (mode, Some(facts)) => {
                // Layer 2 on what is there before anything is staged (saving checks it
                // again, on the file it opens).
                self.whitelist.check_entry(&facts, path, place.dev)?;
                let prefix = match mode {
                    WriteMode::Append => Some(entry::open_file(&place.parent, &place.name, path)?),
                    _ => None,
                };
                if let Some(prefix) = &prefix {
                    let total = prefix.metadata().map(|meta| meta.len()).unwrap_or(0) + content.len() as u64;
                    if total > MAX_FILE_LEN {
                        return Err(FileError::TooLarge {
                            what: format!("{path} after the append"),
                            limit: MAX_FILE_LEN,
                        });
                    }
                }
                let kind = match mode {
                    WriteMode::Append => FileOpKind::Append { path: path.to_string() },
                    _ => FileOpKind::Overwrite { path: path.to_string() },
                };
                let parallel = facts.len >= PARALLEL_SAVE_LEN;
                let (saved, staged) = if parallel {
                    // Hashing the old content into the backup store is CPU, staging the
                    // new content mostly the disk: a large file does both at once, and
                    // its staged content syncs meanwhile too.
                    std::thread::scope(|scope| {
                        let saving = scope.spawn(|| walk.read(&place.parent, &place.name, path));
                        let staged =
                            stage(prefix.as_ref(), facts.meta.mode).and_then(|staged| match staged.0.sync_all() {
                                Ok(()) => Ok(staged),
                                Err(err) => {
                                    unstage(staged.2);
                                    Err(FileError::std_io("syncing a file")(err))
                                }
                            });
                        let saved = saving.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                        (saved, staged)
                    })
                } else {
                    let saved = walk.read(&place.parent, &place.name, path)?;
                    (Ok(saved), stage(prefix.as_ref(), facts.meta.mode))
                };
                match (saved, staged) {
                    (Ok(saved), Ok(staged)) => (kind, Some(saved), staged, parallel),
                    (Err(err), Ok((_, _, spare))) => {
                        unstage(spare);
                        return Err(err);
                    }
                    (_, Err(err)) => return Err(err),
                }
            }
        };
        let replace = saved.is_some();
        let before = saved.as_ref().map_or(Fingerprint::Absent, SavedEntry::fingerprint);
        let dir = dup(&place.parent)?;
        let name = place.name.clone();
        let step = match &spare {
            Some(spare) => {
                Step::InstallSpare { spares: dup(self.spares.handle())?, spare: spare.clone(), dir, name, replace }
            }
            None => Step::Install { dir, temp, name, replace },
        };
        Ok(Plan {
            kind,
            changes: vec![PathChange { path: path.to_string(), before, saved, after: Some(after) }],
            steps: vec![step],
            linked: std::mem::take(&mut walk.linked),
            places: vec![place],
            basis,
            unsynced: if synced { Vec::new() } else { vec![staged] },
            spare,
        })
    }
}
