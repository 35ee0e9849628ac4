//! The trial load: before the serving process maps a library it has not loaded yet, a
//! child process (`authhost trial-load`, this same executable) maps it and builds every
//! scheme the config makes from it. A library that kills the child (a truncated file's
//! SIGBUS, a constructor that aborts or exits) is refused, naming the signal, and never
//! reaches the host. A library the child merely reports an error for goes on to the
//! host's own load, which reports it as usual.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::library::Copy;

/// The exit status of a trial that loaded the library and found it wanting (the host's
/// own load says why); any other non-zero status is a crash.
pub const REPORTED: i32 = 3;

/// How long a trial may take.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Digests of copies this process has seen pass a trial.
static PASSED: Mutex<Option<HashSet<[u8; 32]>>> = Mutex::new(None);

/// Runs the trial for `copy` of the library configured at `original` (with the schemes
/// `config_file` makes from it; without a config, only the library is mapped), unless a
/// copy with the same content passed already. Skipped when this process is not the
/// `authhost` executable (an embedding program or a test that loads plugins in-process).
pub fn run(config_file: Option<&Path>, original: &Path, copy: &Copy) -> Result<(), String> {
    let passed =
        |set: &mut Option<HashSet<[u8; 32]>>| set.get_or_insert_with(HashSet::new).contains(&copy.digest);
    if passed(&mut PASSED.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(());
    }
    let exe = match std::env::current_exe() {
        Ok(exe) if exe.file_stem().is_some_and(|s| s == "authhost") => exe,
        _ => {
            debug!(library = %original.display(), "not the authhost executable: no trial load");
            return Ok(());
        }
    };
    let mut command = Command::new(exe);
    command.arg("trial-load").arg("--copy").arg(&copy.path);
    if let Some(config_file) = config_file {
        command.arg("--config").arg(config_file).arg("--library").arg(original);
    }
    let mut child = command
        .env("AUTHHOST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the trial load: {e}"))?;
    let deadline = Instant::now() + TRIAL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "loading it did not finish within {}s in a trial process; refused",
                    TRIAL_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot watch the trial load: {e}")),
        }
    };
    if status.success() || status.code() == Some(REPORTED) {
        if status.success() {
            PASSED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(HashSet::new)
                .insert(copy.digest);
        }
        return Ok(());
    }
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut said);
    }
    let said = said.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!(" (it said: {})", l.trim()));
    Err(match status.signal() {
        Some(signal) => format!(
            "loading it crashed a trial process with signal {signal} ({}); refused, the serving host never mapped it{}",
            signal_name(signal),
            said.unwrap_or_default()
        ),
        None => format!(
            "loading it ended a trial process with exit status {}; refused, the serving host never mapped it{}",
            status.code().unwrap_or(-1),
            said.unwrap_or_default()
        ),
    })
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGBUS => "SIGBUS",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        _ => "a fatal signal",
    }
}
