//! TLS for daemon-to-daemon links: both daemons present a certificate, both verify the
//! other's against one CA, and both check that the other's certificate names an **allowed
//! peer**. The C++ communicatord cannot do this (its outgoing links are always plain and never
//! present credentials, docs/PROTOCOL.md §2.6); commsd links can.
//!
//! # Intended use (daemon peering)
//! ```no_run
//! # async fn demo(stream: tokio::net::TcpStream) -> Result<(), commsd::tls::TlsError> {
//! use commsd::tls::PeerTls;
//! let peer_tls = PeerTls::new("/etc/comms/node1.crt", "/etc/comms/node1.key", "/etc/comms/ca.crt")
//!     .allow(["node2.example", "node3.example"]);
//! let links = peer_tls.load()?; // once, at start: every file is read and checked here
//! // Outgoing link (the side that sends CONNECT): TCP connect, then
//! let (tls, who) = links.connect(stream, None).await?;
//! // `who.name` is the allow-listed name the other daemon's certificate carries; compare it
//! // with the `server_name` of its ACCEPT if names and certificates are meant to agree.
//! # drop((tls, who)); Ok(()) }
//! ```
//! The accepting side calls [`PeerTlsContext::accept`] on each TCP stream its peer listener
//! accepts, **before** reading CONNECT, and drops the stream on error (log + count). Both
//! return a `tokio_rustls` stream (AsyncRead + AsyncWrite) that carries the usual cd: lines.
//!
//! # Rules
//! - One certificate + key per daemon, presented as the server certificate on accepted links
//!   and as the client certificate on outgoing links: it needs both the `serverAuth` and
//!   `clientAuth` extended key usages (or none).
//! - The other side's chain must lead to `ca`; a link without a client certificate is refused
//!   by the acceptor (mutual TLS is mandatory between daemons).
//! - Names are the certificate's **subject alternative names** (DNS names or IP addresses),
//!   matched as WebPKI matches a server name; the subject common name is not consulted
//!   (RFC 6125 retired it), so issue daemon certificates with a SAN. A certificate naming
//!   none of `allowed` fails the handshake ([`TlsError::PeerNotAllowed`]), on both sides.
//! - Every handshake is bounded by `handshake_timeout` (default 10 s).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use cd_wire::tls::{
    config_error, handshake_error, key_error, load_certs, load_key, load_roots, provider,
    server_name, TlsError,
};

/// Default bound on one peer handshake.
pub const DEFAULT_PEER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings of daemon peer links (paths; [`PeerTls::load`] reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    /// This daemon's PEM certificate chain (leaf first), presented on every link.
    pub cert: PathBuf,
    /// Its PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates the other daemons' certificates must chain to.
    pub ca: PathBuf,
    /// Names (DNS names or IP addresses) a peer certificate may carry to be accepted.
    pub allowed_peers: Vec<String>,
    /// Bound on one handshake.
    pub handshake_timeout: Duration,
}

/// Who is at the other end of a verified peer link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The first allow-listed name (in allow-list order) the peer certificate carries.
    pub name: String,
}

/// Loaded peer TLS: cheap to clone, shared by every link.
#[derive(Clone)]
pub struct PeerTlsContext {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
    allowed: Arc<[ServerName<'static>]>,
    timeout: Duration,
}

impl std::fmt::Debug for PeerTlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTlsContext")
            .field("allowed", &self.allowed)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Settings with the default handshake timeout and an empty allow-list.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>, ca: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
            allowed_peers: Vec::new(),
            handshake_timeout: DEFAULT_PEER_HANDSHAKE_TIMEOUT,
        }
    }

    /// Adds names to the allow-list.
    pub fn allow<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_peers.extend(names.into_iter().map(Into::into));
        self
    }

    /// Reads every file and builds both rustls configurations. An empty allow-list, a name
    /// that is neither a DNS name nor an IP, or any file problem is an error here, not at the
    /// first link.
    pub fn load(&self) -> Result<PeerTlsContext, TlsError> {
        if self.allowed_peers.is_empty() {
            return Err(TlsError::Config(
                "the peer allow-list is empty: no daemon could ever link".into(),
            ));
        }
        let allowed: Arc<[ServerName<'static>]> = self
            .allowed_peers
            .iter()
            .map(|n| server_name(n))
            .collect::<Result<Vec<_>, _>>()?
            .into();
        let roots = Arc::new(load_roots(&self.ca)?);
        let chain = load_certs(&self.cert, "certificate")?;
        let key = load_key(&self.key)?;

        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| TlsError::Config(format!("CA {}: {e}", self.ca.display())))?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AllowListServerVerifier {
                inner: server_verifier,
                allowed: allowed.clone(),
            }))
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| key_error(e, &self.cert, &self.key))?;

        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError::Config(format!("CA {}: {e}", self.ca.display())))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_client_cert_verifier(Arc::new(AllowListClientVerifier {
                inner: client_verifier,
                allowed: allowed.clone(),
            }))
            .with_single_cert(chain, key)
            .map_err(|e| key_error(e, &self.cert, &self.key))?;

        Ok(PeerTlsContext {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            allowed,
            timeout: self.handshake_timeout,
        })
    }
}

impl PeerTlsContext {
    /// Outgoing link: TLS client over `stream`, presenting our certificate, accepting only a
    /// peer whose certificate chains to the CA and names an allowed peer. With
    /// `expected = Some(name)`, that name must be on the allow-list and in the certificate.
    pub async fn connect<S>(
        &self,
        stream: S,
        expected: Option<&str>,
    ) -> Result<(tokio_rustls::client::TlsStream<S>, PeerIdentity), TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let sni = match expected {
            Some(name) => {
                let n = server_name(name)?;
                if !self.allowed.contains(&n) {
                    return Err(self.not_allowed());
                }
                n
            }
            // `load` refuses an empty allow-list, so there is a first name.
            None => self
                .allowed
                .first()
                .cloned()
                .ok_or_else(|| self.not_allowed())?,
        };
        let handshake = self.connector.connect(sni.clone(), stream);
        let tls = tokio::time::timeout(self.timeout, handshake)
            .await
            .map_err(|_| TlsError::HandshakeTimeout(self.timeout))?
            .map_err(|e| self.classify(e))?;
        let who = {
            let (_, conn) = tls.get_ref();
            self.identity(conn.peer_certificates())
        };
        match (who, expected) {
            (Some(who), None) => Ok((tls, who)),
            (Some(_), Some(_)) if carries(tls.get_ref().1.peer_certificates(), &sni) => Ok((
                tls,
                PeerIdentity {
                    name: name_text(&sni),
                },
            )),
            _ => Err(self.not_allowed()),
        }
    }

    /// Accepted link: TLS server over `stream`, requiring a client certificate that chains to
    /// the CA and names an allowed peer.
    pub async fn accept<S>(
        &self,
        stream: S,
    ) -> Result<(tokio_rustls::server::TlsStream<S>, PeerIdentity), TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let handshake = self.acceptor.accept(stream);
        let tls = tokio::time::timeout(self.timeout, handshake)
            .await
            .map_err(|_| TlsError::HandshakeTimeout(self.timeout))?
            .map_err(|e| self.classify(e))?;
        let who = self.identity(tls.get_ref().1.peer_certificates());
        match who {
            Some(who) => Ok((tls, who)),
            None => Err(self.not_allowed()),
        }
    }

    /// The allow-list, as given.
    pub fn allowed_peers(&self) -> Vec<String> {
        self.allowed.iter().map(name_text).collect()
    }

    fn identity(&self, certs: Option<&[CertificateDer<'static>]>) -> Option<PeerIdentity> {
        let leaf = certs?.first()?;
        allowed_index(leaf, &self.allowed).map(|i| PeerIdentity {
            name: name_text(&self.allowed[i]),
        })
    }

    fn not_allowed(&self) -> TlsError {
        TlsError::PeerNotAllowed {
            allowed: self.allowed_peers().join(","),
        }
    }

    fn classify(&self, e: std::io::Error) -> TlsError {
        let name_refused = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(not_valid_for_name);
        if name_refused {
            self.not_allowed()
        } else {
            handshake_error(e)
        }
    }
}

fn name_text(n: &ServerName<'static>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// Index of the first allowed name the certificate is valid for (its SANs, WebPKI rules).
fn allowed_index(cert: &CertificateDer<'_>, allowed: &[ServerName<'static>]) -> Option<usize> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    allowed
        .iter()
        .position(|n| ee.verify_is_valid_for_subject_name(n).is_ok())
}

fn carries(certs: Option<&[CertificateDer<'static>]>, name: &ServerName<'static>) -> bool {
    certs
        .and_then(|c| c.first())
        .is_some_and(|leaf| allowed_index(leaf, std::slice::from_ref(name)).is_some())
}

fn not_valid_for_name(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// The handshake-signature methods of both verifiers: the allow-list changes only which
/// certificates pass, so signatures are checked by `self.inner` as it would check them.
/// (A trait's methods must be written in each impl: this writes them once.)
macro_rules! delegate_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// Server certificate check of an outgoing link: a valid chain, and valid for **some**
/// allowed name (the name we dialled is not what matters: the peer's identity is).
#[derive(Debug)]
struct AllowListServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    allowed: Arc<[ServerName<'static>]>,
}

impl ServerCertVerifier for AllowListServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        for name in self.allowed.iter() {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
            {
                Ok(v) => return Ok(v),
                Err(e) if not_valid_for_name(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ))
    }

    delegate_signature_checks!();
}

/// Client certificate check of an accepted link: mandatory, a valid chain, and valid for
/// some allowed name.
#[derive(Debug)]
struct AllowListClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Arc<[ServerName<'static>]>,
}

impl ClientCertVerifier for AllowListClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match allowed_index(end_entity, &self.allowed) {
            Some(_) => Ok(verified),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
        }
    }

    delegate_signature_checks!();
}
