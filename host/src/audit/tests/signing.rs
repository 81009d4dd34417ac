//! Key files and checkpoint signatures, as an auditor with other tools would check them.

use std::os::unix::fs::PermissionsExt;

use ed25519_dalek::{Signature, Verifier};

use super::*;
use crate::audit::checkpoint::Checkpoint;
use crate::audit::keys::KeyError;

/// An Ed25519 key as `openssl genpkey -algorithm ed25519` writes it (test only).
const OPENSSL_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEILtUUGkOgZTN2HXj1Q9y/zQmCkJMVUb52lTcBf7SCg09
-----END PRIVATE KEY-----
";

#[test]
fn a_key_pair_is_written_for_its_owner_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let written = keys::write_key_pair(dir.path(), keys::AUDIT_KEY_NAME, &key, false).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&written.signing_key), 0o600);
    assert_eq!(mode(&written.public_key), 0o644);
    assert!(!keys::is_readable_by_others(&written.signing_key));
    let private = std::fs::read_to_string(&written.signing_key).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(
        keys::read_signing_key(&written.signing_key)
            .unwrap()
            .to_bytes(),
        key.to_bytes()
    );
    let public = keys::read_public_key(&written.public_key).unwrap();
    assert_eq!(public, key.verifying_key());
    assert_eq!(written.key_id, keys::key_id(&public));
    assert_eq!(written.key_id.len(), 16);

    let again = keys::write_key_pair(dir.path(), keys::AUDIT_KEY_NAME, &keys::generate(), false);
    assert!(
        matches!(again, Err(KeyError::Exists { .. })),
        "no silent overwrite"
    );
    assert!(
        keys::write_key_pair(dir.path(), keys::AUDIT_KEY_NAME, &keys::generate(), true).is_ok()
    );
}

#[test]
fn keys_made_by_openssl_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openssl.key");
    std::fs::write(&path, OPENSSL_KEY).unwrap();
    assert!(keys::read_signing_key(&path).is_ok());
    let error = keys::read_public_key(&path).unwrap_err().to_string();
    assert!(error.contains("is not an Ed25519 public key"), "{error}");
}

#[test]
fn a_checkpoint_signs_exactly_the_documented_bytes() {
    let key = keys::generate();
    let head = crate::audit::chain::ChainHead {
        seq: 0x0102_0304_0506_0708,
        hash: [7; 32],
    };
    let checkpoint = Checkpoint::sign(&head, base_ms() + 1234, &key);
    let mut message = vec![1, 2, 3, 4, 5, 6, 7, 8];
    message.extend_from_slice(&[7; 32]);
    message.extend_from_slice(checkpoint.time.as_bytes());
    message.extend_from_slice(checkpoint.key_id.as_bytes());
    assert_eq!(checkpoint.time.len(), 24);
    let signature: [u8; 64] = hex::decode(&checkpoint.signature)
        .unwrap()
        .try_into()
        .unwrap();
    assert!(
        key.verifying_key()
            .verify(&message, &Signature::from_bytes(&signature))
            .is_ok()
    );
    assert!(checkpoint.verify(&[key.verifying_key()]).is_ok());
    let mut later = checkpoint.clone();
    later.time = time::format_millis(base_ms() + 1235);
    assert!(
        later.verify(&[key.verifying_key()]).is_err(),
        "the time is signed"
    );
}
