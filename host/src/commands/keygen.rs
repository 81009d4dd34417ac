//! `ehrgate keygen`: makes an Ed25519 key pair: by default the one that signs the audit
//! log's checkpoints (the gateway keeps the private key, `[audit] signing_key`; auditors get
//! the public key for `ehrgate audit verify`), or with `--name` another, such as the key
//! policy authors sign modules with (`ehrgate policy sign`).

use std::path::PathBuf;
use std::process::ExitCode;

use ehrgate::audit::keys;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write `<name>.key` (private, mode 0600) and `<name>.pub` (public) into;
    /// created if missing.
    #[arg(long)]
    out: PathBuf,
    /// The key pair's file name stem, for example `policy-signing`.
    #[arg(long, default_value = keys::AUDIT_KEY_NAME)]
    name: String,
    /// Replace key files that already exist (checkpoints signed with the old key then need
    /// the old public key to verify).
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = keys::generate();
    let written = keys::write_key_pair(&args.out, &args.name, &key, args.force)?;
    println!("private key  {} (mode 0600)", written.signing_key.display());
    println!("public key   {}", written.public_key.display());
    println!("key id       {}", written.key_id);
    if args.name == keys::AUDIT_KEY_NAME {
        println!(
            "\nset `signing_key = \"{}\"` in `[audit]`, and give auditors the public key",
            written.signing_key.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
