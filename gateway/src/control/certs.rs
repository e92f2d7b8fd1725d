//! Certificates for the control plane: reading PEM files, certificate fingerprints, the TLS
//! configurations of both sides, and a private lab CA (`dragnet rules certs`).
//!
//! Both sides speak TLS 1.3 only (QUIC requires it, RFC 9001 §4.2) with the ring provider and
//! ALPN [`super::proto::ALPN`]. The server requires a client certificate that chains to the
//! configured client CA (RFC 5280 path validation by rustls-webpki); the client verifies the
//! server against its CA file and the configured server name (RFC 6125). No 0-RTT: offers and
//! publishes are not idempotent enough to be replayed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::proto::ALPN;
use super::ControlError;

/// A QUIC connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Clients send a keep-alive this often, so a quiet subscription is not idle and a dead peer is
/// noticed within [`IDLE_TIMEOUT`].
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Bytes one stream may have in flight: a large snapshot moves without waiting on window updates
/// every few round trips, yet 100 subscribers do not pin gigabytes of buffer.
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;

fn tls_err(path: &Path, reason: impl Into<String>) -> ControlError {
    ControlError::Tls {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ControlError> {
    let pem = std::fs::read(path).map_err(|e| tls_err(path, format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(path, "holds no \"BEGIN CERTIFICATE\" block"));
    }
    Ok(certs)
}

/// Reads a private key (PKCS#8, PKCS#1 or SEC1 PEM).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ControlError> {
    let pem = std::fs::read(path).map_err(|e| tls_err(path, format!("cannot read: {e}")))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        tls_err(
            path,
            format!("holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })
}

/// The SHA-256 of a certificate's DER: how maintainers are pinned and gateways told apart.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    super::sha256(der)
}

/// The fingerprint of the first certificate in a PEM file (a `--maintainer` argument).
pub fn fingerprint_file(path: &Path) -> Result<[u8; 32], ControlError> {
    let certs = load_certs(path)?;
    certs
        .first()
        .map(|c| fingerprint(c.as_ref()))
        .ok_or_else(|| tls_err(path, "holds no certificate"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Path) -> Result<Arc<rustls::RootCertStore>, ControlError> {
    let mut store = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        store
            .add(c)
            .map_err(|e| tls_err(ca, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

fn transport(keep_alive: bool) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(16))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        .stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW))
        .receive_window(quinn::VarInt::from_u32(2 * STREAM_WINDOW))
        .send_window(u64::from(2 * STREAM_WINDOW))
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
            u32::try_from(IDLE_TIMEOUT.as_millis()).unwrap_or(30_000),
        ))))
        .keep_alive_interval(keep_alive.then_some(KEEP_ALIVE))
        .datagram_receive_buffer_size(None);
    Arc::new(t)
}

/// The server's QUIC configuration: its certificate chain and key, client certificates required
/// and verified against `client_ca`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<quinn::ServerConfig, ControlError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(client_ca)?, provider())
        .build()
        .map_err(|e| tls_err(client_ca, format!("cannot verify clients with it: {e}")))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(cert, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            tls_err(
                key,
                format!(
                    "cannot be used with the certificate in {}: {e}",
                    cert.display()
                ),
            )
        })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls)
        .map_err(|e| tls_err(cert, format!("unusable for QUIC: {e}")))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    sc.transport_config(transport(false));
    Ok(sc)
}

/// A client's QUIC configuration: trusts `ca` for the server, presents `cert`/`key`.
pub fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<quinn::ClientConfig, ControlError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(cert, e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| {
            tls_err(
                key,
                format!(
                    "cannot be used with the certificate in {}: {e}",
                    cert.display()
                ),
            )
        })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|e| tls_err(cert, format!("unusable for QUIC: {e}")))?;
    let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
    cc.transport_config(transport(true));
    Ok(cc)
}

/// The files [`make_lab`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabFiles {
    pub ca: PathBuf,
    pub server: PathBuf,
    pub gateways: Vec<PathBuf>,
    pub maintainer: PathBuf,
}

/// Makes a private CA and leaf certificates in `out` **for a lab or a test**: `ca.pem`/`ca.key`,
/// `server.pem`/`.key` (server auth, subject alternative names `sans`), `gateway-1..N.pem`/`.key`
/// and `maintainer.pem`/`.key` (client auth). Keys are ECDSA P-256, written mode 0600. Refuses to
/// overwrite existing files.
///
/// Not for production: the CA key sits on disk beside the leaves, certificates never expire
/// (rcgen's default validity runs to 4096) and there is no revocation. A carrier uses its own
/// PKI and hands the server, gateways and maintainers their files.
pub fn make_lab(out: &Path, gateways: usize, sans: &[String]) -> Result<LabFiles, ControlError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    if sans.is_empty() {
        return Err(ControlError::Invalid(
            "the server certificate needs at least one name (--san)".into(),
        ));
    }
    for s in sans {
        if s.parse::<IpAddr>().is_err() && rcgen::Ia5String::try_from(s.as_str()).is_err() {
            return Err(ControlError::Invalid(format!(
                "--san {s:?} is neither an IP address nor a DNS name"
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| tls_err(out, format!("cannot create: {e}")))?;
    let rc = |what: &str, e: rcgen::Error| {
        ControlError::Invalid(format!("cannot make the {what} certificate: {e}"))
    };
    let mut names = vec!["ca".to_string(), "server".into(), "maintainer".into()];
    names.extend((1..=gateways).map(|i| format!("gateway-{i}")));
    for n in &names {
        for ext in ["pem", "key"] {
            let p = out.join(format!("{n}.{ext}"));
            if p.exists() {
                return Err(tls_err(&p, "already exists: refusing to overwrite it"));
            }
        }
    }

    let ca_key = KeyPair::generate().map_err(|e| rc("CA", e))?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dragnet lab CA (not for production)");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).map_err(|e| rc("CA", e))?;
    write_pair(out, "ca", &ca.pem(), &ca_key.serialize_pem())?;

    let leaf = |name: &str,
                cn: &str,
                san: Vec<String>,
                usage: ExtendedKeyUsagePurpose|
     -> Result<PathBuf, ControlError> {
        let key = KeyPair::generate().map_err(|e| rc(name, e))?;
        let mut p = CertificateParams::new(san).map_err(|e| rc(name, e))?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![usage];
        p.use_authority_key_identifier_extension = true;
        let c = p.signed_by(&key, &ca, &ca_key).map_err(|e| rc(name, e))?;
        write_pair(out, name, &c.pem(), &key.serialize_pem())
    };
    let server = leaf(
        "server",
        "dragnet rules server",
        sans.to_vec(),
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let maintainer = leaf(
        "maintainer",
        "dragnet maintainer",
        vec![],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let gateways = (1..=gateways)
        .map(|i| {
            let n = format!("gateway-{i}");
            leaf(
                &n,
                &format!("dragnet {n}"),
                vec![],
                ExtendedKeyUsagePurpose::ClientAuth,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LabFiles {
        ca: out.join("ca.pem"),
        server,
        gateways,
        maintainer,
    })
}

/// Writes `NAME.pem` and `NAME.key` (the key created 0600, never widened by a umask).
fn write_pair(out: &Path, name: &str, cert: &str, key: &str) -> Result<PathBuf, ControlError> {
    use std::io::Write;
    let kp = out.join(format!("{name}.key"));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(&kp)
        .and_then(|mut f| f.write_all(key.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| tls_err(&kp, format!("cannot write: {e}")))?;
    let cp = out.join(format!("{name}.pem"));
    std::fs::write(&cp, cert).map_err(|e| tls_err(&cp, format!("cannot write: {e}")))?;
    Ok(cp)
}

/// The key file beside a certificate written by [`make_lab`] (`x.pem` → `x.key`).
pub fn key_beside(cert: &Path) -> PathBuf {
    cert.with_extension("key")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dragnet-certs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn lab_files_load_into_both_configs() {
        let d = dir("lab");
        let f = make_lab(&d, 2, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert_eq!(f.gateways.len(), 2);
        server_config(&f.server, &key_beside(&f.server), &f.ca).unwrap();
        client_config(&f.ca, &f.gateways[1], &key_beside(&f.gateways[1])).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(d.join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, 0o600);
        }
        let a = fingerprint_file(&f.gateways[0]).unwrap();
        assert_ne!(a, fingerprint_file(&f.gateways[1]).unwrap());
        // Never overwritten.
        assert!(make_lab(&d, 1, &["localhost".into()]).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_files_are_named() {
        let d = dir("bad");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("x.pem");
        std::fs::write(&p, "hello").unwrap();
        let e = load_certs(&p).unwrap_err();
        assert!(e.to_string().contains("x.pem"), "{e}");
        assert!(load_key(&p).is_err());
        assert!(load_certs(&d.join("missing.pem")).is_err());
        assert!(make_lab(&d.join("o"), 1, &[]).is_err());
        assert!(make_lab(&d.join("o"), 1, &["bad name!é".into()]).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
