//! Reading: read, list, stat and search, through layer 2, audited.

use std::os::fd::OwnedFd;

use clawnet_protocol::audit::{AuditDraft, Outcome};
use clawnet_storage::files::FileAccess;
use rustix::fs::FileType;

use super::super::FileError;
use super::super::entry;
use super::super::path::FsPath;
use super::super::request::{EntryInfo, EntryKind, FileDirective, FileReply, FileRequest};
use super::super::sandbox::{Facts, Place, io, lstat};
use super::{FileEndpoint, MAX_FILE_LEN, MAX_LISTED, MAX_SEARCH_DEPTH};

impl FileEndpoint {
    pub(super) fn look(&self, directive: &FileDirective) -> Result<FileReply, FileError> {
        let reply = match &directive.request {
            FileRequest::Read { path, offset, max } => self.read(path, *offset, *max)?,
            FileRequest::List { path } => self.list(path)?,
            FileRequest::Stat { path } => {
                let place = self.whitelist.resolve(path, FileAccess::ReadOnly)?;
                let facts =
                    lstat(&place.parent, place.at_name())?.ok_or_else(|| FileError::NotFound(path.to_string()))?;
                self.whitelist.check_entry(&facts, path, place.dev)?;
                FileReply::Entry(info(path, &facts))
            }
            FileRequest::Search { path, pattern } => self.search(path, pattern)?,
            _ => return Err(FileError::Invalid("not a read".into())),
        };
        self.audit(AuditDraft::new(
            directive.actor,
            format!("files.{}", directive.request.name()),
            directive.request.describe(),
            format!("{}; {}", directive.basis, self.basis_l2(&directive.request)),
            Outcome::Success,
        ))?;
        Ok(reply)
    }

    fn read(&self, path: &FsPath, offset: u64, max: Option<u64>) -> Result<FileReply, FileError> {
        use std::io::{Read, Seek, SeekFrom};
        let place = self.whitelist.resolve(path, FileAccess::ReadOnly)?;
        if place.is_folder_itself() {
            return Err(FileError::NotAFile(path.to_string()));
        }
        let mut file = entry::open_file(&place.parent, &place.name, path)?;
        let facts = Facts::of(&rustix::fs::fstat(&file).map_err(io("reading a file"))?);
        self.whitelist.check_entry(&facts, path, place.dev)?;
        if facts.kind != FileType::RegularFile {
            return Err(FileError::NotAFile(path.to_string()));
        }
        let limit = max.unwrap_or(MAX_FILE_LEN).min(MAX_FILE_LEN);
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(offset)).map_err(FileError::std_io("reading a file"))?;
        file.take(limit).read_to_end(&mut bytes).map_err(FileError::std_io("reading a file"))?;
        Ok(FileReply::Content { bytes, total: facts.len })
    }

    fn list(&self, path: &FsPath) -> Result<FileReply, FileError> {
        let place = self.whitelist.resolve(path, FileAccess::ReadOnly)?;
        let dir = self.open_dir(&place)?;
        let names = entry::names_in(&dir)?;
        let truncated = names.len() > MAX_LISTED;
        let mut entries = Vec::new();
        for name in names.into_iter().take(MAX_LISTED) {
            if let Some(facts) = lstat(&dir, &name)? {
                let child = path.join(&name).map_err(|err| FileError::Invalid(err.to_string()))?;
                entries.push(info(&child, &facts));
            }
        }
        Ok(FileReply::Entries { entries, truncated })
    }

    fn search(&self, path: &FsPath, pattern: &str) -> Result<FileReply, FileError> {
        let place = self.whitelist.resolve(path, FileAccess::ReadOnly)?;
        let root = self.open_dir(&place)?;
        let pattern = pattern.to_lowercase();
        let mut found = Vec::new();
        let mut visited = 0usize;
        let mut queue = vec![(root, path.clone(), 0usize)];
        let mut truncated = false;
        while let Some((dir, at, depth)) = queue.pop() {
            for name in entry::names_in(&dir)? {
                visited += 1;
                if visited > entry::MAX_TREE_ENTRIES || found.len() >= MAX_LISTED {
                    truncated = true;
                    break;
                }
                let Some(facts) = lstat(&dir, &name)? else { continue };
                let child = at.join(&name).map_err(|err| FileError::Invalid(err.to_string()))?;
                if matches(&pattern, &name.to_lowercase()) {
                    found.push(info(&child, &facts));
                }
                // Protected folders, other file systems and links are not searched (not denied:
                // nobody asked for them).
                if facts.kind == FileType::Directory
                    && depth < MAX_SEARCH_DEPTH
                    && let Ok(next) = self.whitelist.enter(&dir, &name, &child, place.dev)
                {
                    queue.push((next, child, depth + 1));
                }
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(FileReply::Entries { entries: found, truncated })
    }

    fn open_dir(&self, place: &Place) -> Result<OwnedFd, FileError> {
        if place.is_folder_itself() {
            return rustix::io::fcntl_dupfd_cloexec(&place.parent, 0).map_err(io("opening a directory"));
        }
        self.whitelist.enter(&place.parent, &place.name, &place.path, place.dev)
    }
}

fn info(path: &FsPath, facts: &Facts) -> EntryInfo {
    let kind = match facts.kind {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    EntryInfo { path: path.to_string(), kind, len: facts.len, mode: facts.meta.mode, modified: facts.meta.mtime_secs }
}

/// `*` matches any run of characters; without `*`, a substring match.
fn matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return name.contains(pattern);
    }
    let pieces: Vec<&str> = pattern.split('*').collect();
    let mut rest = name;
    for (index, piece) in pieces.iter().enumerate() {
        if piece.is_empty() {
            continue;
        }
        if index == 0 {
            let Some(tail) = rest.strip_prefix(piece) else { return false };
            rest = tail;
        } else if index == pieces.len() - 1 {
            return rest.ends_with(piece);
        } else {
            let Some(at) = rest.find(piece) else { return false };
            rest = &rest[at + piece.len()..];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn name_patterns_match_substrings_and_stars() {
        assert!(matches("report", "q3-report.md"));
        assert!(matches("*.md", "q3-report.md"));
        assert!(!matches("*.md", "q3-report.txt"));
        assert!(matches("q*rep*", "q3-report.md"));
        assert!(!matches("x*", "q3-report.md"));
    }
}
