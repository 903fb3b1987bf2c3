//! A TLS terminator in front of a plain server, for `wss://` tests. livekit-server speaks
//! no TLS itself (in production a load balancer or LiveKit Cloud does), so a client's TLS
//! path is proven by putting this in front: a throwaway CA and a certificate for the
//! proxy's IP address, made with the `openssl` command, and rustls on the accepting side.
//! Clients trust the CA through `SSL_CERT_FILE`, which rustls-native-certs reads.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, ensure};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub struct TlsProxy {
    addr: SocketAddr,
    ca: PathBuf,
    sessions: Arc<AtomicU64>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TlsProxy {
    /// Listens on a free port of `ip` and forwards every TLS session's bytes to `upstream`.
    pub async fn start(ip: IpAddr, upstream: SocketAddr) -> Result<TlsProxy> {
        let dir = tempfile::tempdir()?;
        let (cert, key) = certificate_for(ip, dir.path())?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_file(&key)?,
        )?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let sessions = Arc::new(AtomicU64::new(0));
        let counted = sessions.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                    }
                });
            }
        });
        Ok(TlsProxy {
            addr,
            ca: dir.path().join("ca.pem"),
            sessions,
            task,
            _dir: dir,
        })
    }

    /// `wss://IP:PORT`.
    pub fn url(&self) -> String {
        format!("wss://{}", self.addr)
    }

    /// The CA to trust (`SSL_CERT_FILE`).
    pub fn ca_file(&self) -> &Path {
        &self.ca
    }

    /// TLS sessions completed so far.
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CA (`ca.pem`) and, signed by it, a server certificate for `ip` (`cert.pem`, `key.pem`).
/// rustls refuses a CA certificate used as the server's own, hence the two steps.
fn certificate_for(ip: IpAddr, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let path = |name: &str| dir.join(name).display().to_string();
    let openssl = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .context("running openssl (making test certificates)")?;
        ensure!(
            out.status.success(),
            "openssl {}: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=radio24 test CA",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.pem"),
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=radio24 test server",
        "-keyout",
        &path("key.pem"),
        "-out",
        &path("cert.csr"),
    ])?;
    std::fs::write(
        dir.join("ext.cnf"),
        format!("basicConstraints=CA:FALSE\nsubjectAltName=IP:{ip}\n"),
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("cert.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &path("ext.cnf"),
        "-out",
        &path("cert.pem"),
    ])?;
    Ok((dir.join("cert.pem"), dir.join("key.pem")))
}
