//! Where a node keeps its files, and the permissions they get.

use std::path::{Path, PathBuf};

use crate::error::NodeError;

/// The database file inside a data directory.
pub const DATABASE_FILE: &str = "clawnet.redb";

/// The data directory used when none is given: `$XDG_DATA_HOME/clawnet`, else
/// `~/.local/share/clawnet`, else `./clawnet-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("clawnet");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/clawnet");
    }
    PathBuf::from("clawnet-data")
}

/// The database path inside `dir`.
pub fn database_path(dir: &Path) -> PathBuf {
    dir.join(DATABASE_FILE)
}

/// Creates `dir` (and parents) readable only by the owner.
pub fn create_private_dir(dir: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir).map_err(NodeError::io(format!("creating {}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(NodeError::io(format!("restricting permissions of {}", dir.display())))?;
    }
    Ok(())
}
