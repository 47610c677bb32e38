//! Authorization layer 1: an identity's file scope, the folders its owner granted it. Checked by
//! governance, lexically, before a directive is issued; it knows nothing of the node's whitelist
//! (layer 2 checks again, on the real file system, independently).

use clawnet_storage::files::{FileAccess, FileScope};

use super::path::FsPath;
use super::request::FileRequest;

/// Whether `scope` allows every path of `request` with the access it needs. `Ok` carries the
/// basis (the grants used), `Err` the reason.
pub fn authorize(scope: &FileScope, request: &FileRequest) -> Result<String, String> {
    let mut basis = Vec::new();
    for (path, needed) in request.accesses() {
        let grant = scope
            .grants
            .iter()
            .filter_map(|grant| FsPath::parse(&grant.root).ok().map(|root| (root, grant.access)))
            .filter(|(root, _)| path.is_within(root))
            .max_by_key(|(root, _)| root.parts().len());
        let Some((root, access)) = grant else {
            return Err(format!("{path} is outside the identity's scope"));
        };
        if needed.can_write() && !access.can_write() {
            return Err(format!("{path} is read-only in the identity's scope (granted {root} read-only)"));
        }
        let line = format!("{root} ({})", access.as_str());
        if !basis.contains(&line) {
            basis.push(line);
        }
    }
    Ok(format!("L1 grant {}", basis.join(", ")))
}

/// Adds (or changes) the grant for `root` in `scope`.
pub fn grant(scope: &mut FileScope, root: &FsPath, access: FileAccess) {
    let root = root.to_string();
    match scope.grants.iter_mut().find(|grant| grant.root == root) {
        Some(existing) => existing.access = access,
        None => scope.grants.push(clawnet_storage::files::FileGrant { root, access }),
    }
}

/// Removes the grant for `root`; returns whether there was one.
pub fn revoke(scope: &mut FileScope, root: &FsPath) -> bool {
    let root = root.to_string();
    let before = scope.grants.len();
    scope.grants.retain(|grant| grant.root != root);
    scope.grants.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::request::WriteMode;

    fn path(text: &str) -> FsPath {
        FsPath::parse(text).unwrap()
    }

    #[test]
    fn the_scope_allows_only_granted_folders_with_their_access() {
        let mut scope = FileScope::default();
        grant(&mut scope, &path("/data/work"), FileAccess::ReadWrite);
        grant(&mut scope, &path("/data/work/archive"), FileAccess::ReadOnly);
        let write = |at: &str| FileRequest::Write { path: path(at), content: vec![], mode: WriteMode::Create };
        assert!(authorize(&scope, &write("/data/work/a.txt")).unwrap().contains("/data/work (read-write)"));
        assert!(authorize(&scope, &write("/data/work/archive/a.txt")).unwrap_err().contains("read-only"));
        assert!(authorize(&scope, &write("/data/other/a.txt")).unwrap_err().contains("outside"));
        assert!(authorize(&scope, &write("/data/workshop/a.txt")).is_err());
        let read = FileRequest::Read { path: path("/data/work/archive/old.txt"), offset: 0, max: None };
        assert!(authorize(&scope, &read).is_ok());
        let copy_out = FileRequest::Copy { from: path("/data/work/a"), to: path("/tmp/a") };
        assert!(authorize(&scope, &copy_out).is_err(), "both ends must be in scope");
        assert!(revoke(&mut scope, &path("/data/work")));
        assert!(authorize(&scope, &write("/data/work/a.txt")).is_err());
        assert!(authorize(&FileScope::default(), &read).is_err(), "an empty scope allows nothing");
    }
}
