//! The checkpoint signing key pair: Ed25519, the private key in a PKCS#8 PEM file
//! (`audit-signing.key`, mode 0600) and the public key in an SPKI PEM file
//! (`audit-signing.pub`), the forms `openssl pkey` reads. A key is named by its key id.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The default name of the key pair `ehrgate keygen` writes (`audit-signing.key`, `.pub`).
pub const AUDIT_KEY_NAME: &str = "audit-signing";

/// A key file that could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    // The OS error is part of the message, not a `source`: callers that print the chain
    // (anyhow's `{:#}`) would otherwise show it twice.
    #[error("cannot read key file `{path}`: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error(
        "`{path}` is not an Ed25519 {expected} in PEM form\n  help: make a key pair with `ehrgate keygen --out DIR`"
    )]
    Format {
        path: PathBuf,
        expected: &'static str,
    },
    #[error(
        "`{path}` already exists\n  help: pass `--force` to replace it, or choose another `--out` directory"
    )]
    Exists { path: PathBuf },
    #[error("cannot write key file `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode the key: {0}")]
    Encode(String),
}

/// The id of a public key: lowercase hex of the first 8 bytes of SHA-256 over its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// Reads a PKCS#8 PEM Ed25519 private key.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = fs::read_to_string(path).map_err(|reason| KeyError::Read {
        path: path.to_owned(),
        reason,
    })?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Format {
        path: path.to_owned(),
        expected: "private key (PKCS#8, `BEGIN PRIVATE KEY`)",
    })
}

/// Whether anyone but the owner may read the private key file.
pub fn is_readable_by_others(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

/// Reads an SPKI PEM Ed25519 public key.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = fs::read_to_string(path).map_err(|reason| KeyError::Read {
        path: path.to_owned(),
        reason,
    })?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|_| KeyError::Format {
        path: path.to_owned(),
        expected: "public key (SPKI, `BEGIN PUBLIC KEY`)",
    })
}

/// Makes a key pair from the operating system's random source.
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// Where [`write_key_pair`] put the keys.
pub struct WrittenKeys {
    pub signing_key: PathBuf,
    pub public_key: PathBuf,
    pub key_id: String,
}

/// Writes `key` to `dir` as `<name>.key` (mode 0600) and `<name>.pub` (mode 0644), creating
/// `dir` if needed (`name` is `audit-signing` for the audit log's key). Refuses to replace
/// existing files unless `force`.
pub fn write_key_pair(
    dir: &Path,
    name: &str,
    key: &SigningKey,
    force: bool,
) -> Result<WrittenKeys, KeyError> {
    let signing_key = dir.join(format!("{name}.key"));
    let public_key = dir.join(format!("{name}.pub"));
    if !force {
        for path in [&signing_key, &public_key] {
            if path.exists() {
                return Err(KeyError::Exists { path: path.clone() });
            }
        }
    }
    fs::create_dir_all(dir).map_err(|source| KeyError::Write {
        path: dir.to_owned(),
        source,
    })?;
    // PKCS#8 v1 (RFC 8410 §7, without the optional public key): the form OpenSSL 3.0 reads.
    let private_pem = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| KeyError::Encode(e.to_string()))?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))?;
    write_file(&signing_key, private_pem.as_bytes(), 0o600)?;
    write_file(&public_key, public_pem.as_bytes(), 0o644)?;
    Ok(WrittenKeys {
        signing_key,
        public_key,
        key_id: key_id(&key.verifying_key()),
    })
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let error = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    // A replaced file keeps its old mode when opened for writing, so remove it first; the
    // new one is created with `mode` from the start and is never readable by others.
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(error)?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)
}
