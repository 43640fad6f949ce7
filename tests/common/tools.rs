//! What the end-to-end tests drive besides Pitot, found or provided on first use, so that
//! `cargo test --workspace` passes by itself on a fresh machine with only Rust and Python:
//!
//! - the official Python clients: a virtualenv under `target/pitot-test-venv`, built from
//!   `tests/clients/requirements.txt` (pinned) the first time a test needs it, and rebuilt
//!   when that file changes;
//! - Debian tools (`promtool`, `prometheus-node-exporter`): taken from `PATH`, installed with
//!   `apt-get` when the tests run as root, otherwise the test fails at once naming the one
//!   command that installs them.
//!
//! Each is set up once under a file lock: tests run in parallel, and several test binaries
//! may start at once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn target_dir() -> PathBuf {
    // target/<profile>/deps/<test>-<hash> → target
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

fn locked<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let dir = target_dir();
    std::fs::create_dir_all(&dir).expect("target dir");
    let lock = File::create(dir.join(format!("{name}.lock"))).expect("lock file");
    lock.lock().expect("lock");
    let out = f();
    drop(lock);
    out
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} exited with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The Python interpreter of the test virtualenv, with the pinned official clients.
pub fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let requirements = root.join("tests/clients/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/clients/requirements.txt");
    let venv = target_dir().join("pitot-test-venv");
    let python = venv.join("bin/python");
    let marker = venv.join("requirements.installed");
    locked("pitot-test-venv", || {
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
            return;
        }
        eprintln!(
            "Setting up the Python clients the tests drive in {} (first use) …",
            venv.display()
        );
        let built = run(Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv))
        .and_then(|()| {
            run(Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg("-r")
                .arg(&requirements))
        });
        if let Err(why) = built {
            panic!(
                "The end-to-end tests need the Python clients in tests/clients/requirements.txt \
                 and could not install them ({why}).\nFix: python3 -m venv {v} && {v}/bin/pip \
                 install -r tests/clients/requirements.txt (on Debian, `apt-get install \
                 python3-venv` first if venv is missing)",
                v = venv.display()
            );
        }
        std::fs::write(&marker, &wanted).expect("write the venv marker");
    });
    python
}

fn on_path(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}

/// `cmd` from `PATH`, installing Debian `package` when running as root.
pub fn debian_tool(cmd: &str, package: &str) -> PathBuf {
    if let Some(p) = on_path(cmd) {
        return p;
    }
    let fix = format!("sudo apt-get install -y --no-install-recommends {package}");
    if !nix::unistd::geteuid().is_root() || on_path("apt-get").is_none() {
        panic!("`{cmd}` is not installed. Fix: {fix}");
    }
    locked("pitot-test-apt", || {
        if on_path(cmd).is_some() {
            return;
        }
        eprintln!("Installing the Debian package {package} for `{cmd}` …");
        let installed = run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .or_else(|_| {
            run(Command::new("apt-get").args(["update", "-qq"]))?;
            run(Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends", package])
                .env("DEBIAN_FRONTEND", "noninteractive"))
        });
        if let Err(why) = installed {
            panic!("`{cmd}` is not installed and apt-get failed ({why}). Fix: {fix}");
        }
    });
    on_path(cmd).unwrap_or_else(|| panic!("`{cmd}` is still missing after installing {package}"))
}
