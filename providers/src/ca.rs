//! The mesh's root of trust and each primary's intermediate CA, in Istio's
//! plug-in CA format (the `cacerts` Secret: `ca-cert.pem`, `ca-key.pem`,
//! `root-cert.pem`, `cert-chain.pem`). Pure: PEM text in, PEM text out; the
//! files and the Secret are read and written by the callers.
//!
//! Private keys only ever travel as [`Sensitive`]: they print as their
//! fingerprint, and nothing here logs or returns them otherwise.

use crate::rendered::{Sensitive, sha256_hex};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a certificate says about itself, for plans, state and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// sha256 of the DER: the certificate's fingerprint.
    pub sha256: String,
    /// Seconds since the epoch.
    pub not_after: i64,
    pub is_ca: bool,
    /// The subject, as `CN=…, O=…`.
    pub subject: String,
    pub issuer: String,
}

/// Reads the first certificate of a PEM text.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!("a PEM `{}` block, not a CERTIFICATE", pem.label));
    }
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    Ok(CertInfo {
        sha256: sha256_hex(&pem.contents),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
    })
}

/// The SubjectPublicKeyInfo of a certificate (DER).
fn certificate_spki(cert_pem: &str) -> Result<Vec<u8>, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A date for messages: `2027-11-25`.
pub fn date(secs: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// What is wrong with a root, in the words of the mesh file's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootProblem {
    /// The certificate file's content is not a PEM certificate.
    Cert(String),
    /// The key file's content is not a PEM private key.
    Key(String),
    NotCa,
    Expired {
        not_after: i64,
    },
    KeyMismatch,
}

impl std::fmt::Display for RootProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootProblem::Cert(e) => write!(f, "the root certificate cannot be read: {e}"),
            RootProblem::Key(e) => write!(f, "the root key cannot be read: {e}"),
            RootProblem::NotCa => write!(
                f,
                "the root certificate is not a CA (no basicConstraints CA:true)"
            ),
            RootProblem::Expired { not_after } => {
                write!(f, "the root certificate expired on {}", date(*not_after))
            }
            RootProblem::KeyMismatch => {
                write!(f, "the root key is not the key of the root certificate")
            }
        }
    }
}

/// Checks a root: a CA certificate, not expired at `now`, and (when the key
/// is given) the key belongs to it.
pub fn check_root(
    cert_pem: &str,
    key_pem: Option<&Sensitive>,
    now: i64,
) -> Result<CertInfo, RootProblem> {
    let info = inspect(cert_pem).map_err(RootProblem::Cert)?;
    if !info.is_ca {
        return Err(RootProblem::NotCa);
    }
    if info.not_after <= now {
        return Err(RootProblem::Expired {
            not_after: info.not_after,
        });
    }
    if let Some(key) = key_pem {
        let pair = KeyPair::from_pem(key.expose()).map_err(|e| RootProblem::Key(e.to_string()))?;
        let spki = certificate_spki(cert_pem).map_err(RootProblem::Cert)?;
        if pair.subject_public_key_info() != spki {
            return Err(RootProblem::KeyMismatch);
        }
    }
    Ok(info)
}

/// A new root CA (ECDSA P-256, ten years): `(certificate PEM, key PEM)`.
pub fn new_root(common_name: &str) -> Result<(String, Sensitive), String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Istio");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(10 * 365 * 86400);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), Sensitive::new(key.serialize_pem())))
}

/// One primary's plug-in CA, Istio's `cacerts` format.
pub struct Intermediate {
    /// `ca-cert.pem`: the intermediate's certificate.
    pub cert_pem: String,
    /// `ca-key.pem`.
    pub key_pem: Sensitive,
    /// `cert-chain.pem`: the intermediate, then the root.
    pub chain_pem: String,
    /// `root-cert.pem`.
    pub root_pem: String,
    pub info: CertInfo,
}

/// A new intermediate CA for `cluster`, signed by the root, valid `days`
/// (as Istio's `tools/certs` Makefile makes them: CN "Intermediate CA",
/// O "Istio", L the cluster).
pub fn intermediate(
    root_cert_pem: &str,
    root_key: &Sensitive,
    cluster: &str,
    days: u32,
) -> Result<Intermediate, String> {
    let root_key = KeyPair::from_pem(root_key.expose())
        .map_err(|e| format!("the root key cannot be read: {e}"))?;
    let issuer = Issuer::from_ca_cert_pem(root_cert_pem, root_key)
        .map_err(|e| format!("the root certificate cannot be used to sign: {e}"))?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Istio");
    params
        .distinguished_name
        .push(DnType::CommonName, "Intermediate CA");
    params
        .distinguished_name
        .push(DnType::LocalityName, cluster);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(u64::from(days) * 86400);
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    let cert_pem = cert.pem();
    let info = inspect(&cert_pem)?;
    let root_pem = normalise_pem(root_cert_pem);
    Ok(Intermediate {
        chain_pem: format!("{cert_pem}{root_pem}"),
        cert_pem,
        key_pem: Sensitive::new(key.serialize_pem()),
        root_pem,
        info,
    })
}

/// PEM text ending in exactly one newline.
fn normalise_pem(pem: &str) -> String {
    format!("{}\n", pem.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_root_passes_its_checks_and_signs_intermediates() {
        let (cert, key) = new_root("mesh test root").unwrap();
        let info = check_root(&cert, Some(&key), now()).unwrap();
        assert!(info.is_ca);
        assert!(info.not_after > now() + 9 * 365 * 86400);
        let i = intermediate(&cert, &key, "cluster1", 30).unwrap();
        assert!(i.info.is_ca);
        assert_eq!(i.info.issuer, info.subject);
        assert!(i.info.subject.contains("cluster1"), "{}", i.info.subject);
        assert!((i.info.not_after - now() - 30 * 86400).abs() < 3600 * 2);
        assert!(i.chain_pem.starts_with(&i.cert_pem) && i.chain_pem.ends_with(&i.root_pem));
        // The key prints only as its fingerprint.
        assert!(!format!("{:?}", i.key_pem).contains("PRIVATE KEY"));
    }

    #[test]
    fn a_wrong_root_is_named() {
        let (cert, _) = new_root("a").unwrap();
        let (_, other_key) = new_root("b").unwrap();
        assert_eq!(
            check_root(&cert, Some(&other_key), now()),
            Err(RootProblem::KeyMismatch)
        );
        assert!(matches!(
            check_root(&cert, None, now() + 11 * 365 * 86400),
            Err(RootProblem::Expired { .. })
        ));
        let (root, root_key) = new_root("r").unwrap();
        let leaf = intermediate(&root, &root_key, "c", 1).unwrap();
        // An intermediate is a CA; a PEM that is not a certificate is named.
        assert!(check_root(&leaf.cert_pem, None, now()).is_ok());
        assert!(matches!(
            check_root("hello", None, now()),
            Err(RootProblem::Cert(_))
        ));
        assert!(matches!(
            check_root(&cert, Some(&Sensitive::new("nope")), now()),
            Err(RootProblem::Key(_))
        ));
        assert_eq!(date(86400 * 365), "1971-01-01");
    }
}
