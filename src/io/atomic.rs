//! Atomic file output: write to a temporary file beside the destination, sync it, then rename it
//! over the destination, so a reader never sees a half-written file and a failed or interrupted
//! run leaves no partial output behind.
//!
//! Temporary files in flight are recorded in a process-wide registry so that the CLI's Ctrl-C
//! handler can delete them with [`remove_all_temps`] before the process exits (an exiting
//! process does not run destructors).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// Writes `path` atomically: `f` writes the content into a buffered temporary file in the same
/// directory (named `.<file name>.superres-<pid>-<n>.tmp`); on success the file is flushed, synced
/// to disk and renamed over `path`. If `f` or any later step fails (or panics), the temporary file
/// is removed and `path` is left untouched, whether it existed before or not.
///
/// Missing parent directories are not created: that is the caller's decision. An unwritable or
/// missing directory gives [`Error::Io`] naming `path`. The new file gets default permissions for
/// a newly created file; if `path` was a symbolic link, the link itself is replaced.
pub fn write_atomic(path: &Path, f: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    let (tmp, file) = TempFile::create(path)?;
    // Declared after `tmp`, so on an early return or panic the file is closed before the guard
    // removes it (Windows cannot remove an open file).
    let mut writer = BufWriter::new(file);
    f(&mut writer)?;
    let file = writer.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    // Data must reach the disk before the rename makes it visible; otherwise a crash could leave
    // an empty or partial file under the final name.
    file.sync_all().map_err(|e| Error::io(path, e))?;
    drop(file);
    tmp.persist()
}

/// Deletes every temporary file that a [`write_atomic`] call in this process currently has in
/// flight, and makes every later [`write_atomic`] fail with [`Error::Interrupted`] before it
/// creates anything. Meant for a Ctrl-C handler just before it exits the process: no temporary
/// file can appear between this call and the exit.
pub fn remove_all_temps() {
    REGISTRY.remove_all();
}

/// Removes the temporary files that killed runs (SIGKILL, power loss: no handler ran) left beside
/// the given destinations, and returns how many went. Only temporaries of these destinations are
/// touched, and never this process's own, so shards of one batch writing into one directory
/// (each owning its own outputs) do not disturb each other. Each directory is listed once.
///
/// Liveness of the writer's process id is deliberately not checked: containers on different
/// machines sharing one output directory reuse the same small pids. Running the same outputs
/// twice at once is the caller's mistake; it costs the other run a failed rename, never a
/// corrupt file.
pub fn remove_stale_temps<'a>(dests: impl IntoIterator<Item = &'a Path>) -> Result<usize> {
    use std::collections::{BTreeMap, HashSet};
    let mut by_dir: BTreeMap<PathBuf, HashSet<std::ffi::OsString>> = BTreeMap::new();
    for d in dests {
        let (Some(name), dir) = (d.file_name(), d.parent().filter(|p| !p.as_os_str().is_empty())) else {
            continue;
        };
        by_dir.entry(dir.unwrap_or(Path::new(".")).to_path_buf()).or_default().insert(name.to_os_string());
    }
    let own = std::process::id();
    let mut removed = 0;
    for (dir, names) in by_dir {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            // Not created yet: nothing can be stale in it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for e in entries {
            let e = e.map_err(|e| Error::io(&dir, e))?;
            let file = e.file_name();
            let Some((dest, pid)) = file.to_str().and_then(parse_temp_name) else { continue };
            if pid != own && names.contains(std::ffi::OsStr::new(dest)) {
                match fs::remove_file(e.path()) {
                    Ok(()) => removed += 1,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(Error::io(e.path(), err)),
                }
            }
        }
    }
    Ok(removed)
}

/// As [`remove_stale_temps`] for every destination in `dir` whose file name `owns` accepts (for
/// outputs whose names follow a pattern but whose number is not known in advance).
pub fn remove_stale_temps_in(dir: &Path, owns: impl Fn(&str) -> bool) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut dests = Vec::new();
    for e in entries {
        let file = e.map_err(|e| Error::io(dir, e))?.file_name();
        if let Some((dest, _)) = file.to_str().and_then(parse_temp_name).filter(|(d, _)| owns(d)) {
            dests.push(dir.join(dest));
        }
    }
    remove_stale_temps(dests.iter().map(PathBuf::as_path))
}

/// `.<dest>.superres-<pid>-<n>.tmp` -> (dest, pid), the inverse of [`temp_path_for`].
fn parse_temp_name(name: &str) -> Option<(&str, u32)> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (dest, tail) = inner.rsplit_once(".superres-")?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    Some((dest, pid.parse().ok()?)).filter(|(d, _)| !d.is_empty())
}

/// Forgets a temporary path once it has been renamed into place or removed.
pub(crate) fn unregister(path: &Path) {
    REGISTRY.unregister(path);
}

static REGISTRY: Registry = Registry::new();

/// Distinguishes temporary files of concurrent writes to the same destination in one process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// The set of temporary paths in flight. A type rather than bare statics so tests can use a
/// private instance without deleting the temporary files of tests running beside them.
struct Registry {
    paths: Mutex<Paths>,
}

struct Paths {
    live: Vec<PathBuf>,
    /// Set by `remove_all`: no new temporary file may be created after it.
    closed: bool,
}

impl std::ops::Deref for Paths {
    type Target = Vec<PathBuf>;
    fn deref(&self) -> &Vec<PathBuf> {
        &self.live
    }
}

impl std::ops::DerefMut for Paths {
    fn deref_mut(&mut self) -> &mut Vec<PathBuf> {
        &mut self.live
    }
}

impl Registry {
    const fn new() -> Self {
        Registry { paths: Mutex::new(Paths { live: Vec::new(), closed: false }) }
    }

    fn lock(&self) -> MutexGuard<'_, Paths> {
        // A panic while holding the lock cannot leave the list inconsistent (each operation is a
        // single push or remove), so a poisoned lock is still usable; the Ctrl-C path must not
        // panic.
        self.paths.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn register(&self, path: &Path) {
        self.lock().push(path.to_path_buf());
    }

    fn unregister(&self, path: &Path) {
        let mut paths = self.lock();
        if let Some(i) = paths.iter().rposition(|p| p == path) {
            paths.swap_remove(i);
        }
    }

    fn remove_all(&self) {
        let mut paths = self.lock();
        paths.closed = true;
        for path in paths.drain(..) {
            // Best effort: the file may not have been created yet, or already renamed.
            let _ = fs::remove_file(&path);
        }
    }
}

/// A registered temporary path that is removed on drop unless it was renamed into place.
struct TempFile {
    tmp: PathBuf,
    dest: PathBuf,
    persisted: bool,
}

impl TempFile {
    fn create(dest: &Path) -> Result<(TempFile, File)> {
        let mut tries = 0;
        loop {
            let tmp = temp_path_for(dest)?;
            // Created and registered under the registry lock, so a concurrent `remove_all_temps`
            // either sees and deletes this file or has already closed the registry.
            let mut paths = REGISTRY.lock();
            if paths.closed {
                return Err(Error::Interrupted);
            }
            // create_new: never clobber a file that happens to have the same name. One can exist
            // with our own pid (a killed earlier run in a container, where pids repeat, is not
            // stale to `remove_stale_temps`): take the next number.
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => {
                    paths.push(tmp.clone());
                    return Ok((TempFile { tmp, dest: dest.to_path_buf(), persisted: false }, file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 1000 => tries += 1,
                Err(e) => {
                    drop(paths);
                    let dir = tmp.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                    let reason = format!("cannot create a temporary file in '{}': {e}", dir.display());
                    return Err(Error::io(dest, io::Error::new(e.kind(), reason)));
                }
            }
        }
    }

    fn persist(mut self) -> Result<()> {
        fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.persisted = true;
        unregister(&self.tmp);
        sync_parent_dir(&self.dest);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.tmp);
            unregister(&self.tmp);
        }
    }
}

/// `dir/.<name>.superres-<pid>-<n>.tmp` beside `dest`. Hidden so that directory listings and
/// globs over the output directory do not pick up half-written files.
fn temp_path_for(dest: &Path) -> Result<PathBuf> {
    let name = dest.file_name().ok_or_else(|| {
        Error::io(dest, io::Error::new(io::ErrorKind::InvalidInput, "output path does not name a file"))
    })?;
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".superres-{}-{n}.tmp", std::process::id()));
    Ok(match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(tmp_name),
        _ => PathBuf::from(tmp_name),
    })
}

/// Makes the rename itself durable. Best effort: some file systems do not allow syncing a
/// directory, and the data is already safe in the file.
fn sync_parent_dir(dest: &Path) {
    #[cfg(unix)]
    {
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = dest;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn success_writes_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        write_atomic(&dest, |w| w.write_all(b"hello").map_err(|e| Error::io(&dest, e))).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"hello");
        assert_eq!(entries(dir.path()), ["out.bin"]);
    }

    #[test]
    fn replaces_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        fs::write(&dest, b"old content").unwrap();
        write_atomic(&dest, |w| w.write_all(b"new").map_err(|e| Error::io(&dest, e))).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(entries(dir.path()), ["out.bin"]);
    }

    #[test]
    fn failure_in_writer_removes_temp_and_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        fs::write(&dest, b"old content").unwrap();
        let err = write_atomic(&dest, |w| {
            w.write_all(&[7u8; 100_000]).unwrap();
            Err(Error::Usage("boom".into()))
        })
        .unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
        assert_eq!(fs::read(&dest).unwrap(), b"old content");
        assert_eq!(entries(dir.path()), ["out.bin"]);
    }

    #[test]
    fn failure_without_existing_file_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let _ = write_atomic(&dest, |_| Err(Error::Interrupted)).unwrap_err();
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn panic_in_writer_removes_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let result = std::panic::catch_unwind(|| {
            let _ = write_atomic(&dest, |w| {
                w.write_all(b"partial").unwrap();
                w.flush().unwrap();
                panic!("writer bug");
            });
        });
        assert!(result.is_err());
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn missing_directory_is_io_error_naming_destination() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("no-such-dir").join("out.bin");
        let err = write_atomic(&dest, |_| Ok(())).unwrap_err();
        match &err {
            Error::Io { path, source } => {
                assert_eq!(path, &dest);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Io error, got {other:?}"),
        }
        assert!(err.to_string().contains("no-such-dir"), "{err}");
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn destination_is_a_directory_fails_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("taken");
        fs::create_dir(&dest).unwrap();
        let err = write_atomic(&dest, |w| w.write_all(b"x").map_err(|e| Error::io(&dest, e))).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(entries(dir.path()), ["taken"]);
    }

    #[cfg(unix)]
    #[test]
    fn read_only_directory_fails_without_leftovers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        // Root ignores directory permissions; nothing to test then.
        if File::create(ro.join("probe")).is_ok() {
            let _ = fs::remove_file(ro.join("probe"));
            return;
        }
        let dest = ro.join("out.bin");
        let err = write_atomic(&dest, |_| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(entries(&ro).is_empty());
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn path_without_file_name_is_rejected() {
        let err = write_atomic(Path::new("/"), |_| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
    }

    #[test]
    fn temp_name_is_hidden_and_beside_destination() {
        let tmp = temp_path_for(Path::new("a/b/pic.png")).unwrap();
        assert_eq!(tmp.parent(), Some(Path::new("a/b")));
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".pic.png.superres-"), "{name}");
        assert!(name.ends_with(".tmp"), "{name}");
        let bare = temp_path_for(Path::new("pic.png")).unwrap();
        assert_eq!(bare.parent(), Some(Path::new("")));
        assert_ne!(temp_path_for(Path::new("pic.png")).unwrap(), bare);
    }

    #[test]
    fn temp_is_registered_while_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        write_atomic(&dest, |_| {
            let in_flight = REGISTRY.lock().iter().any(|p| p.parent() == Some(dir.path()));
            assert!(in_flight);
            Ok(())
        })
        .unwrap();
        assert!(!REGISTRY.lock().iter().any(|p| p.parent() == Some(dir.path())));
    }

    #[test]
    fn registry_remove_all_deletes_files() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new();
        let a = dir.path().join(".a.tmp");
        let b = dir.path().join(".b.tmp");
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        registry.register(&a);
        registry.register(&b);
        registry.register(&dir.path().join(".never-created.tmp"));
        registry.unregister(&b);
        registry.remove_all();
        assert_eq!(entries(dir.path()), [".b.tmp"]);
        assert!(registry.lock().is_empty());
    }

    #[test]
    fn temp_names_already_taken_are_skipped() {
        // Files left by an earlier process with our pid (containers repeat pids) under the next
        // numbers this process would use.
        let dir = tempfile::tempdir().unwrap();
        let next = NEXT_TEMP.load(Ordering::Relaxed);
        for n in next..next + 20 {
            fs::write(dir.path().join(format!(".a.png.superres-{}-{n}.tmp", std::process::id())), b"x")
                .unwrap();
        }
        let (tmp, _file) = TempFile::create(&dir.path().join("a.png")).unwrap();
        assert_eq!(fs::read(&tmp.tmp).unwrap(), b"", "a fresh file, not one of the old ones");
    }

    #[test]
    fn stale_temps_of_own_destinations_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let keep = [
            ".b.png.superres-77-0.tmp".to_string(), // someone else's destination
            format!(".a.png.superres-{}-3.tmp", std::process::id()), // our own, in flight
            ".a.png.superres-x-0.tmp".into(),       // not our name pattern
            "a.png".into(),
        ];
        for n in keep.iter().chain([&".a.png.superres-77-0.tmp".into(), &".a.png.superres-5-12.tmp".into()]) {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        let a = dir.path().join("a.png");
        let missing = dir.path().join("nope/c.png");
        assert_eq!(remove_stale_temps([a.as_path(), missing.as_path()]).unwrap(), 2);
        let mut want = keep.to_vec();
        want.sort();
        assert_eq!(entries(dir.path()), want);
        let (tmp, _file) = TempFile::create(&a).unwrap();
        assert_eq!(
            parse_temp_name(tmp.tmp.file_name().unwrap().to_str().unwrap()),
            Some(("a.png", std::process::id()))
        );
    }
}
