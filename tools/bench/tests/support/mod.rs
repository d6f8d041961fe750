//! Shared by the bench's lab tests.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

/// The gateway binary next to the test's own (same target folder and profile), or
/// `GATEWAY_BIN`.
pub fn gateway_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("GATEWAY_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>/jitsi-sip-gateway
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .context("no target folder")?
        .join("jitsi-sip-gateway");
    ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --bin jitsi-sip-gateway` first (or set GATEWAY_BIN)",
        bin.display()
    );
    Ok(bin)
}
