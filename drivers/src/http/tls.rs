//! rustls client configurations for the three TLS modes of [`super::Tls`]: verification
//! against the system store or a given CA file (the reference's `ssl`/`ssl_secure`), and
//! `ssl_insecure`, which accepts whatever the server presents, as the reference's `--ssl-insecure`
//! does (fence-agents #184: users run self-signed vCenter certificates; older ESXi hosts and
//! VMware's simulator present 1024-bit RSA keys, which rustls' verifiers refuse as
//! `BadSignature`). Checking the handshake signature against a certificate nobody vouches for
//! proves nothing (a man in the middle signs with its own key), so insecure mode does not.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsSetupError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {why}")]
    CaFile {
        /// The file.
        path: String,
        /// What was wrong.
        why: String,
    },
    /// The system certificate store is empty or unreadable.
    #[error("no usable system CA certificates: {0}")]
    System(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn with_roots(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Verify against the certificates in a PEM file.
pub(crate) fn verify_with_ca(path: &Path) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let err = |why: String| TlsSetupError::CaFile {
        path: path.display().to_string(),
        why,
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))?;
    for c in certs {
        let c = c.map_err(|e| err(e.to_string()))?;
        roots.add(c).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in file".into()));
    }
    with_roots(roots)
}

/// Verify against the operating system's store (honours `SSL_CERT_FILE`/`SSL_CERT_DIR`).
pub(crate) fn verify_with_system() -> Result<Arc<ClientConfig>, TlsSetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "store is empty".into());
        return Err(TlsSetupError::System(why));
    }
    with_roots(roots)
}

/// Accept any certificate, host name and key size: the connection is encrypted, not
/// authenticated.
pub(crate) fn insecure() -> Result<Arc<ClientConfig>, TlsSetupError> {
    let p = provider();
    let cfg = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(p)))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    // No signature check: the certificate is not trusted, so a valid signature from its key
    // would prove nothing, and ring refuses RSA keys under 2048 bits that older servers use.
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_ca_file_is_a_readable_error() {
        let e = verify_with_ca(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = verify_with_ca(f.path()).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }

    /// `openssl s_server` on loopback with a fresh self-signed 1024-bit RSA certificate, as
    /// older ESXi hosts present. Killed on drop.
    struct LegacyServer {
        child: std::process::Child,
        port: u16,
        dir: tempfile::TempDir,
    }

    impl Drop for LegacyServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn legacy_server(tls13: bool) -> LegacyServer {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
        let st = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=legacy-esxi"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl (Debian package openssl) must be installed");
        assert!(st.success(), "openssl req failed");
        // A free port: bind, note it, release; s_server binds it next.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ])
            .arg(if tls13 { "-tls1_3" } else { "-tls1_2" })
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .arg("-key")
            .arg(&key)
            .arg("-cert")
            .arg(&cert)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let srv = LegacyServer { child, port, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "s_server not up");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        srv
    }

    /// Handshake with `cfg` against the server and read its HTTP answer.
    fn fetch(cfg: Arc<ClientConfig>, port: u16) -> Result<String, std::io::Error> {
        use std::io::{Read, Write};
        let name = ServerName::try_from("legacy-esxi").unwrap();
        let conn = rustls::ClientConnection::new(cfg, name).map_err(std::io::Error::other)?;
        let sock = std::net::TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut out = String::new();
        tls.read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn insecure_accepts_a_1024_bit_rsa_server_that_verify_refuses() {
        for tls13 in [false, true] {
            let srv = legacy_server(tls13);
            let page = fetch(insecure().unwrap(), srv.port)
                .unwrap_or_else(|e| panic!("insecure (tls1.3: {tls13}) refused: {e}"));
            assert!(page.starts_with("HTTP/1.0 200"), "{page}");
            // Verifying against that very certificate still refuses it (ring's key-size
            // floor): the insecure switch is what makes the difference.
            let ca = srv.dir.path().join("c.pem");
            let e = fetch(verify_with_ca(&ca).unwrap(), srv.port).unwrap_err();
            assert!(!e.to_string().is_empty());
        }
    }
}
