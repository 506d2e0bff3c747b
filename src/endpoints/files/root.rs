//! The root directory of a `files` endpoint and the only way its operations touch the disk.
//!
//! ```text
//! "a/b.pdf" ─► RelPath::parse: not empty, not absolute, no `..`, no NUL ─► components
//!           ─► cap-std Dir (the root's fd): every component opened beneath it — openat2
//!              RESOLVE_BENEATH, or one O_NOFOLLOW step at a time on older kernels —, so a
//!              symlink out of the root (also one swapped in after any check) is an error
//!              from the kernel, never a file outside
//! ```
//!
//! Writes are atomic: a temp file `.procos-<uuid>.tmp` in the target's directory, written,
//! fsynced, then renamed onto the target (`overwrite: true`) or moved there with
//! `renameat2(RENAME_NOREPLACE)` (`overwrite: false`: an existing file is never replaced, not even
//! by a racing writer), then the directory fsynced. A reader sees the old file or the new one,
//! never a part; a failed write removes its temp file. The final rename names one component in
//! a directory fd cap-std opened, so it cannot be redirected either.
//!
//! Everything here is blocking; the endpoint runs it on tokio's blocking pool.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use cap_std::fs::{Dir, OpenOptions};

/// What went wrong with a file operation, before the endpoint names the path and the template.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path (or a symlink on its way) leads out of the root.
    #[error("leaves the root{0}")]
    Escape(&'static str),
    /// The path cannot name a file under the root (empty, NUL, the root itself).
    #[error("{0}")]
    Invalid(&'static str),
    /// Nothing is at the path.
    #[error("does not exist")]
    NotFound,
    /// Something already is at the path (`overwrite: false`).
    #[error("already exists")]
    Exists,
    /// The file is larger than `max_size`.
    #[error("is {size} bytes, more than `max_size` ({max} bytes)")]
    TooLarge {
        /// The file's size, or a lower bound when it grew while read.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The path names something of the wrong kind (a directory to read, a file to list).
    #[error("is {0}")]
    WrongKind(&'static str),
    /// Any other error of the operating system.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl FsError {
    /// Sorts an error of cap-std: its escape errors are `PermissionDenied` without an OS error
    /// number (an `EACCES` from the kernel has one), the rest by kind.
    fn from_io(error: io::Error) -> FsError {
        match error.kind() {
            io::ErrorKind::PermissionDenied if error.raw_os_error().is_none() => {
                FsError::Escape(" through a symbolic link or `..`")
            }
            io::ErrorKind::NotFound => FsError::NotFound,
            io::ErrorKind::AlreadyExists => FsError::Exists,
            _ if error.raw_os_error() == Some(libc_eloop()) => {
                FsError::Escape(" through a symbolic link")
            }
            _ => FsError::Io(error),
        }
    }
}

/// `ELOOP`: a symlink where none may be followed (cap-std's fallback resolution opens the last
/// component with `O_NOFOLLOW` in places).
fn libc_eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}

/// A path checked to stay under the root by its text: relative, no `..`, no `.` left, not
/// empty. Symlinks are the kernel's to refuse when it is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath(PathBuf);

impl RelPath {
    /// Checks `text`. `allow_root`: the root itself (`.` or an empty path) is allowed (list).
    pub fn parse(text: &str, allow_root: bool) -> Result<RelPath, FsError> {
        if text.contains('\0') {
            return Err(FsError::Invalid("contains a NUL character"));
        }
        let path = Path::new(text);
        let mut clean = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(FsError::Escape(": `..` components are refused"));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(FsError::Escape(": absolute paths are refused"));
                }
            }
        }
        if clean.as_os_str().is_empty() && !allow_root {
            return Err(FsError::Invalid(
                "names no file (empty, or the root itself)",
            ));
        }
        Ok(RelPath(clean))
    }

    /// The path as given to cap-std (`.` for the root).
    fn as_path(&self) -> &Path {
        if self.0.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &self.0
        }
    }

    /// The last component (lossy UTF-8), e.g. the File variable's file name; empty for the root.
    pub fn file_name(&self) -> String {
        self.0
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The directory part and the last component (`None` for the root).
    fn split(&self) -> Option<(&Path, &std::ffi::OsStr)> {
        Some((self.0.parent()?, self.0.file_name()?))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_path().display())
    }
}

/// One entry of `list`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The file name (lossy UTF-8).
    pub name: String,
    /// `file`, `dir`, `symlink` or `other` (the entry itself; symlinks are not followed).
    pub kind: &'static str,
    /// Size in bytes (of the entry itself).
    pub size: u64,
    /// Last modification.
    pub modified: Option<SystemTime>,
}

/// The root, opened once when the endpoint is built; every operation is relative to its fd.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
    /// The configured path, to tell that the directory behind `dir` was removed or replaced.
    path: PathBuf,
}

impl Root {
    /// Opens `path`, which must be a directory.
    pub fn open(path: &Path) -> io::Result<Root> {
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(Root {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// Is the configured path still the directory opened at the start? An fd keeps a removed
    /// directory (or one a remount hid) alive and empty: every file would look "not found".
    pub fn check(&self) -> Result<(), FsError> {
        let opened = rustix::fs::fstat(&self.dir).map_err(io::Error::from)?;
        let gone = |why: String| {
            FsError::Io(io::Error::other(format!(
                "the root `{}` {why}",
                self.path.display()
            )))
        };
        match rustix::fs::stat(&self.path) {
            Err(e) => Err(gone(format!("cannot be found any more: {e}"))),
            Ok(now) if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino) => Err(gone(
                "is not the directory opened at the start any more (removed, replaced or \
                 remounted): restart or reload procos"
                    .into(),
            )),
            Ok(_) => Ok(()),
        }
    }

    /// The parent directory of `path`, opened beneath the root; created first when `create`.
    fn parent(&self, path: &RelPath, create: bool) -> Result<(Dir, PathBuf), FsError> {
        let Some((parent, name)) = path.split() else {
            return Err(FsError::Invalid("names no file (the root itself)"));
        };
        let dir = if parent.as_os_str().is_empty() {
            self.dir.try_clone()?
        } else {
            match self.dir.open_dir(parent) {
                Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                    // `EEXIST` from a racing creator (or a symlink there) is for `open_dir` to
                    // judge: it opens a directory beneath the root or refuses.
                    match self.dir.create_dir_all(parent) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                            return Err(FsError::from_io(e));
                        }
                        _ => {}
                    }
                    self.dir.open_dir(parent).map_err(FsError::from_io)?
                }
                opened => opened.map_err(FsError::from_io)?,
            }
        };
        Ok((dir, PathBuf::from(name)))
    }

    /// The whole content of a regular file, refused above `max` bytes.
    pub fn read(&self, path: &RelPath, max: u64) -> Result<Vec<u8>, FsError> {
        let file = self.dir.open(path.as_path()).map_err(FsError::from_io)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(FsError::WrongKind("a directory, not a file"));
        }
        if !meta.is_file() {
            return Err(FsError::WrongKind("not a regular file"));
        }
        if meta.len() > max {
            return Err(FsError::TooLarge {
                size: meta.len(),
                max,
            });
        }
        let mut content = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        // One byte more than allowed tells a file that grew since its metadata was read.
        file.take(max.saturating_add(1)).read_to_end(&mut content)?;
        let read = content.len() as u64;
        if read > max {
            return Err(FsError::TooLarge { size: read, max });
        }
        Ok(content)
    }

    /// Writes `content` atomically (see the module docs); creates missing parent directories.
    pub fn write(&self, path: &RelPath, content: &[u8], overwrite: bool) -> Result<(), FsError> {
        let (dir, name) = self.parent(path, true)?;
        if !overwrite && exists(&dir, &name)? {
            return Err(FsError::Exists);
        }
        let temp = TempFile::write(&dir, content)?;
        if overwrite {
            dir.rename(&temp.name, &dir, &name)
                .map_err(FsError::from_io)?;
        } else {
            rename_noreplace(&dir, &temp.name, &dir, &name)?;
        }
        temp.disarm();
        sync_dir(&dir)
    }

    /// Every entry of the directory at `path`, sorted by name, those matching `glob` only.
    pub fn list(
        &self,
        path: &RelPath,
        glob: Option<&glob::Pattern>,
    ) -> Result<Vec<Entry>, FsError> {
        let dir = self
            .dir
            .open_dir(path.as_path())
            .map_err(|e| match e.raw_os_error() {
                Some(n) if n == rustix::io::Errno::NOTDIR.raw_os_error() => {
                    FsError::WrongKind("a file, not a directory")
                }
                _ => FsError::from_io(e),
            })?;
        let mut entries = Vec::new();
        for entry in dir.entries()? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if glob.is_some_and(|g| !g.matches(&name)) {
                continue;
            }
            let meta = entry.metadata()?;
            let file_type = meta.file_type();
            let kind = if file_type.is_symlink() {
                "symlink"
            } else if file_type.is_dir() {
                "dir"
            } else if file_type.is_file() {
                "file"
            } else {
                "other"
            };
            entries.push(Entry {
                name,
                kind,
                size: meta.len(),
                modified: meta.modified().ok().map(|t| t.into_std()),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Renames `from` to `to` (parents of `to` created); `overwrite: false` never replaces.
    pub fn rename(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<(), FsError> {
        let (from_dir, from_name) = self.parent(from, false)?;
        if !exists(&from_dir, &from_name)? {
            return Err(FsError::NotFound);
        }
        let (to_dir, to_name) = self.parent(to, true)?;
        if overwrite {
            from_dir
                .rename(&from_name, &to_dir, &to_name)
                .map_err(FsError::from_io)?;
        } else {
            rename_noreplace(&from_dir, &from_name, &to_dir, &to_name)?;
        }
        sync_dir(&to_dir)?;
        sync_dir(&from_dir)
    }

    /// Removes the file (or symlink) at `path`; a directory is refused.
    pub fn remove(&self, path: &RelPath) -> Result<(), FsError> {
        let (dir, name) = self.parent(path, false)?;
        match dir.symlink_metadata(&name) {
            Ok(meta) if meta.is_dir() => return Err(FsError::WrongKind("a directory")),
            Ok(_) => {}
            Err(e) => return Err(FsError::from_io(e)),
        }
        dir.remove_file(&name).map_err(FsError::from_io)?;
        sync_dir(&dir)
    }
}

/// Is there an entry `name` (of any kind, a dangling symlink too) in `dir`?
fn exists(dir: &Dir, name: &Path) -> Result<bool, FsError> {
    match dir.symlink_metadata(name) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FsError::from_io(e)),
    }
}

/// `renameat2(…, RENAME_NOREPLACE)` of one name in `from` to one name in `to`: both are single
/// components in directories opened beneath the root, and rename follows no symlink, so the
/// kernel's own path walk cannot leave the root here.
pub(super) fn rename_noreplace(
    from: &Dir,
    from_name: &Path,
    to: &Dir,
    to_name: &Path,
) -> Result<(), FsError> {
    rustix::fs::renameat_with(
        from,
        from_name,
        to,
        to_name,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(|e| FsError::from_io(e.into()))
}

/// Makes a rename durable: fsync of the directory that holds the new name.
fn sync_dir(dir: &Dir) -> Result<(), FsError> {
    dir.open(".")?.sync_all()?;
    Ok(())
}

/// A temp file in the target's directory, removed when dropped unless disarmed.
struct TempFile<'a> {
    dir: &'a Dir,
    name: PathBuf,
    armed: bool,
}

impl<'a> TempFile<'a> {
    /// Creates `.procos-<uuid>.tmp` (never an existing file) in `dir`, writes `content` into it
    /// and fsyncs it.
    fn write(dir: &'a Dir, content: &[u8]) -> Result<TempFile<'a>, FsError> {
        let name = PathBuf::from(format!(".procos-{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut file = dir
            .open_with(&name, OpenOptions::new().write(true).create_new(true))
            .map_err(FsError::from_io)?;
        let temp = TempFile {
            dir,
            name,
            armed: true,
        };
        // On an error `temp` is dropped, which removes the file.
        file.write_all(content)?;
        file.sync_all()?;
        Ok(temp)
    }

    /// The temp file became the target: nothing to remove.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the write already failed with the error that matters.
            let _ = self.dir.remove_file(&self.name);
        }
    }
}
