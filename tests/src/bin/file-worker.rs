//! Changes files through the file endpoint until killed: creates, overwrites, deletes and moves
//! in one whitelisted folder, as one identity. Before each write it prints `attempt TAG`
//! (flushed), so the test that kills it with SIGKILL knows every content that may be on disk.
//!
//! Usage: `file-worker DATA_DIR FOLDER IDENTITY SEED ROUND`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clawnet_crypto::IdentityId;
use clawnet_node::NodeHome;
use clawnet_node::files::{FileRequest, FolderConfig, FsPath, GovernedFiles, WriteMode, endpoint_config};
use clawnet_node::passphrase;
use clawnet_storage::files::FileAccess;
use clawnet_tests::file_crash::{Dice, FILE_NAMES, version};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data_dir, folder, identity, seed, round] = args.as_slice() else {
        anyhow::bail!("usage: file-worker DATA_DIR FOLDER IDENTITY SEED ROUND");
    };
    let data_dir = PathBuf::from(data_dir);
    let folder = PathBuf::from(folder);
    let identity: IdentityId = identity.parse().map_err(|err| anyhow::anyhow!("identity: {err:?}"))?;
    let mut dice = Dice::new(seed.parse().context("seed")?);
    let home = NodeHome::open(&data_dir)?.unlock(passphrase::for_unlock)?;
    let folders = [FolderConfig { path: folder.clone(), access: FileAccess::ReadWrite }];
    let files = GovernedFiles::open(&endpoint_config(&data_dir, &folders), home.db().clone())?;
    let at = |name: &str| FsPath::parse(&format!("{}/{name}", folder.display())).context("a path");
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for seq in 0u64.. {
        let name = FILE_NAMES[dice.below(FILE_NAMES.len())];
        let exists = folder.join(name).symlink_metadata().is_ok();
        let absent: Vec<&str> =
            FILE_NAMES.iter().copied().filter(|other| folder.join(other).symlink_metadata().is_err()).collect();
        let tag = format!("r{round}s{seq}");
        let request = match dice.below(10) {
            _ if !exists => FileRequest::Write { path: at(name)?, content: version(&tag), mode: WriteMode::Create },
            0..=4 => FileRequest::Write { path: at(name)?, content: version(&tag), mode: WriteMode::Overwrite },
            5 | 6 => FileRequest::Delete { path: at(name)? },
            _ if absent.is_empty() => FileRequest::Delete { path: at(name)? },
            _ => FileRequest::Move { from: at(name)?, to: at(absent[dice.below(absent.len())])? },
        };
        if matches!(request, FileRequest::Write { .. }) {
            writeln!(out, "attempt {tag}")?;
            out.flush()?;
        }
        let reply = files
            .request(identity, None, request.clone())
            .with_context(|| format!("{} {}", request.name(), request.describe()))?;
        writeln!(out, "done {reply:?}")?;
        out.flush()?;
    }
    Ok(())
}
