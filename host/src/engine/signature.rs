//! Signed policy modules: a detached Ed25519 signature in `<module>.wasm.sig` next to the
//! module, made by `ehrgate policy sign`. With `[sandbox] require_signed_modules`, the engine
//! loads only modules whose signature verifies against one of `trusted_signers`, so a module
//! swapped on disk (or built outside the release process) is refused at load and at reload.
//!
//! The signed message is `ehrgate policy module signature v1\n` followed by the 32 raw bytes
//! of SHA-256 over the module file. The `.sig` file is JSON:
//! `{"key_id": "<hex>", "sha256": "<hex>", "signature": "<hex of 64 bytes>"}`.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::keys::key_id;

/// Domain separation: these signatures cannot be confused with audit checkpoints.
const CONTEXT: &[u8] = b"ehrgate policy module signature v1\n";

/// The contents of a `.sig` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSignature {
    pub key_id: String,
    pub sha256: String,
    pub signature: String,
}

/// Where a module's detached signature lives.
pub fn signature_path(module: &Path) -> PathBuf {
    let mut path = module.as_os_str().to_owned();
    path.push(".sig");
    PathBuf::from(path)
}

fn message(module: &[u8]) -> ([u8; 32], Vec<u8>) {
    let digest: [u8; 32] = Sha256::digest(module).into();
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(&digest);
    (digest, message)
}

/// Signs a module's bytes.
pub fn sign(module: &[u8], key: &SigningKey) -> ModuleSignature {
    let (digest, message) = message(module);
    ModuleSignature {
        key_id: key_id(&key.verifying_key()),
        sha256: hex::encode(digest),
        signature: hex::encode(key.sign(&message).to_bytes()),
    }
}

/// Checks `module`'s signature file against the trusted keys; returns the signer's key id.
pub fn verify_file(
    module_path: &Path,
    module: &[u8],
    trusted: &[VerifyingKey],
) -> Result<String, String> {
    let path = signature_path(module_path);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "is not signed: cannot read `{}` ({e})\nhelp: sign it with `ehrgate policy sign {} --key KEY`",
            path.display(),
            module_path.display()
        )
    })?;
    let signature: ModuleSignature = serde_json::from_str(&text)
        .map_err(|e| format!("has an unreadable signature file `{}`: {e}", path.display()))?;
    verify(module, &signature, trusted)
}

/// Checks a signature against the module's bytes and the trusted keys.
pub fn verify(
    module: &[u8],
    signature: &ModuleSignature,
    trusted: &[VerifyingKey],
) -> Result<String, String> {
    let (digest, message) = message(module);
    if signature.sha256 != hex::encode(digest) {
        return Err("was changed after it was signed (its SHA-256 is not the signed one)".into());
    }
    let Some(key) = trusted.iter().find(|k| key_id(k) == signature.key_id) else {
        return Err(format!(
            "is signed by key `{}`, which is not among `trusted_signers`",
            signature.key_id
        ));
    };
    let bytes: [u8; 64] = hex::decode(&signature.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("has a malformed signature")?;
    key.verify(&message, &Signature::from_bytes(&bytes))
        .map_err(|_| "has a signature that does not verify".to_owned())?;
    Ok(signature.key_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::keys::generate;

    #[test]
    fn a_signature_verifies_only_for_the_same_bytes_and_a_trusted_key() {
        let key = generate();
        let module = b"\0asm component bytes";
        let signature = sign(module, &key);
        let trusted = [key.verifying_key()];
        assert_eq!(
            verify(module, &signature, &trusted),
            Ok(key_id(&key.verifying_key()))
        );
        assert!(
            verify(b"\0asm other bytes", &signature, &trusted)
                .unwrap_err()
                .contains("changed")
        );
        assert!(
            verify(module, &signature, &[generate().verifying_key()])
                .unwrap_err()
                .contains("not among")
        );
        let forged = ModuleSignature {
            signature: hex::encode([7u8; 64]),
            ..signature.clone()
        };
        assert!(
            verify(module, &forged, &trusted)
                .unwrap_err()
                .contains("does not verify")
        );
    }
}
