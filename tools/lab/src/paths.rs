//! Where the lab's files live: the repository, the Python venv, per-run output folders.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `tools/lab`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The venv interpreter made by `tests/lab/install.sh`; `LAB_PYTHON` overrides it.
pub fn python() -> PathBuf {
    std::env::var_os("LAB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".lab/venv/bin/python"))
}

pub fn lab_dir() -> PathBuf {
    repo_root().join("tests/lab")
}

pub fn emulator_dir() -> PathBuf {
    repo_root().join("tools/emulator")
}

/// A fresh output folder for one test or demo run: `.lab/out/<name>` (emptied first). It is kept
/// after the run so logs, recordings and reports can be read when something fails.
pub fn run_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::var_os("LAB_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".lab/out"))
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
