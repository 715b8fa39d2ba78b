//! TLS for `https://` and `wss://` servers: rustls with its `ring` provider, trusting the
//! system's certificate authorities (read by `rustls-native-certs`, so a private CA installed
//! on the machine counts) plus, optionally, one more CA file of the application's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tracing::{debug, warn};

/// A CA file that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the CA file {}: {why}", path.display())]
pub struct TlsError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub why: String,
}

/// A TLS client configuration that trusts the system's certificate authorities and, when
/// `extra_ca` is given, the PEM certificates in that file too (a private CA, or a server's
/// self-signed certificate). ALPN offers HTTP/1.1, which ticket requests and the WebSocket
/// upgrade both use.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        debug!(%error, "a system certificate store could not be read");
    }
    let (added, ignored) = roots.add_parsable_certificates(system.certs);
    debug!(added, ignored, "system certificate authorities");
    if let Some(path) = extra_ca {
        let failed = |why: String| TlsError {
            path: path.to_owned(),
            why,
        };
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| failed(format!("{e:?}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(format!("{e:?}")))?;
        if certificates.is_empty() {
            return Err(failed("it holds no PEM certificate".into()));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| failed(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        warn!("no certificate authority to trust: every TLS handshake will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
