//! Python tools for tests (the Kloudless SDK, an OpenAPI validator), each in its own virtualenv
//! under `CARGO_TARGET_TMPDIR`: created on first use, reused afterwards. Creating one needs
//! `python3` and the PyPI registry; failure fails the test that asked (never a silent skip).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `command` to completion; `Err` says what failed, with its output.
pub fn run(what: &str, command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: could not start {command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what}: {command:?} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn importable(python: &Path, module: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The python of virtualenv `name`, after installing `requirement` into it unless `module`
/// already imports.
pub fn venv_with(name: &str, requirement: &str, module: &str) -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let python = dir.join("bin").join("python");
    if importable(&python, module) {
        return Ok(python);
    }
    run(
        "creating the virtualenv",
        Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg("--clear")
            .arg(&dir),
    )?;
    run(
        &format!("installing {requirement}"),
        Command::new(dir.join("bin").join("pip")).args(["install", "--quiet", requirement]),
    )?;
    if !importable(&python, module) {
        return Err(format!(
            "{} cannot import {module} after installing {requirement}",
            python.display()
        ));
    }
    Ok(python)
}
