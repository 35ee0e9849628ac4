//! What a plugin file must pass before the serving process maps it: a regular file (a FIFO,
//! a directory or a device is refused without being opened for reading), not writable by
//! other users, read once and copied under its content hash into a directory only this
//! user can write, so that the file at the configured path can change (`cp` over it, a
//! rebuild) without touching the code that runs, and a file changed after it was read
//! cannot be what runs. The loader then maps the copy; the trial load of new copies in a
//! child process (`trial.rs`) comes first.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use authhost_plugin_api::files::kind;
use sha2::{Digest, Sha256};

use crate::config::closest;

/// A plugin larger than this is refused (a real one is a few MiB).
const MAX_LIBRARY_BYTES: u64 = 512 * 1024 * 1024;

/// A library's private copy: where it is and what its content hashes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub path: PathBuf,
    pub digest: [u8; 32],
}

/// The directory private copies go in: `$TMPDIR/authhost-<uid>/plugins`, created mode 0700
/// and refused when it is not this user's own, private directory.
pub fn private_dir() -> Result<PathBuf, String> {
    let uid = euid();
    let base = std::env::temp_dir().join(format!("authhost-{uid}"));
    let dir = base.join("plugins");
    for d in [&base, &dir] {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", d.display())),
        }
        let meta = fs::symlink_metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{} is not a private directory of this user (it must be a directory owned by uid {uid} \
                 with mode 0700); remove it and retry",
                d.display()
            ));
        }
    }
    Ok(dir)
}

/// Checks the file at `path` and copies it into `dir` under its content hash (reusing a
/// copy already there). `allow_writable` skips the check that no other user can write the
/// file or its directory.
pub fn copy_privately(path: &Path, dir: &Path, allow_writable: bool) -> Result<Copy, String> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => missing(path),
        _ => format!("cannot read it: {e}"),
    })?;
    if !meta.is_file() {
        return Err(format!("not a regular file (it is {}); name the plugin's library file", kind(&meta)));
    }
    if !allow_writable {
        refuse_writable(path, &meta)?;
    }
    // Opened without blocking, then checked again: a FIFO swapped in meanwhile is never read.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open it: {e}"))?;
    let opened = file.metadata().map_err(|e| format!("cannot read it: {e}"))?;
    if !opened.is_file() {
        return Err(format!("not a regular file (it is {})", kind(&opened)));
    }
    if opened.len() > MAX_LIBRARY_BYTES {
        return Err(format!("{} bytes: larger than any plugin library", opened.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(|e| format!("cannot read it: {e}"))?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let copy = dir.join(format!("{hex}{}", std::env::consts::DLL_SUFFIX));
    // A copy already there is marked used now, so that no host prunes it meanwhile (one
    // pruned between the check and the mark is written again).
    let reused = fs::File::open(&copy).and_then(|file| file.set_modified(SystemTime::now()));
    if reused.is_err() {
        write_new(&copy, &bytes).map_err(|e| format!("cannot copy it to {}: {e}", copy.display()))?;
    }
    Ok(Copy { path: copy, digest })
}

/// Removes the private copies in `dir` that no host has loaded for `unused_for`, and the
/// partial writes a crash left as old: every build of a plugin a host loads leaves a copy of
/// a few MiB. A host that maps a copy removed this way keeps running it (the mapping holds
/// the file). Best effort: what cannot be removed stays, and the count removed is returned.
pub fn prune(dir: &Path, unused_for: Duration) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.ends_with(std::env::consts::DLL_SUFFIX) || name.contains(".partial-");
        let unused = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|age| age >= unused_for));
        if ours && unused && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Why no plugin library is at `path`, and what to do: the plugins its directory does
/// hold, and the one closest to the name asked for (a typo in `plugin = "tokn"`).
fn missing(path: &Path) -> String {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(entries) = fs::read_dir(dir) else {
        return format!(
            "no such file, and no directory {}; fix plugins.dir or the scheme's path",
            dir.display()
        );
    };
    let mut held: Vec<String> =
        entries.filter_map(|e| plugin_name(&e.ok()?.file_name().to_string_lossy())).collect();
    if held.is_empty() {
        return format!(
            "no such file, and {} holds no plugin library; build the plugins (`cargo build`) or fix plugins.dir / plugin / path",
            dir.display()
        );
    }
    held.sort();
    let asked = path.file_name().and_then(|f| plugin_name(&f.to_string_lossy()));
    let close = asked.as_deref().and_then(|asked| closest(asked, held.iter().map(String::as_str)));
    let list = held.join(", ");
    match close {
        Some(name) => {
            format!(
                "no such file; {} holds the plugins {list} (did you mean plugin = {name:?}?)",
                dir.display()
            )
        }
        None => format!(
            "no such file; {} holds the plugins {list}; fix plugin, plugins.dir or path",
            dir.display()
        ),
    }
}

/// The plugin a library file is, by its name: `token` for `libauthhost_token.so`.
fn plugin_name(file: &str) -> Option<String> {
    let stem = file
        .strip_prefix(std::env::consts::DLL_PREFIX)?
        .strip_suffix(std::env::consts::DLL_SUFFIX)?
        .strip_prefix("authhost_")?;
    (!stem.is_empty()).then(|| stem.replace('_', "-"))
}

/// Writes `bytes` to a new file beside `to` and renames it into place, read-only.
fn write_new(to: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = to.with_extension(format!("partial-{}", std::process::id()));
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o500).open(&partial)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&partial, to)) {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    Ok(())
}

/// Refuses a file, or its directory, that a user other than this one (or root) owns or
/// that group or others can write: whoever can change the file can run code as authhost.
fn refuse_writable(path: &Path, meta: &fs::Metadata) -> Result<(), String> {
    let uid = euid();
    let trusted = |owner: u32| owner == uid || owner == 0;
    let fix = "fix its owner or mode, or set plugins.allow_writable = true";
    if !trusted(meta.uid()) || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by other users (owner uid {}, mode {:o}); {fix}",
            meta.uid(),
            meta.permissions().mode() & 0o7777
        ));
    }
    let dir = fs::canonicalize(path).ok().and_then(|p| p.parent().map(Path::to_owned));
    if let Some(dir) = dir {
        let dir_meta = fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let sticky = dir_meta.mode() & 0o1000 != 0;
        if !trusted(dir_meta.uid()) || (dir_meta.mode() & 0o022 != 0 && !sticky) {
            return Err(format!(
                "its directory {} is writable by other users (owner uid {}, mode {:o}); {fix}",
                dir.display(),
                dir_meta.uid(),
                dir_meta.permissions().mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// The user this process runs as.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// For tests: a file to read.
#[cfg(test)]
fn read_all(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).unwrap();
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, PathBuf) {
        let temp = tempfile::tempdir().unwrap();
        let copies = temp.path().join("copies");
        fs::DirBuilder::new().mode(0o700).create(&copies).unwrap();
        (temp, copies)
    }

    #[test]
    fn a_copy_is_named_by_content_and_survives_the_original_changing() {
        let (temp, copies) = dirs();
        let lib = temp.path().join("libmine.so");
        fs::write(&lib, b"first build").unwrap();
        let first = copy_privately(&lib, &copies, false).unwrap();
        assert_eq!(copy_privately(&lib, &copies, false).unwrap(), first, "same content, same copy");
        fs::write(&lib, b"second build").unwrap();
        let second = copy_privately(&lib, &copies, false).unwrap();
        assert_ne!(second.path, first.path);
        assert_eq!(read_all(&first.path), b"first build");
        assert_eq!(read_all(&second.path), b"second build");
        assert_eq!(fs::metadata(&second.path).unwrap().mode() & 0o777, 0o500);
    }

    #[test]
    fn fifos_directories_and_missing_files_are_refused_without_reading() {
        let (temp, copies) = dirs();
        let fifo = temp.path().join("libfifo.so");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = copy_privately(&fifo, &copies, false).unwrap_err();
        assert!(err.contains("not a regular file (it is a FIFO)"), "{err}");
        let err = copy_privately(temp.path(), &copies, false).unwrap_err();
        assert!(err.contains("it is a directory"), "{err}");
        let err = copy_privately(&temp.path().join("nope.so"), &copies, false).unwrap_err();
        assert!(err.contains("no such file"), "{err}");
    }

    #[test]
    fn a_missing_library_is_answered_with_the_plugins_its_directory_holds() {
        let (temp, copies) = dirs();
        let asked = |file: &str| copy_privately(&temp.path().join(file), &copies, false).unwrap_err();
        let dir = temp.path().display().to_string();
        assert_eq!(
            asked("libauthhost_tokn.so"),
            format!("no such file, and {dir} holds no plugin library; build the plugins (`cargo build`) or fix plugins.dir / plugin / path")
        );
        for name in ["libauthhost_token.so", "libauthhost_x_username.so", "libother.so", "notes.txt"] {
            fs::write(temp.path().join(name), b"").unwrap();
        }
        assert_eq!(
            asked("libauthhost_tokn.so"),
            format!(
                "no such file; {dir} holds the plugins token, x-username (did you mean plugin = \"token\"?)"
            )
        );
        assert_eq!(
            asked("libauthhost_xusername.so"),
            format!("no such file; {dir} holds the plugins token, x-username (did you mean plugin = \"x-username\"?)")
        );
        assert_eq!(
            asked("libauthhost_kerberos.so"),
            format!(
                "no such file; {dir} holds the plugins token, x-username; fix plugin, plugins.dir or path"
            )
        );
        let gone = temp.path().join("gone");
        assert_eq!(
            copy_privately(&gone.join("libauthhost_token.so"), &copies, false).unwrap_err(),
            format!(
                "no such file, and no directory {}; fix plugins.dir or the scheme's path",
                gone.display()
            )
        );
    }

    #[test]
    fn a_file_or_directory_others_can_write_is_refused_unless_allowed() {
        let (temp, copies) = dirs();
        let lib = temp.path().join("libmine.so");
        fs::write(&lib, b"code").unwrap();
        fs::set_permissions(&lib, fs::Permissions::from_mode(0o666)).unwrap();
        let err = copy_privately(&lib, &copies, false).unwrap_err();
        assert!(err.contains("writable by other users") && err.contains("plugins.allow_writable"), "{err}");
        assert!(copy_privately(&lib, &copies, true).is_ok());
        fs::set_permissions(&lib, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = copy_privately(&lib, &copies, false).unwrap_err();
        assert!(err.contains("its directory") && err.contains("writable by other users"), "{err}");
        fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(copy_privately(&lib, &copies, false).is_ok());
    }
}
