//! Files and child processes of a test: a scratch directory per test process, and a finished
//! command's output laid out for an assertion message.

use std::path::PathBuf;
use std::process::Output;

/// A fresh, empty directory for this test process's files (configs, reports, installed
/// binaries): `$TMPDIR/sluice-NAME-PID`, emptied first if an earlier run with the same PID
/// left it behind.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Exit code, stdout and stderr of a finished command, for the message of a failed assertion.
pub fn output_text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
