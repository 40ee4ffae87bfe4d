//! Each simulated cluster's own CA and serving certificate (rcgen), and
//! the rustls server configuration (ring provider, HTTP/1.1).

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// PEM-encoded material, kept across restarts so kubeconfigs stay valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Certs {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Certs {
    /// A new CA for `cluster`, and a serving certificate for 127.0.0.1 and
    /// localhost signed by it.
    pub fn generate(cluster: &str) -> Result<Certs> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("kubesim-ca {cluster}"));
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("kubesim-apiserver {cluster}"));
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Certs {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![
            CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
                .context("serving certificate")?,
        ];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).context("serving key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
