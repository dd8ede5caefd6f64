//! Client certificates (mTLS): per-tenant CAs, and the certificate's identity.
//!
//! The TLS listener asks for a client certificate and verifies it against every
//! tenant's `client_ca` (an unknown CA or an expired certificate fails the handshake,
//! which is audited as `client_certificate_rejected`). A certificate stays optional at
//! the TLS level: routes decide whether they need one. At request time the certificate
//! belongs to the one tenant whose CA verifies it; its identity is its first SAN URI
//! (a SPIFFE ID, say), else its first SAN DNS name, else its subject CN.
//!
//! The listener sends no CA names in its certificate request, so a stranger cannot
//! learn which tenants the gateway serves.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::config::{Problem, Tenant};
use toml::Spanned;

/// The client certificate chain of the connection a request came on (a request
/// extension). Embedders that terminate TLS themselves insert it to use `mtls` routes.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    chain: Arc<[CertificateDer<'static>]>,
}

impl ClientCertificate {
    /// The chain as the client sent it, end-entity first. `None` when empty.
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Option<Self> {
        (!chain.is_empty()).then(|| ClientCertificate {
            chain: chain.into(),
        })
    }
}

/// Every tenant's client CA.
#[derive(Default)]
pub(crate) struct TenantCas {
    tenants: Vec<(String, Arc<dyn ClientCertVerifier>)>,
    union: Option<Arc<dyn ClientCertVerifier>>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TenantCas {
    pub(crate) fn load(tenants: &[Spanned<Tenant>], problems: &mut Vec<Problem>) -> Self {
        let mut out = TenantCas::default();
        let mut all = rustls::RootCertStore::empty();
        for t in tenants {
            let tenant = t.get_ref();
            let Some(ca) = &tenant.client_ca else {
                continue;
            };
            let path = ca.clone();
            let mut roots = rustls::RootCertStore::empty();
            let loaded = CertificateDer::pem_file_iter(&path)
                .map_err(|e| e.to_string())
                .and_then(|it| {
                    for c in it {
                        let c = c.map_err(|e| e.to_string())?;
                        roots.add(c.clone()).map_err(|e| e.to_string())?;
                        all.add(c).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                });
            let built = loaded.and_then(|()| {
                if roots.is_empty() {
                    return Err("no certificate in the file".into());
                }
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| e.to_string())
            });
            match built {
                Ok(v) => out.tenants.push((tenant.name.clone(), v)),
                Err(e) => problems.push(Problem::at(
                    t,
                    "client_ca",
                    format!("tenant {:?}", tenant.name),
                    format!("client_ca {}: {e}", path.display()),
                )),
            }
        }
        if !all.is_empty() {
            out.union = WebPkiClientVerifier::builder_with_provider(Arc::new(all), provider())
                .allow_unauthenticated()
                .build()
                .ok();
        }
        out
    }

    pub(crate) fn union(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.union.clone()
    }

    /// The tenant whose CA issued `cert` (exactly one must) and the certificate's
    /// identity.
    pub(crate) fn identify(&self, cert: &ClientCertificate) -> Option<(String, String)> {
        let (end_entity, intermediates) = cert.chain.split_first()?;
        let now = UnixTime::now();
        let mut owners = self
            .tenants
            .iter()
            .filter(|(_, v)| v.verify_client_cert(end_entity, intermediates, now).is_ok());
        let (tenant, _) = owners.next()?;
        if owners.next().is_some() {
            return None;
        }
        Some((tenant.clone(), identity(end_entity)?))
    }
}

/// First SAN URI, else first SAN DNS name, else the subject CN.
fn identity(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        let names = &san.value.general_names;
        let uri = names.iter().find_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        });
        let dns = names.iter().find_map(|n| match n {
            GeneralName::DNSName(d) => Some(*d),
            _ => None,
        });
        if let Some(name) = uri.or(dns) {
            return Some(name.to_string());
        }
    }
    parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// The listener's client-certificate verifier: the current configuration's CAs,
/// swapped on reload.
#[derive(Debug)]
pub(crate) struct ReloadableVerifier {
    current: ArcSwapOption<Holder>,
    algorithms: WebPkiSupportedAlgorithms,
}

struct Holder(Arc<dyn ClientCertVerifier>);

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Holder")
    }
}

impl ReloadableVerifier {
    pub(crate) fn new(initial: Option<Arc<dyn ClientCertVerifier>>) -> Self {
        let v = ReloadableVerifier {
            current: ArcSwapOption::empty(),
            algorithms: provider().signature_verification_algorithms,
        };
        v.set(initial);
        v
    }

    pub(crate) fn set(&self, verifier: Option<Arc<dyn ClientCertVerifier>>) {
        self.current.store(verifier.map(|v| Arc::new(Holder(v))));
    }
}

impl ClientCertVerifier for ReloadableVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current.load().is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &*self.current.load() {
            Some(h) => h.0.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
