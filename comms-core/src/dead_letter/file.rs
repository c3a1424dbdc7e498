//! [`FileDeadLetters`]: dead letters as files on the receiving host (the native backend's place).
//!
//! One JSON file per letter ([`DeadLetter::to_json`]) in one directory, named
//! `<at_ms>-<id>.json` so that a directory listing is in order. Written to a temporary file,
//! fsync'd, renamed, and the directory fsync'd: a letter is either whole or absent after a
//! crash. The directory is created mode 0700 and the files 0600 (a message may hold secrets).
//! Plain files on purpose: `ls` and `jq` read them without any comms tool.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{DeadLetter, DeadLetters, MAX_LETTER_BYTES};
use crate::error::{Error, Result};

/// Dead letters in a directory (see the module docs).
#[derive(Debug, Clone)]
pub struct FileDeadLetters {
    dir: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::transport("file", format!("{what} {}", path.display()), true, e)
}

/// A file-name-safe form of an id (letters, digits, `-`, `_`; anything else `_`).
pub(crate) fn file_safe(id: &str) -> String {
    id.chars()
        .take(120)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Create `dir` (and its parents) with mode 0700 where this platform has modes.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| io("cannot create the directory", dir, e))
}

/// Write `bytes` to `path` whole or not at all (temporary file, rename), mode 0600; with
/// `sync`, the file and the directory are fsync'd too (it then survives a host crash, not
/// only a process crash).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .map_err(|e| io("cannot write", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| if sync { file.sync_all() } else { Ok(()) })
        .map_err(|e| io("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot rename into", path, e))?;
    if sync {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl FileDeadLetters {
    /// The letters in `dir` (created, mode 0700, on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every letter file, in name (= time) order. A missing directory holds none.
    fn files(&self) -> Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("cannot read the directory", &self.dir, e)),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        Ok(files)
    }

    fn read(path: &Path) -> Result<DeadLetter> {
        let meta = std::fs::metadata(path).map_err(|e| io("cannot read", path, e))?;
        if meta.len() > MAX_LETTER_BYTES as u64 {
            return Err(Error::TooLarge {
                size: usize::try_from(meta.len()).unwrap_or(usize::MAX),
                max: MAX_LETTER_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(|e| io("cannot read", path, e))?;
        DeadLetter::from_json(&bytes)
            .map_err(|e| Error::invalid("dead letter", format!("{}: {e}", path.display())))
    }

    fn list_blocking(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut letters = Vec::new();
        for path in self.files()? {
            if letters.len() >= limit {
                break;
            }
            match Self::read(&path) {
                Ok(l) => letters.push(l),
                // Not ours, or damaged: shown as a warning, never a reason to hide the rest.
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable dead letter"),
            }
        }
        Ok(letters)
    }

    fn take_blocking(&self, id: &str) -> Result<Option<DeadLetter>> {
        let suffix = format!("-{}.json", file_safe(id));
        for path in self.files()? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(&suffix) {
                continue;
            }
            let Ok(letter) = Self::read(&path) else {
                continue;
            };
            if letter.id == id {
                std::fs::remove_file(&path).map_err(|e| io("cannot remove", &path, e))?;
                return Ok(Some(letter));
            }
        }
        Ok(None)
    }

    fn purge_blocking(&self) -> Result<usize> {
        let mut n = 0;
        for path in self.files()? {
            std::fs::remove_file(&path).map_err(|e| io("cannot remove", &path, e))?;
            n += 1;
        }
        Ok(n)
    }

    fn put_blocking(&self, letter: &DeadLetter) -> Result<()> {
        create_private_dir(&self.dir)?;
        let name = format!("{:013}-{}.json", letter.at_ms, file_safe(&letter.id));
        write_atomically(&self.dir.join(name), &letter.to_json()?, true)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::transport("file", "a file task failed", true, e))?
}

#[async_trait]
impl DeadLetters for FileDeadLetters {
    async fn put(&self, letter: &DeadLetter) -> Result<()> {
        let (me, letter) = (self.clone(), letter.clone());
        blocking(move || me.put_blocking(&letter)).await
    }
    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let me = self.clone();
        blocking(move || me.list_blocking(limit)).await
    }
    async fn take(&self, id: &str) -> Result<Option<DeadLetter>> {
        let (me, id) = (self.clone(), id.to_owned());
        blocking(move || me.take_blocking(&id)).await
    }
    async fn purge(&self) -> Result<usize> {
        let me = self.clone();
        blocking(move || me.purge_blocking()).await
    }
    fn place(&self) -> String {
        format!("directory {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Address, Destination};
    use crate::message::Message;

    #[tokio::test]
    async fn letters_survive_as_private_files() {
        let tmp = std::env::temp_dir().join(format!("comms-dlq-{}", crate::MessageId::new()));
        let place = FileDeadLetters::new(tmp.join("dead-letters"));
        assert!(place.list(10).await.unwrap().is_empty());
        let msg = Message::new("WORK", Destination::Service("s".into())).unwrap();
        let letter = DeadLetter::new(&msg, Address::new("n1", "s").unwrap(), "boom", 5);
        place.put(&letter).await.unwrap();
        // A second handle (another process) sees it.
        let other = FileDeadLetters::new(tmp.join("dead-letters"));
        assert_eq!(other.list(10).await.unwrap(), vec![letter.clone()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = other.files().unwrap().remove(0);
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(other.dir()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        std::fs::write(other.dir().join("0-junk.json"), b"not json").unwrap();
        assert_eq!(other.list(10).await.unwrap().len(), 1);
        assert_eq!(other.take(&letter.id).await.unwrap(), Some(letter));
        assert_eq!(other.purge().await.unwrap(), 1, "the junk file");
        std::fs::remove_dir_all(tmp).unwrap();
    }
}
