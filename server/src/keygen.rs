//! Fleet key files: `commsctl keygen`, and a keyless server's first start, write a fresh key
//! file that only its owner can read.
//!
//! The key is 32 random bytes from the operating system, written as 64 lowercase hex digits
//! and a newline: the format `comms_fleet::auth::FleetKey::from_file` reads. The file is
//! created with mode 0600 (never world- or group-readable, whatever the umask); an existing
//! file is kept unless the caller forces a new key, which replaces it atomically.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bytes of randomness in a generated key.
pub const KEY_BYTES: usize = 32;
/// The file mode of a key file.
pub const KEY_MODE: u32 = 0o600;

/// Why no key was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeygenError {
    /// The file exists and `force` was not given.
    #[error("{0} already exists: keeping it (pass --force to replace it with a new key)")]
    Exists(PathBuf),
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// A fresh key: [`KEY_BYTES`] random bytes as lowercase hex.
pub fn generate() -> Result<String, KeygenError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| KeygenError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a fresh key to `path` with mode 0600. Refuses to replace an existing file unless
/// `force`; with `force` the new key is written beside it and renamed over it.
pub fn write_key_file(path: &Path, force: bool) -> Result<(), KeygenError> {
    let io = |source| KeygenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let key = generate()?;
    let target = if force {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".new-{}", std::process::id()));
        path.with_file_name(name)
    } else {
        path.to_path_buf()
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_MODE)
        .open(&target)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists if !force => KeygenError::Exists(path.to_path_buf()),
            _ => io(e),
        })?;
    let written = file
        .set_permissions(std::fs::Permissions::from_mode(KEY_MODE))
        .and_then(|()| file.write_all(format!("{key}\n").as_bytes()))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&target);
        return Err(io(e));
    }
    if force {
        if let Err(e) = std::fs::rename(&target, path) {
            let _ = std::fs::remove_file(&target);
            return Err(io(e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use comms_fleet::auth::FleetKey;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_key_is_private_hex_and_loadable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fleet.key");
        write_key_file(&p, false).unwrap();
        assert_eq!(mode(&p), 0o600);
        let text = std::fs::read_to_string(&p).unwrap();
        let hex = text.strip_suffix('\n').unwrap();
        assert_eq!(hex.len(), 2 * KEY_BYTES);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        FleetKey::from_file(&p).unwrap();
        assert_ne!(generate().unwrap(), generate().unwrap());
    }

    #[test]
    fn an_existing_file_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fleet.key");
        std::fs::write(&p, "old\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = write_key_file(&p, false).unwrap_err();
        assert!(matches!(err, KeygenError::Exists(_)), "{err}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old\n");

        write_key_file(&p, true).unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_ne!(std::fs::read_to_string(&p).unwrap(), "old\n");
        FleetKey::from_file(&p).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/fleet.key");
        let err = write_key_file(&p, false).unwrap_err();
        assert!(err.to_string().contains("no/such/dir/fleet.key"), "{err}");
    }
}
