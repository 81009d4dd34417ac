//! Trust for `https://` upstreams: the certificate authorities an upstream's certificate
//! must chain to, read once when the configuration is loaded so that `ehrgate check`
//! reports a missing or unreadable CA file and a reload cannot half-apply one.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The CA certificates in the PEM file at `path`, or the operating system's trust store
/// when no file is given. At least one certificate is required: an empty store would
/// refuse every upstream, and the operator would only find out from 502s.
pub fn trust_roots(path: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, String> {
    match path {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("`{}` is not a PEM certificate file: {e}", path.display()))?;
            if certificates.is_empty() {
                return Err(format!(
                    "`{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                    path.display()
                ));
            }
            Ok(certificates)
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let reasons: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "the system trust store has no CA certificates{}",
                    if reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", reasons.join("; "))
                    }
                ));
            }
            Ok(found.certs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_gives_its_certificates_and_bad_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls/ca.cert.pem");
        assert_eq!(trust_roots(Some(&ca)).unwrap().len(), 1);

        let missing = dir.path().join("missing.pem");
        let error = trust_roots(Some(&missing)).unwrap_err();
        assert!(error.starts_with("cannot read"), "{error}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = trust_roots(Some(&empty)).unwrap_err();
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }
}
