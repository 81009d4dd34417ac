//! Builds the guest workspace (`guest-policies/`: the shipped policies and the test
//! fixtures) for `wasm32-wasip2`, so building the gateway never leaves stale or missing
//! policy modules behind. The modules land in `<target>/guests/wasm32-wasip2/release/`,
//! which the library exposes as `ehrgate::BUILT_GUESTS_DIR`.
//!
//! Set `EHRGATE_SKIP_GUEST_BUILD=1` to skip this (for example to build only the host on a
//! machine without the wasm target); tests that need guests then fail with a clear message.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.parent().unwrap_or(&manifest_dir).to_path_buf();
    let guests = root.join("guest-policies");
    let wit = root.join("wit");
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    let out = target_dir.join(GUEST_TARGET).join("release");
    println!("cargo:rustc-env=EHRGATE_GUEST_DIR={}", out.display());
    println!("cargo:rerun-if-env-changed=EHRGATE_SKIP_GUEST_BUILD");
    println!("cargo:rerun-if-changed={}", wit.display());
    for entry in [
        "Cargo.toml",
        "Cargo.lock",
        "sdk",
        "least-privilege",
        "rate-limit",
        "anomaly",
        "test-fixtures",
    ] {
        let path = guests.join(entry);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    if env::var_os("EHRGATE_SKIP_GUEST_BUILD").is_some() {
        return;
    }
    if let Err(message) = build_guests(&guests, &target_dir) {
        // A build script reports failure by exiting non-zero; the message is what matters.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn build_guests(guests: &Path, target_dir: &Path) -> Result<(), String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(guests)
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            GUEST_TARGET,
        ])
        .arg("--target-dir")
        .arg(target_dir);
    // The outer build's flags and wrappers are for the host target, not for the guests.
    for variable in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(variable);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo to build the guest policies: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the guest policies in `{}` failed (see the output above)\n\
             help: install the target with `rustup target add {GUEST_TARGET}`",
            guests.display()
        ));
    }
    Ok(())
}
