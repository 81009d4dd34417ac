//! `ehrgate keygen`: makes the Ed25519 key pair that signs the audit log's checkpoints. The
//! gateway keeps the private key (`[audit] signing_key`); auditors get the public key for
//! `ehrgate audit verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use ehrgate::audit::keys;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write `audit-signing.key` (private, mode 0600) and `audit-signing.pub`
    /// (public) into; created if missing.
    #[arg(long)]
    out: PathBuf,
    /// Replace key files that already exist (checkpoints signed with the old key then need
    /// the old public key to verify).
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = keys::generate();
    let written = keys::write_key_pair(&args.out, &key, args.force)?;
    println!("private key  {} (mode 0600)", written.signing_key.display());
    println!("public key   {}", written.public_key.display());
    println!("key id       {}", written.key_id);
    println!(
        "\nset `signing_key = \"{}\"` in `[audit]`, and give auditors the public key",
        written.signing_key.display()
    );
    Ok(ExitCode::SUCCESS)
}
