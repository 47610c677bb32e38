//! The relay's persistent identity: an ed25519 libp2p keypair in a file, created on first start.
//!
//! Format: libp2p's protobuf keypair encoding (the one `Keypair::to_protobuf_encoding` writes,
//! 68 bytes for ed25519). Anything else, or another key type, is refused rather than replaced:
//! silently minting a new key would change the relay's peer id under every node configured
//! with it.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use libp2p::identity::{KeyType, Keypair};
use zeroize::Zeroizing;

/// Largest key file read; an ed25519 keypair is 68 bytes, so anything near this is not a key.
const MAX_KEY_FILE_BYTES: u64 = 1024;

/// Why the relay key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The key file exists but could not be read.
    #[error("cannot read key file {}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// The key file is larger than any keypair encoding.
    #[error("key file {} is not a libp2p keypair: larger than {MAX_KEY_FILE_BYTES} bytes", path.display())]
    TooLarge {
        /// The key file.
        path: PathBuf,
    },
    /// The key file does not hold a protobuf-encoded libp2p keypair.
    #[error("key file {} is not a protobuf-encoded libp2p keypair", path.display())]
    Decode {
        /// The key file.
        path: PathBuf,
        /// What the decoder rejected.
        #[source]
        source: libp2p::identity::DecodingError,
    },
    /// The key file holds a keypair of another type.
    #[error("key file {} holds a {key_type} keypair, expected ed25519", path.display())]
    NotEd25519 {
        /// The key file.
        path: PathBuf,
        /// The type found.
        key_type: KeyType,
    },
    /// A new key file could not be written.
    #[error("cannot create key file {}", path.display())]
    Create {
        /// The key file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// A freshly generated keypair could not be encoded (a libp2p feature is missing).
    #[error("cannot encode the generated keypair")]
    Encode(#[source] libp2p::identity::DecodingError),
}

/// Loads the ed25519 keypair at `path`, or generates one and writes it there (mode 0600) if no
/// file exists.
pub fn load_or_create(path: &Path) -> Result<Keypair, KeyFileError> {
    match File::open(path) {
        Ok(file) => load(path, file),
        Err(err) if err.kind() == io::ErrorKind::NotFound => match create(path) {
            Ok(keypair) => Ok(keypair),
            // Another process created it between our open and our create: use theirs.
            Err(KeyFileError::Create { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                let file = File::open(path).map_err(|source| KeyFileError::Read { path: path.to_owned(), source })?;
                load(path, file)
            }
            Err(err) => Err(err),
        },
        Err(source) => Err(KeyFileError::Read { path: path.to_owned(), source }),
    }
}

fn load(path: &Path, file: File) -> Result<Keypair, KeyFileError> {
    let read_err = |source| KeyFileError::Read { path: path.to_owned(), source };
    // Secret bytes: wiped on drop, and allocated once so reading leaves no stray copies.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_BYTES as usize + 1));
    (&file).take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::TooLarge { path: path.to_owned() });
    }
    let keypair = Keypair::from_protobuf_encoding(&bytes)
        .map_err(|source| KeyFileError::Decode { path: path.to_owned(), source })?;
    if keypair.key_type() != KeyType::Ed25519 {
        return Err(KeyFileError::NotEd25519 { path: path.to_owned(), key_type: keypair.key_type() });
    }
    warn_if_readable_by_others(path, &file);
    tracing::info!(path = %path.display(), "loaded relay key");
    Ok(keypair)
}

fn create(path: &Path) -> Result<Keypair, KeyFileError> {
    let keypair = Keypair::generate_ed25519();
    let bytes = Zeroizing::new(keypair.to_protobuf_encoding().map_err(KeyFileError::Encode)?);
    let create_err = |source| KeyFileError::Create { path: path.to_owned(), source };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(create_err)?;
    if let Err(source) = file.write_all(&bytes).and_then(|()| file.sync_all()) {
        // Leave no half-written key behind: the next start would refuse it.
        drop(file);
        if let Err(err) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), %err, "cannot remove incomplete key file");
        }
        return Err(create_err(source));
    }
    tracing::info!(path = %path.display(), "generated new relay key");
    Ok(keypair)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, file: &File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = file.metadata()
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", metadata.permissions().mode() & 0o777),
            "relay key file is accessible by other users; consider chmod 600"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path, _file: &File) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reloads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.key");
        let created = load_or_create(&path).unwrap();
        let loaded = load_or_create(&path).unwrap();
        assert_eq!(created.public(), loaded.public());
        assert_eq!(created.key_type(), KeyType::Ed25519);
    }

    #[cfg(unix)]
    #[test]
    fn new_key_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.key");
        load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn garbage_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.key");
        std::fs::write(&path, b"not a key").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Decode { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key");
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.key");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn missing_directory_is_a_create_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("relay.key");
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Create { .. }), "{err:?}");
    }
}
