//! Authentication and transport: the bearer token, the generated PKI for `--tls`, and the
//! listener that serves plain TCP or TLS connections to the HTTP layer.
//!
//! 1. [`Credentials::generate`] makes a random bearer token and, with TLS, a CA (ECDSA P-256,
//!    rcgen through [`super::controllers::pki`]), a server certificate for `127.0.0.1` and
//!    `localhost`, and a client certificate (CN `meshplan-sandbox`, O `system:masters`), all
//!    signed by that CA. The kubeconfig carries the token, and with TLS the CA and the client
//!    certificate and key.
//! 2. [`Listener`] accepts TCP connections; with TLS it runs the handshakes in their own tasks
//!    (rustls, ring provider; client certificates are verified against the CA when presented,
//!    and optional so that token-only clients can still connect).
//! 3. Every connection is a [`Conn`] carrying a [`ConnInfo`]: whether it presented a verified
//!    client certificate, and an abort switch. Setting the switch makes the connection fail on
//!    its next write, so a response is never sent: that is how a "dropped connection" fault
//!    reaches the client.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::controllers::pki::{self, CertRequest, KeyAlgorithm, KeyEncoding, KeySpec, Signer};

/// Why the TLS material could not be made.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TransportError {
    #[error("cannot generate the sandbox's TLS certificates")]
    #[diagnostic(code(sandbox::tls_pki))]
    Pki(#[source] pki::PkiError),
    #[error("cannot set up TLS: {0}")]
    #[diagnostic(code(sandbox::tls_config))]
    Config(String),
    #[error("cannot generate the sandbox token: {0}")]
    #[diagnostic(code(sandbox::token))]
    Token(String),
}

/// The TLS material of a sandbox, PEM encoded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TlsMaterial {
    pub ca_crt: String,
    pub server_crt: String,
    pub server_key: String,
    pub client_crt: String,
    pub client_key: String,
}

/// What clients need to talk to a sandbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    /// The bearer token (`Authorization: Bearer <token>`).
    pub token: String,
    /// Present when the sandbox serves HTTPS.
    pub tls: Option<TlsMaterial>,
}

fn random_token() -> Result<String, TransportError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| TransportError::Token(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Credentials {
    /// A token (the given one, or a random one) and, when `tls`, a fresh PKI.
    pub fn generate(token: Option<String>, tls: bool) -> Result<Self, TransportError> {
        let token = match token {
            Some(t) => t,
            None => random_token()?,
        };
        let tls = if tls { Some(generate_pki()?) } else { None };
        Ok(Self { token, tls })
    }
}

/// Where a data directory keeps the credentials.
const CREDENTIALS_FILE: &str = "credentials.json";

impl Credentials {
    /// The credentials kept in `dir` (so that a restarted sandbox accepts the kubeconfig it
    /// wrote before), completed or replaced as the configuration asks: a configured token
    /// wins, TLS material is generated when `tls` is asked for and none is kept. Writes them
    /// back when anything changed. An unreadable file is replaced.
    pub fn load_or_generate(
        dir: &std::path::Path,
        token: Option<String>,
        tls: bool,
    ) -> Result<Self, TransportError> {
        let path = dir.join(CREDENTIALS_FILE);
        let kept: Option<Credentials> = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let mut creds = match kept.clone() {
            Some(c) => c,
            None => Self::generate(None, false)?,
        };
        if let Some(t) = token {
            creds.token = t;
        }
        if tls && creds.tls.is_none() {
            creds.tls = Some(generate_pki()?);
        }
        let changed = kept
            .as_ref()
            .is_none_or(|k| k.token != creds.token || k.tls.is_some() != creds.tls.is_some());
        if changed {
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(dir)?;
                let text = serde_json::to_vec_pretty(&creds).map_err(std::io::Error::other)?;
                let tmp = dir.join(format!("{CREDENTIALS_FILE}.tmp"));
                std::fs::write(&tmp, text)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
                }
                std::fs::rename(&tmp, &path)
            };
            write().map_err(|e| {
                TransportError::Config(format!("cannot write {}: {e}", path.display()))
            })?;
        }
        if !tls {
            creds.tls = None;
        }
        Ok(creds)
    }
}

fn generate_pki() -> Result<TlsMaterial, TransportError> {
    let spec = KeySpec::new(KeyAlgorithm::Ecdsa, Some(256)).map_err(TransportError::Pki)?;
    let now = Timestamp::now()
        .checked_sub(SignedDuration::from_mins(5))
        .unwrap_or_else(|_| Timestamp::now());
    let year = SignedDuration::from_hours(24 * 365);
    let request = |cn: &str, is_ca: bool, usages: &[&str]| CertRequest {
        common_name: Some(cn.to_string()),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        email_addresses: Vec::new(),
        is_ca,
        usages: usages.iter().map(|u| u.to_string()).collect(),
        duration: year,
        subject: pki::Subject::default(),
        now,
    };
    let ca_key = pki::generate_key(spec).map_err(TransportError::Pki)?;
    let ca = pki::issue(
        &request(
            "meshplan-sandbox-ca",
            true,
            &["cert sign", "digital signature"],
        ),
        &ca_key,
        Signer::SelfSigned,
        KeyEncoding::Pkcs8,
    )
    .map_err(TransportError::Pki)?;
    let ca_key_pem = ca_key
        .to_pem(KeyEncoding::Pkcs8)
        .map_err(TransportError::Pki)?;
    let signer = Signer::Ca {
        cert_pem: &ca.tls_crt,
        key_pem: &ca_key_pem,
    };

    let mut server_req = request(
        "meshplan-sandbox",
        false,
        &["digital signature", "key encipherment", "server auth"],
    );
    server_req.dns_names = vec!["localhost".into()];
    server_req.ip_addresses = vec!["127.0.0.1".into()];
    let server_key = pki::generate_key(spec).map_err(TransportError::Pki)?;
    let server = pki::issue(&server_req, &server_key, signer, KeyEncoding::Pkcs8)
        .map_err(TransportError::Pki)?;

    let mut client_req = request(
        "meshplan-sandbox",
        false,
        &["digital signature", "key encipherment", "client auth"],
    );
    client_req.subject.organizations = vec!["system:masters".into()];
    let client_key = pki::generate_key(spec).map_err(TransportError::Pki)?;
    let client = pki::issue(&client_req, &client_key, signer, KeyEncoding::Pkcs8)
        .map_err(TransportError::Pki)?;

    Ok(TlsMaterial {
        ca_crt: ca.tls_crt,
        server_crt: server.tls_crt,
        server_key: server.tls_key,
        client_crt: client.tls_crt,
        client_key: client.tls_key,
    })
}

fn der_blocks(pem: &str, suffix: &str) -> Result<Vec<Vec<u8>>, TransportError> {
    Ok(pki::pem_blocks(pem)
        .map_err(TransportError::Pki)?
        .into_iter()
        .filter(|(label, _)| label.ends_with(suffix))
        .map(|(_, der)| der)
        .collect())
}

/// The rustls server configuration: the server certificate, HTTP/1.1 by ALPN, and client
/// certificates verified against the sandbox CA when a client presents one.
pub(crate) fn server_config(
    tls: &TlsMaterial,
) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let config_err = |e: &dyn std::fmt::Display| TransportError::Config(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in der_blocks(&tls.ca_crt, "CERTIFICATE")? {
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| config_err(&e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| config_err(&e))?;
    let chain: Vec<CertificateDer<'static>> = der_blocks(&tls.server_crt, "CERTIFICATE")?
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = der_blocks(&tls.server_key, "PRIVATE KEY")?
        .into_iter()
        .next()
        .ok_or_else(|| TransportError::Config("the server key is missing".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
        .map_err(|e| config_err(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Per-connection facts the request handler can see.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// The connection is TLS.
    pub tls: bool,
    /// The peer presented a client certificate that the sandbox CA signed.
    pub client_cert: bool,
    abort: Arc<AtomicBool>,
}

impl ConnInfo {
    /// Makes the connection fail on its next write: the response is never sent.
    pub(crate) fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted connection, plain or TLS.
pub(crate) struct Conn {
    io: Io,
    info: ConnInfo,
}

impl Conn {
    pub(crate) fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.info.abort.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection dropped by an injected fault",
            )));
        }
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts plain or TLS connections for `axum::serve`.
pub(crate) struct Listener {
    addr: SocketAddr,
    inner: ListenerKind,
}

enum ListenerKind {
    Plain(TcpListener),
    /// Handshakes run in their own tasks; finished connections arrive here.
    Tls(mpsc::Receiver<(Conn, SocketAddr)>),
}

fn fresh_info(tls: bool, client_cert: bool) -> ConnInfo {
    ConnInfo {
        tls,
        client_cert,
        abort: Arc::new(AtomicBool::new(false)),
    }
}

impl Listener {
    /// Wraps a bound listener; with `tls`, spawns the accept-and-handshake task.
    pub(crate) fn new(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let inner = match tls {
            None => ListenerKind::Plain(listener),
            Some(config) => {
                let (tx, rx) = mpsc::channel(64);
                let acceptor = TlsAcceptor::from(config);
                // Ends (and frees the port) when the server drops the listener.
                tokio::spawn(async move {
                    loop {
                        let accepted = tokio::select! {
                            accepted = TcpListener::accept(&listener) => accepted,
                            _ = tx.closed() => return,
                        };
                        let (tcp, peer) = match accepted {
                            Ok(pair) => pair,
                            Err(e) => {
                                tracing::debug!("sandbox accept failed: {e}");
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                                continue;
                            }
                        };
                        let acceptor = acceptor.clone();
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                acceptor.accept(tcp),
                            )
                            .await;
                            match handshake {
                                Ok(Ok(stream)) => {
                                    let client_cert = stream
                                        .get_ref()
                                        .1
                                        .peer_certificates()
                                        .is_some_and(|c| !c.is_empty());
                                    let conn = Conn {
                                        io: Io::Tls(Box::new(stream)),
                                        info: fresh_info(true, client_cert),
                                    };
                                    let _ = tx.send((conn, peer)).await;
                                }
                                Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                                Err(_) => tracing::debug!("TLS handshake timed out"),
                            }
                        });
                    }
                });
                ListenerKind::Tls(rx)
            }
        };
        Ok(Self { addr, inner })
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match &mut self.inner {
                ListenerKind::Plain(listener) => match TcpListener::accept(listener).await {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        let conn = Conn {
                            io: Io::Plain(tcp),
                            info: fresh_info(false, false),
                        };
                        return (conn, peer);
                    }
                    Err(e) => {
                        tracing::debug!("sandbox accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                },
                ListenerKind::Tls(rx) => match rx.recv().await {
                    Some(pair) => return pair,
                    None => std::future::pending::<()>().await,
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>>
    for ConnInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> Self {
        stream.io().info().clone()
    }
}
