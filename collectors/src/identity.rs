//! The collector's identity on disk: its Ed25519 key file, and the private files it shares its
//! handling with (the privacy key).
//!
//! The key is made on the municipality's machine (`varde-collector enrol`, or `varde-collector
//! key new` for a key the CERT registers by hand) and never leaves it: the CERT gets the public
//! half. Private files are created with mode 0600 under a temporary name and linked into place,
//! so an existing key is never replaced (a new key is a rotation, not an overwrite), and a file
//! that group or others may read is refused on load.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use varde_core::CollectorKey;
use varde_core::identity::IdentityError;

/// Why a private file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// The file could not be read.
    #[error("{what} {path}: {source}")]
    Read {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file could not be created (or exists already, for a new key).
    #[error("{what} {path}: cannot create: {source}")]
    Create {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others may read or write the file.
    #[error("{what} {path}: mode {mode:o} lets others read it; run chmod 600 on it")]
    Permissions {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file's content is not a key.
    #[error("{what} {path}: {source}")]
    Key {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: IdentityError,
    },
}

const KEY_FILE: &str = "collector key";

/// Reads a private file, refusing one that group or others may access. `Ok(None)` when it does
/// not exist.
pub fn read_private(what: &'static str, path: &Path) -> Result<Option<String>, PrivateFileError> {
    let read = |source| PrivateFileError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PrivateFileError::Permissions {
                what,
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(Some(text))
}

/// Creates `path` with `content` and mode 0600 (its directory too), never replacing a file that
/// exists: written under a temporary name, synced, then hard-linked into place, so a crash
/// leaves either no file or the whole one. `AlreadyExists` when `path` exists.
pub fn create_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(content)?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// Loads the collector's key.
pub fn load_key(path: &Path) -> Result<CollectorKey, PrivateFileError> {
    let text = read_private(KEY_FILE, path)?.ok_or_else(|| PrivateFileError::Read {
        what: KEY_FILE,
        path: path.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file: this collector has no key yet; enrol it with \
             `varde-collector enrol <token>` (docs/collector.md)",
        ),
    })?;
    CollectorKey::from_pem(&text).map_err(|source| PrivateFileError::Key {
        what: KEY_FILE,
        path: path.to_owned(),
        source,
    })
}

/// Makes a new key and writes it to `path` (mode 0600); refuses when `path` exists.
pub fn create_key(path: &Path) -> Result<CollectorKey, PrivateFileError> {
    let (key, pem) = CollectorKey::generate().map_err(|source| PrivateFileError::Key {
        what: KEY_FILE,
        path: path.to_owned(),
        source,
    })?;
    create_private(path, pem.as_bytes()).map_err(|source| PrivateFileError::Create {
        what: KEY_FILE,
        path: path.to_owned(),
        source,
    })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_private_never_replaced_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/collector.key");
        let key = create_key(&path).expect("created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            create_key(&path),
            Err(PrivateFileError::Create { .. })
        ));
        assert_eq!(
            load_key(&path).expect("loads").public_key(),
            key.public_key()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = load_key(&path).expect_err("readable by others");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        let missing = load_key(&dir.path().join("none")).expect_err("missing");
        assert!(
            missing.to_string().contains("varde-collector enrol"),
            "{missing}"
        );
    }
}
