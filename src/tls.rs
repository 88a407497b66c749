//! TLS as the protocol wants it: a fresh self-signed certificate (ECDSA P-256)
//! at each start whose only name is the service URI's host, served by rustls
//! with ALPN h2 and http/1.1; and, for clients, a verifier that accepts a
//! self-signed certificate but refuses one whose name does not match the host
//! dialled (v2), and one that accepts any orchestrator certificate, or only
//! a pinned one (today's remote transcoders, as go-livepeer's).

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--hostname {0:?} is neither a DNS name nor an IP address")]
    BadHostname(String),
    #[error("making the certificate failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Config(#[from] rustls::Error),
}

/// Installs ring as rustls's process-wide provider. Idempotent.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[allow(
    clippy::expect_used,
    reason = "start-up: installed just above, or the process cannot do TLS at all"
)]
fn provider() -> Arc<CryptoProvider> {
    install_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .expect("installed above")
}

/// A certificate made at start-up and its private key.
#[derive(Debug)]
pub struct SelfSignedCert {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pub cert_pem: String,
}

impl SelfSignedCert {
    /// A new certificate whose only subject alternative name is `hostname`
    /// (an IP SAN for an IP address, a DNS SAN otherwise), valid for a year.
    pub fn generate(hostname: &str) -> Result<Self, TlsError> {
        let san = match hostname.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => {
                ServerName::try_from(hostname)
                    .map_err(|_| TlsError::BadHostname(hostname.to_string()))?;
                rcgen::SanType::DnsName(
                    hostname
                        .try_into()
                        .map_err(|_| TlsError::BadHostname(hostname.to_string()))?,
                )
            }
        };
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![san];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, hostname);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365);
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key_pair)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key_pair.serialize_der()),
        })
    }

    /// The server side: this certificate, ALPN h2 then http/1.1.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A client configuration that checks only the server certificate's name (and
/// the handshake signature), offering the given ALPN protocols.
#[allow(
    clippy::expect_used,
    reason = "ring supports the default protocol versions: a constant fact"
)]
pub fn client_config(alpn: &[&[u8]]) -> ClientConfig {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NameOnlyVerifier { provider }))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A client configuration for orchestrators whose certificates are checked
/// as go-livepeer's transcoder checks them, i.e. not at all (they are
/// self-signed and new at every start), unless `pin` gives the SHA-256 of
/// the one certificate to accept. Handshake signatures are still verified,
/// so a pinned certificate proves the peer holds its key.
#[allow(
    clippy::expect_used,
    reason = "ring supports the default protocol versions: a constant fact"
)]
pub fn unverified_client_config(pin: Option<[u8; 32]>, alpn: &[&[u8]]) -> ClientConfig {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinOrAnyVerifier { provider, pin }))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// SHA-256 of a certificate's DER, as `--orch-cert-sha256` names it.
pub fn certificate_sha256(cert: &CertificateDer<'_>) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(cert.as_ref()).into()
}

/// Parses `--orch-cert-sha256`: 64 hex digits, colons allowed (as
/// `openssl x509 -fingerprint -sha256` prints them).
pub fn parse_sha256_pin(text: &str) -> Option<[u8; 32]> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(digits.trim()).ok()?;
    bytes.try_into().ok()
}

/// Accepts any certificate, or only the pinned one; verifies signatures.
#[derive(Debug)]
struct PinOrAnyVerifier {
    provider: Arc<CryptoProvider>,
    pin: Option<[u8; 32]>,
}

impl ServerCertVerifier for PinOrAnyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            Some(pin) if certificate_sha256(end_entity) != pin => Err(
                rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure),
            ),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An `https://host:port` to dial: where to connect, and the name the server's
/// certificate must carry. Shared by the gRPC and the segment clients.
#[derive(Debug, Clone)]
pub struct DialTarget {
    /// `host:port` as written in the URI (IPv6 hosts in brackets).
    pub authority: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    /// Accept any certificate (go-livepeer's broadcasters verify none on
    /// today's wire); the handshake signature is still checked.
    any_certificate: bool,
}

impl DialTarget {
    /// `None` unless `uri` is `https://host:port` with a valid host name or IP.
    pub fn parse(uri: &str) -> Option<Self> {
        let uri: http::Uri = uri.parse().ok()?;
        if uri.scheme_str() != Some("https") {
            return None;
        }
        let authority = uri.authority()?;
        let port = authority.port_u16()?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let server_name = ServerName::try_from(host.clone()).ok()?;
        Some(Self {
            authority: authority.to_string(),
            host,
            port,
            server_name,
            any_certificate: false,
        })
    }

    /// The same target, accepting any certificate (today's wire, as
    /// go-livepeer's broadcaster dials orchestrators).
    pub fn any_certificate(self) -> Self {
        Self {
            any_certificate: true,
            ..self
        }
    }

    /// TCP and TLS (ALPN h2) to the target, refusing a certificate for another name.
    pub async fn connect(
        &self,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        static CONNECTOR: std::sync::OnceLock<tokio_rustls::TlsConnector> =
            std::sync::OnceLock::new();
        static ANY: std::sync::OnceLock<tokio_rustls::TlsConnector> = std::sync::OnceLock::new();
        let connector = if self.any_certificate {
            ANY.get_or_init(|| {
                tokio_rustls::TlsConnector::from(Arc::new(unverified_client_config(None, &[b"h2"])))
            })
        } else {
            CONNECTOR
                .get_or_init(|| tokio_rustls::TlsConnector::from(Arc::new(client_config(&[b"h2"]))))
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        connector.connect(self.server_name.clone(), tcp).await
    }
}

/// Accepts any self-signed certificate whose names include the host dialled:
/// the spec's rule for orchestrator certificates, which no CA signs.
#[derive(Debug)]
pub struct NameOnlyVerifier {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NameOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Handshakes a client dialling `dial_name` with a server holding a
    /// certificate for `cert_name`, over loopback.
    async fn handshake(
        cert_name: &str,
        dial_name: &str,
    ) -> Result<Option<Vec<u8>>, std::io::Error> {
        let cert = SelfSignedCert::generate(cert_name).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = tls.write_all(b"hi").await;
                let _ = tls.shutdown().await;
            }
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&[b"h2"])));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from(dial_name.to_string()).unwrap();
        let mut tls = connector.connect(name, tcp).await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut greeting = Vec::new();
        tls.read_to_end(&mut greeting).await?;
        assert_eq!(greeting, b"hi");
        server.await.unwrap();
        Ok(alpn)
    }

    #[tokio::test]
    async fn accepts_a_self_signed_certificate_with_the_right_name() {
        assert_eq!(
            handshake("node.example", "node.example").await.unwrap(),
            Some(b"h2".to_vec())
        );
        assert_eq!(
            handshake("127.0.0.1", "127.0.0.1").await.unwrap(),
            Some(b"h2".to_vec())
        );
    }

    #[tokio::test]
    async fn refuses_a_name_mismatch() {
        let error = handshake("node.example", "other.example")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("NotValidForName"), "{error}");
        let error = handshake("127.0.0.1", "127.0.0.2").await.unwrap_err();
        assert!(error.to_string().contains("NotValidForName"), "{error}");
        assert!(handshake("localhost", "127.0.0.1").await.is_err());
    }

    /// Handshakes a client with an unverified/pinned config against a
    /// certificate for `cert_name`, dialling another name.
    async fn unverified_handshake(
        pin_of: fn([u8; 32]) -> Option<[u8; 32]>,
    ) -> (Result<(), std::io::Error>, [u8; 32]) {
        let cert = SelfSignedCert::generate("orchestrator.example").unwrap();
        let fingerprint = certificate_sha256(&cert.cert);
        let pin = pin_of(fingerprint);
        let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        });
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(unverified_client_config(pin, &[b"h2"])));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("10.1.2.3".to_string()).unwrap();
        (connector.connect(name, tcp).await.map(|_| ()), fingerprint)
    }

    #[tokio::test]
    async fn orchestrator_certificates_are_accepted_unless_a_pin_says_otherwise() {
        let (any, fingerprint) = unverified_handshake(|_| None).await;
        any.unwrap();
        let (pinned, _) = unverified_handshake(Some).await;
        pinned.unwrap();
        let (wrong, _) = unverified_handshake(|_| Some([7; 32])).await;
        assert!(wrong.is_err());
        let text = hex::encode(fingerprint);
        assert_eq!(parse_sha256_pin(&text), Some(fingerprint));
        let colons: Vec<String> = fingerprint.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_sha256_pin(&colons.join(":")), Some(fingerprint));
        assert_eq!(parse_sha256_pin("abcd"), None);
        assert_eq!(parse_sha256_pin("zz"), None);
    }

    #[test]
    fn bad_hostnames_are_refused() {
        for bad in ["", "bad host", "a..b"] {
            assert!(
                matches!(SelfSignedCert::generate(bad), Err(TlsError::BadHostname(_))),
                "{bad:?}"
            );
        }
    }
}
