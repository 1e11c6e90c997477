//! TLS with rustls: the certificate and key, loaded once. The handshake
//! itself runs in the connection loop (`listen.rs`), one task per client.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use ocidb::error::{Error, Result};

/// A certificate chain and its key, loaded from PEM files.
#[derive(Clone)]
pub struct TlsFiles {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsFiles")
    }
}

impl TlsFiles {
    /// Loads a PEM certificate chain and a PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsFiles> {
        let bad = |what: &Path, e: &dyn std::fmt::Display| Error::InvalidArgument {
            value: what.display().to_string(),
            expected: format!("a PEM file ({e})"),
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(cert, &e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(cert, &e))?;
        if certs.is_empty() {
            return Err(bad(cert, &"no certificate in it"));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidArgument {
                value: "TLS protocol versions".into(),
                expected: e.to_string(),
            })?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad(cert, &e))?;
        Ok(TlsFiles {
            config: Arc::new(config),
        })
    }

    /// An acceptor for the connection loop.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }
}

/// The certificate a listener hands out, replaced whole by a reload.
#[derive(Clone)]
pub(crate) struct SharedTls(Arc<std::sync::RwLock<TlsAcceptor>>);

impl SharedTls {
    pub fn new(files: &TlsFiles) -> SharedTls {
        SharedTls(Arc::new(std::sync::RwLock::new(files.acceptor())))
    }

    /// The acceptor for a connection arriving now.
    pub fn current(&self) -> TlsAcceptor {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Hands out `files` to every connection from now on.
    pub fn replace(&self, files: &TlsFiles) {
        let new = files.acceptor();
        match self.0.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
    }
}
