//! `ehrgate policy`: tools for policy authors.
//!
//! - `test MODULE.wasm FIXTURES.toml` runs fixture cases through the gateway's real request
//!   path (canonicalize, classify, build the canonical request) and the real engine, prints a
//!   pass/fail table with what differed, and exits non-zero when any case fails.
//! - `sign MODULE.wasm --key KEY` writes the detached signature `MODULE.wasm.sig` that
//!   `[sandbox] require_signed_modules` asks for.
//! - `new NAME` creates a ready-to-build policy crate from `examples/policy-template/`.
//! - `inspect MODULE.wasm` shows what a module targets and imports, its size and signature.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use ehrgate::engine::SandboxSettings;
use ehrgate::engine::fixture::{CaseResult, FixtureRunner, load_fixture_file};
use sha2::Digest;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(clap::Subcommand)]
enum PolicyCommand {
    /// Run fixture cases against a compiled policy module.
    Test(TestArgs),
    /// Sign a compiled module (writes `MODULE.sig`).
    Sign(SignArgs),
    /// Create a policy crate from the template (a worked rule and its fixture cases).
    New(NewArgs),
    /// Show a module's world, imports, exports, size and signature.
    Inspect(InspectArgs),
}

#[derive(clap::Args)]
struct NewArgs {
    /// The crate name, for example `ward-only` (lower case, digits and `-`).
    name: String,
    /// The directory to create the crate in (default: `./NAME`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The ehrgate sdk crate the policy builds against (default: the sdk in the source tree
    /// this binary was built from).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-policies/sdk"))]
    sdk: PathBuf,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// The compiled component.
    module: PathBuf,
    /// Public keys to check the module's signature against.
    #[arg(long)]
    trusted: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct SignArgs {
    /// The compiled component to sign.
    module: PathBuf,
    /// The private key (`ehrgate keygen --name policy-signing --out DIR`).
    #[arg(long)]
    key: PathBuf,
}

#[derive(clap::Args)]
struct TestArgs {
    /// The compiled component (`target/wasm32-wasip2/release/<crate>.wasm`).
    module: PathBuf,
    /// The fixture file (TOML: a `config` table and `[[case]]` entries).
    fixtures: PathBuf,
    /// Per-call deadline in milliseconds (the gateway's default is 5; fixtures run on
    /// developer machines, so the default here is roomier).
    #[arg(long, default_value_t = 100)]
    deadline_ms: u64,
    /// Print only failing cases.
    #[arg(long)]
    failures_only: bool,
    /// Print one JSON object per case (name, passed, expected, actual, detail) instead of
    /// the table.
    #[arg(long)]
    json: bool,
}

pub fn run_command(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Test(args) => test(args),
        PolicyCommand::Sign(args) => sign(args),
        PolicyCommand::New(args) => new(args),
        PolicyCommand::Inspect(args) => inspect(args),
    }
}

/// The template, embedded so the command works wherever the binary is installed. The
/// `.gitignore` is kept as `gitignore` in the repository so that it does not apply there.
const TEMPLATE: [(&str, &str); 4] = [
    (
        ".gitignore",
        include_str!("../../../examples/policy-template/gitignore"),
    ),
    (
        "Cargo.toml",
        include_str!("../../../examples/policy-template/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../examples/policy-template/src/lib.rs"),
    ),
    (
        "cases.toml",
        include_str!("../../../examples/policy-template/cases.toml"),
    ),
];

fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let valid = !args.name.is_empty()
        && args.name.len() <= 64
        && args.name.starts_with(|c: char| c.is_ascii_lowercase())
        && args
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        anyhow::bail!(
            "`{}` is not a crate name this command makes\nhelp: use lower-case letters, digits and `-`, starting with a letter",
            args.name
        );
    }
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        anyhow::bail!(
            "`{}` already exists\nhelp: choose another name or `--dir`",
            dir.display()
        );
    }
    let sdk = args.sdk.canonicalize().map_err(|e| {
        anyhow!(
            "cannot find the sdk at `{}` ({e})\nhelp: pass `--sdk PATH/guest-policies/sdk`",
            args.sdk.display()
        )
    })?;
    let crate_name = args.name.replace('-', "_");
    for (file, text) in TEMPLATE {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = text
            .replace("{name}", &args.name)
            .replace("{crate_name}", &crate_name)
            .replace("{sdk}", &sdk.display().to_string());
        std::fs::write(&path, text)
            .map_err(|e| anyhow!("cannot write `{}`: {e}", path.display()))?;
    }
    println!("created {}", dir.display());
    println!("  cd {}", dir.display());
    println!("  cargo test                                    # the rule's unit tests, natively");
    println!("  cargo build --release --target wasm32-wasip2");
    println!("  ehrgate policy test target/wasm32-wasip2/release/{crate_name}.wasm cases.toml");
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    use ehrgate::engine::signature;
    let bytes = read_component(&args.module)?;
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, &bytes).map_err(|e| {
        anyhow!(
            "`{}` is not a WebAssembly component: {e}",
            args.module.display()
        )
    })?;
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports: Vec<String> = ty
        .exports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let targets = imports
        .iter()
        .find_map(|i| {
            i.strip_prefix("ehrgate:policy/")
                .and_then(|rest| rest.split_once('@'))
        })
        .map_or(
            "no ehrgate:policy import (an ehrgate policy imports its state or log)".to_owned(),
            |(_, v)| format!("ehrgate:policy/policy@{v}"),
        );
    println!("module   {}", args.module.display());
    println!("size     {} bytes", bytes.len());
    println!("sha256   {}", hex::encode(sha2::Sha256::digest(&bytes)));
    println!("world    {targets}");
    println!("exports  {}", exports.join(", "));
    println!("imports");
    for import in &imports {
        let note = if import.starts_with("wasi:") {
            "  (linked to traps: the sandbox has no WASI)"
        } else {
            ""
        };
        println!("  {import}{note}");
    }
    let trusted = args
        .trusted
        .iter()
        .map(|p| ehrgate::audit::keys::read_public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let sig_path = signature::signature_path(&args.module);
    // With `--trusted`, a signature that does not verify is a failure (exit 1), so a
    // release script can gate on it.
    let verified = match std::fs::read_to_string(&sig_path) {
        Err(_) => {
            println!("signed   no ({} not found)", sig_path.display());
            trusted.is_empty()
        }
        Ok(text) => match serde_json::from_str::<signature::ModuleSignature>(&text) {
            Err(e) => {
                println!("signed   unreadable signature file: {e}");
                false
            }
            Ok(sig) if trusted.is_empty() => {
                println!(
                    "signed   by key {} (not checked: pass --trusted KEY.pub)",
                    sig.key_id
                );
                true
            }
            Ok(sig)
                if !trusted
                    .iter()
                    .any(|k| ehrgate::audit::keys::key_id(k) == sig.key_id) =>
            {
                println!(
                    "signed   by key {}, which is none of the --trusted keys",
                    sig.key_id
                );
                false
            }
            Ok(sig) => match signature::verify(&bytes, &sig, &trusted) {
                Ok(key) => {
                    println!("signed   by key {key}, verified");
                    true
                }
                Err(reason) => {
                    println!("signed   by key {}, but the module {reason}", sig.key_id);
                    false
                }
            },
        },
    };
    Ok(if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The bytes of the component at `path`, refusing what is not one: a core module (built
/// for `wasm32-unknown-unknown` or `wasm32-wasip1`) or not WebAssembly at all.
fn read_component(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow!("cannot read `{}`: {e}", path.display()))?;
    // The binary header: `\0asm`, then a version and a layer; layer 1 is a component
    // (component model binary format, "Component Definitions").
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(bytes),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(anyhow!(
            "`{}` is a core WebAssembly module, not a component\nhelp: build with `cargo build --release --target wasm32-wasip2`, which makes a component",
            path.display()
        )),
        _ => Err(anyhow!(
            "`{}` is not WebAssembly\nhelp: give the `.wasm` file that `cargo build --release --target wasm32-wasip2` writes under `target/wasm32-wasip2/release/`",
            path.display()
        )),
    }
}

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let key = ehrgate::audit::keys::read_signing_key(&args.key)?;
    let bytes = read_component(&args.module)?;
    let signature = ehrgate::engine::signature::sign(&bytes, &key);
    let path = ehrgate::engine::signature::signature_path(&args.module);
    std::fs::write(&path, serde_json::to_string_pretty(&signature)? + "\n")
        .map_err(|e| anyhow!("cannot write `{}`: {e}", path.display()))?;
    println!(
        "signed {} (sha256 {})",
        args.module.display(),
        signature.sha256
    );
    println!("signature {} by key {}", path.display(), signature.key_id);
    Ok(ExitCode::SUCCESS)
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let fixtures = load_fixture_file(&args.fixtures).map_err(|e| anyhow!("{e}"))?;
    let settings = SandboxSettings {
        deadline_ms: args.deadline_ms,
        ..SandboxSettings::default()
    };
    let runner = FixtureRunner::new(settings)?;
    // One message for a module that cannot load at all, not one per case.
    runner
        .check_module(&args.module, &fixtures)
        .map_err(|e| anyhow!("{e}"))?;
    let results = runner.run(&args.module, &fixtures);
    let failed = results.iter().filter(|r| !r.passed).count();
    match write_results(&results, &args) {
        Ok(()) => {}
        // A reader that stopped early (`| head`) is not a failure of the run.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
        Err(error) => return Err(error.into()),
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write_results(results: &[CaseResult], args: &TestArgs) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let shown = results.iter().filter(|r| !args.failures_only || !r.passed);
    if args.json {
        for result in shown {
            writeln!(out, "{}", serde_json::to_string(result)?)?;
        }
        return out.flush();
    }
    write_table(&mut out, shown.collect())?;
    let failed: Vec<&CaseResult> = results.iter().filter(|r| !r.passed).collect();
    for result in &failed {
        writeln!(out, "\nFAILED {}\n{}", result.name, result.detail)?;
    }
    writeln!(
        out,
        "\n{} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    )?;
    out.flush()
}

/// The longest case name shown in full in the table; longer ones end in `…`.
const NAME_COLUMN: usize = 70;

fn write_table(out: &mut impl Write, shown: Vec<&CaseResult>) -> io::Result<()> {
    let name_width = shown
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, NAME_COLUMN);
    let expected_width = shown
        .iter()
        .map(|r| r.expected.len())
        .max()
        .unwrap_or(8)
        .max(8);
    writeln!(
        out,
        "{:<6} {:<name_width$} {:<expected_width$} actual",
        "result", "case", "expected"
    )?;
    for result in shown {
        let mark = if result.passed { "pass" } else { "FAIL" };
        let name: String = if result.name.chars().count() > name_width {
            let mut cut: String = result.name.chars().take(name_width - 1).collect();
            cut.push('…');
            cut
        } else {
            result.name.clone()
        };
        writeln!(
            out,
            "{mark:<6} {name:<name_width$} {:<expected_width$} {}",
            result.expected, result.actual
        )?;
    }
    Ok(())
}
