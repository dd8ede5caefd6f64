//! Connections to PostgreSQL. In the clear unless the URL says `sslmode=require`; then
//! TLS, with the server's certificate and host name verified against the system's roots
//! and the CA file `PGSSLROOTCERT` names (as libpq's `verify-full`). A failed handshake
//! says what failed: the certificate's issuer, its host name, its dates, or the protocol.

use std::error::Error as _;

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};
use rustls::CertificateError;

use crate::error::{Error, Result};

/// Connects to `url` (a libpq key/value string or URI).
///
/// # Errors
///
/// [`Error::Postgres`] when the server cannot be reached, refuses, or TLS fails;
/// [`Error::Format`] when `PGSSLROOTCERT` cannot be read.
pub fn connect(url: &str) -> Result<Client> {
    // `prefer` is TLS without verification or the clear, whichever the server offers:
    // neither is what it seems. Refused when written out; unwritten, the clear.
    if url
        .split(|c: char| c.is_whitespace() || c == '&' || c == '?')
        .any(|p| p == "sslmode=prefer")
    {
        return Err(Error::Format {
            path: "postgres".into(),
            message: "sslmode=prefer is not supported: use sslmode=require (TLS, certificate and host name verified) or sslmode=disable".into(),
        });
    }
    let config: Config = url.parse()?;
    if config.get_ssl_mode() != SslMode::Require {
        return Ok(config.connect(NoTls)?);
    }
    Ok(config.connect(tls()?)?)
}

fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = std::env::var_os("PGSSLROOTCERT") {
        let path = std::path::PathBuf::from(path);
        let bad = |message: String| Error::Format {
            path: path.clone(),
            message: format!("PGSSLROOTCERT: {message}"),
        };
        let certs = CertificateDer::pem_file_iter(&path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(e.to_string()))?;
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Unavailable(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// What failed in a TLS handshake with the server, if that is what `e` is.
pub(crate) fn tls_failure(e: &postgres::Error) -> Option<String> {
    if e.to_string().contains("server does not support TLS") {
        return Some(
            "TLS: the server does not offer TLS (sslmode=require); turn `ssl` on in postgresql.conf"
                .into(),
        );
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>());
        if let Some(tls) = inner.or_else(|| s.downcast_ref::<rustls::Error>()) {
            return Some(describe(tls));
        }
        source = s.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "TLS certificate: it does not name the host connected to (check `host`, or \
                 connect by the name on the certificate with `hostaddr` for the address)"
                    .into()
            }
            CertificateError::UnknownIssuer => {
                "TLS certificate: not signed by a trusted CA (name the server's CA file in \
                 PGSSLROOTCERT)"
                    .into()
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                "TLS certificate: expired or not valid yet".into()
            }
            other => format!("TLS certificate: refused ({other:?})"),
        },
        other => format!("TLS protocol: {other}"),
    }
}
