//! The file endpoint end to end, on a real node database and real directories: every attack of
//! the threat model on the two authorization layers (denied, recorded, nothing outside changed),
//! a symbolic link swapped in while requests run (`attacks.rs`), undo and rollback that put trees
//! back exactly (`undo.rs`, `rollback.rs`), and a process killed in the middle of operations
//! (`crash.rs`). This file holds what they share: the node fixture, request builders, the tree
//! they populate, and what they compare.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use clawnet_crypto::IdentityId;
use clawnet_node::data_dir::database_path;
use clawnet_node::files::{
    FileError, FileReply, FileRequest, FolderConfig, FsPath, GovernedFiles, Layer, RollbackFilter, WriteMode,
    endpoint_config,
};
use clawnet_node::home::KeyProtection;
use clawnet_node::{NodeHome, UnlockedHome, passphrase};
use clawnet_protocol::SessionId;
use clawnet_protocol::audit::{Actor, AuditEntry, Outcome};
use clawnet_storage::files::{
    EntryMeta, FileAccess, FileOpKind, FileOpRecord, FileOpState, Fingerprint, SavedEntry, tamper_with_file_op,
};
use clawnet_tests::file_crash::{self, Dice, FILE_NAMES};
use clawnet_tests::file_tree::{Content, Times, Tree, put_file, set_mtime};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const RW: FileAccess = FileAccess::ReadWrite;
const RO: FileAccess = FileAccess::ReadOnly;
/// A time in 2001, so any entry an operation rewrites shows a different time.
const OLD: u64 = 1_000_000_000;

/// A node with whitelisted folders under one canonical temporary directory.
struct Node {
    _temp: TempDir,
    base: PathBuf,
    home: UnlockedHome,
    files: GovernedFiles,
}

impl Node {
    /// A node whose data directory is `data` (relative to BASE, a canonical temporary
    /// directory), with `folders` (relative to BASE, created before `prepare` runs) whitelisted.
    fn start(data: &str, folders: &[(&str, FileAccess)], prepare: impl FnOnce(&Path)) -> Node {
        let temp = tempfile::tempdir().unwrap();
        let base = temp.path().canonicalize().unwrap();
        for (folder, _) in folders {
            fs::create_dir_all(base.join(folder)).unwrap();
        }
        prepare(&base);
        let home = NodeHome::init(&base.join(data), "Ada", KeyProtection::None).unwrap();
        let folders: Vec<FolderConfig> =
            folders.iter().map(|(folder, access)| FolderConfig { path: base.join(folder), access: *access }).collect();
        let files = GovernedFiles::open(&endpoint_config(home.home().dir(), &folders), home.db().clone()).unwrap();
        Node { _temp: temp, base, home, files }
    }

    /// A new identity granted `grants` (relative to BASE; `/` for the whole file system).
    fn identity(&self, tag: &str, grants: &[(&str, FileAccess)]) -> IdentityId {
        let id = self.home.create_identity(tag, &format!("the {tag} identity")).unwrap().id;
        for (root, access) in grants {
            let root = if *root == "/" { PathBuf::from("/") } else { self.base.join(root) };
            self.files.grant(id, &at(&root), *access).unwrap();
        }
        id
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.base.join(relative)
    }

    fn security_events(&self) -> Vec<AuditEntry> {
        self.home.db().audit_entries().unwrap().into_iter().filter(AuditEntry::is_security_event).collect()
    }

    /// Runs `request` for `identity` and returns the journal number of the change it made.
    fn change(&self, identity: IdentityId, session: Option<SessionId>, request: FileRequest) -> u64 {
        let shown = format!("{} {}", request.name(), request.describe());
        match self.files.request(identity, session, request) {
            Ok(FileReply::Done { op }) => op,
            other => panic!("{shown}: expected a change, got {other:?}"),
        }
    }

    fn record(&self, op: u64) -> FileOpRecord {
        let all = self.files.history(&RollbackFilter::default()).unwrap();
        all.into_iter().find(|record| record.number == op).unwrap_or_else(|| panic!("no operation {op}"))
    }
}

fn at(path: &Path) -> FsPath {
    FsPath::parse(path.to_str().unwrap()).unwrap()
}

fn read(path: &Path) -> FileRequest {
    FileRequest::Read { path: at(path), offset: 0, max: None }
}

fn write(path: &Path, mode: WriteMode, content: &[u8]) -> FileRequest {
    FileRequest::Write { path: at(path), content: content.to_vec(), mode }
}

fn plant(path: &Path, mode: WriteMode) -> FileRequest {
    write(path, mode, b"planted by an agent\n")
}

fn copy(from: &Path, to: &Path) -> FileRequest {
    FileRequest::Copy { from: at(from), to: at(to) }
}

fn mv(from: &Path, to: &Path) -> FileRequest {
    FileRequest::Move { from: at(from), to: at(to) }
}

fn rename(path: &Path, name: &str) -> FileRequest {
    FileRequest::Rename { path: at(path), name: name.into() }
}

fn delete(path: &Path) -> FileRequest {
    FileRequest::Delete { path: at(path) }
}

fn mkdir(path: &Path) -> FileRequest {
    FileRequest::Mkdir { path: at(path) }
}

fn list(path: &Path) -> FileRequest {
    FileRequest::List { path: at(path) }
}

/// A tree with files of different permissions and times, links, and nested directories.
fn populate(dir: &Path) {
    fs::create_dir_all(dir.join("tree/nested")).unwrap();
    put_file(&dir.join("a.txt"), b"alpha\n", 0o644, OLD + 1);
    put_file(&dir.join("tool.sh"), b"#!/bin/sh\necho hi\n", 0o755, OLD + 2);
    put_file(&dir.join("private"), b"key material\n", 0o600, OLD + 3);
    put_file(&dir.join("tree/inner.txt"), b"inner\n", 0o640, OLD + 4);
    put_file(&dir.join("tree/ro.txt"), b"read only\n", 0o444, OLD + 5);
    put_file(&dir.join("tree/nested/deep.bin"), &(0..=255u8).collect::<Vec<_>>(), 0o604, OLD + 6);
    // Large enough that its backup is saved while the new content is staged.
    let large: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect();
    put_file(&dir.join("large.bin"), &large, 0o640, OLD + 10);
    symlink("inner.txt", dir.join("tree/link")).unwrap();
    symlink("/nonexistent/target", dir.join("tree/dangling")).unwrap();
    fs::set_permissions(dir.join("tree/nested"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(dir.join("tree"), fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&dir.join("tree/nested"), OLD + 7, 7);
    set_mtime(&dir.join("tree"), OLD + 8, 8);
    set_mtime(dir, OLD + 9, 9);
}

/// The journal fingerprint of a regular file with `meta`.
fn fingerprint_of(meta: &fs::Metadata) -> Fingerprint {
    Fingerprint::File {
        len: meta.len(),
        meta: EntryMeta {
            mode: meta.mode() & 0o7777,
            mtime_secs: meta.mtime(),
            mtime_nanos: u32::try_from(meta.mtime_nsec()).unwrap(),
        },
    }
}

/// Everything under BASE but the database, its commit journal and the endpoint's note of its
/// current change (which the node rewrites as it works).
fn everything(node: &Node) -> Tree {
    let database = database_path(node.home.home().dir());
    let journal = node.home.home().db().journal_path();
    let intent = node.home.home().dir().join("files/intent");
    Tree::of_except(&node.base, |path| path == database || path == journal || path == intent)
}

mod attacks;
mod crash;
mod rollback;
mod undo;
