//! The mesh's root of trust and each primary's intermediate CA, in Istio's
//! plug-in CA format (the `cacerts` Secret: `ca-cert.pem`, `ca-key.pem`,
//! `root-cert.pem`, `cert-chain.pem`). Pure: PEM text in, PEM text out; the
//! files and the Secret are read and written by the callers.
//!
//! Private keys only ever travel as [`Sensitive`]: they print as their
//! fingerprint, and nothing here logs or returns them otherwise (messages
//! about a key name its problem, never its content).
//!
//! [`check_root`] is the one check of a root, run by `mesh validate` (every
//! command loads the mesh file) and again by `plug-ca` before it signs: a
//! root it accepts signs intermediates that istiod can sign workload
//! certificates with, for as long as they are valid.

use crate::rendered::{Sensitive, sha256_hex};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::asn1_rs::{Any, Class, FromDer, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;

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

/// The first certificate of a PEM text.
fn read_cert(cert_pem: &str) -> Result<Pem, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!("a PEM `{}` block, not a CERTIFICATE", pem.label));
    }
    Ok(pem)
}

fn parse_cert(pem: &Pem) -> Result<X509Certificate<'_>, String> {
    pem.parse_x509()
        .map_err(|e| format!("not an X.509 certificate ({e})"))
}

fn info_of(pem: &Pem, cert: &X509Certificate<'_>) -> CertInfo {
    CertInfo {
        sha256: sha256_hex(&pem.contents),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
    }
}

/// Reads the first certificate of a PEM text.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, String> {
    let pem = read_cert(cert_pem)?;
    Ok(info_of(&pem, &parse_cert(&pem)?))
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
    /// The key file's content is not a private key mesh can sign with.
    Key(String),
    NotCa,
    /// notBefore is in the future: nothing it signs verifies until then.
    NotYetValid {
        not_before: i64,
    },
    Expired {
        not_after: i64,
    },
    /// basicConstraints pathlen:0: no CA may be below it, and each
    /// primary's intermediate is one.
    PathLenZero,
    /// keyUsage is present without keyCertSign: it may sign no certificate.
    NoKeyCertSign,
    /// extendedKeyUsage is present without serverAuth or clientAuth: the
    /// workload certificates below it (mutual TLS: both) fail verification
    /// in verifiers that check the chain's usages (Go, OpenSSL).
    ExtendedKeyUsage {
        missing: &'static str,
    },
    /// The root expires before an intermediate signed now would: the
    /// chain, and every workload certificate below it, stops verifying
    /// when the root does, while istiod still uses the intermediate.
    Outlived {
        not_after: i64,
        intermediate_days: u32,
        /// Whole days the root has left: the longest intermediate that fits.
        days_left: i64,
    },
    KeyMismatch,
    /// The file holds more than one certificate: mesh would put them all in
    /// every primary's `root-cert.pem` while plans fingerprint only one.
    Bundle {
        count: usize,
    },
    /// Not a root: issued by another CA (an intermediate given as the root),
    /// or not signed by its own key. Go's x509 (istiod) and `openssl
    /// verify` accept a chain only up to a self-signed root.
    NotSelfSigned {
        why: String,
    },
    /// A critical extension no verifier here understands: Go's x509 and
    /// OpenSSL refuse every chain through such a certificate.
    UnknownCritical {
        oid: String,
    },
}

impl std::fmt::Display for RootProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootProblem::Cert(e) => write!(f, "the root certificate cannot be read: {e}"),
            RootProblem::Key(e) => write!(f, "the root key cannot be used: {e}"),
            RootProblem::NotCa => write!(
                f,
                "the root certificate is not a CA (no basicConstraints CA:true)"
            ),
            RootProblem::NotYetValid { not_before } => write!(
                f,
                "the root certificate is not valid before {} (its notBefore is in the future): \
                 nothing it signs verifies until then",
                date(*not_before)
            ),
            RootProblem::Expired { not_after } => {
                write!(f, "the root certificate expired on {}", date(*not_after))
            }
            RootProblem::PathLenZero => write!(
                f,
                "the root certificate has basicConstraints pathlen:0: it cannot sign an \
                 intermediate CA, and each primary's istiod signs with one"
            ),
            RootProblem::NoKeyCertSign => write!(
                f,
                "the root certificate's keyUsage lacks keyCertSign: it may not sign certificates"
            ),
            RootProblem::ExtendedKeyUsage { missing } => write!(
                f,
                "the root certificate's extendedKeyUsage lacks {missing}: workload certificates \
                 below it need serverAuth and clientAuth (mutual TLS), and verifiers check the \
                 whole chain"
            ),
            RootProblem::Outlived {
                not_after,
                intermediate_days,
                ..
            } => write!(
                f,
                "the root certificate expires on {}, before the intermediates it signs would \
                 (intermediate_days = {intermediate_days}): their certificates would stop \
                 verifying when the root does",
                date(*not_after)
            ),
            RootProblem::KeyMismatch => {
                write!(f, "the root key is not the key of the root certificate")
            }
            RootProblem::Bundle { count } => write!(
                f,
                "the root certificate file holds {count} certificates: it must hold exactly \
                 the mesh's one root"
            ),
            RootProblem::NotSelfSigned { why } => write!(
                f,
                "the root certificate is not a root: {why}; istiod (Go's x509) and openssl \
                 verify chains only up to a self-signed root"
            ),
            RootProblem::UnknownCritical { oid } => write!(
                f,
                "the root certificate has a critical extension {oid} that verifiers do not \
                 understand: Go's x509 (istiod) and openssl refuse every chain through it"
            ),
        }
    }
}

/// Checks that a root can do its job: sign, from `now`, intermediates
/// valid `intermediate_days` that sign workload certificates. That is a
/// CA certificate, valid now, whose basicConstraints allow a CA below it
/// (no pathlen, or at least 1), whose keyUsage (if any) has keyCertSign,
/// whose extendedKeyUsage (if any) allows serverAuth and clientAuth, and
/// that outlives the intermediates; and (when the key is given) a key
/// mesh can sign with that belongs to it.
pub fn check_root(
    cert_pem: &str,
    key_pem: Option<&Sensitive>,
    now: i64,
    intermediate_days: u32,
) -> Result<CertInfo, RootProblem> {
    let count = cert_pem.matches("-----BEGIN CERTIFICATE-----").count();
    if count > 1 {
        return Err(RootProblem::Bundle { count });
    }
    let pem = read_cert(cert_pem).map_err(RootProblem::Cert)?;
    let cert = parse_cert(&pem).map_err(RootProblem::Cert)?;
    let info = info_of(&pem, &cert);
    if !info.is_ca {
        return Err(RootProblem::NotCa);
    }
    let not_before = cert.validity().not_before.timestamp();
    if not_before > now {
        return Err(RootProblem::NotYetValid { not_before });
    }
    if info.not_after <= now {
        return Err(RootProblem::Expired {
            not_after: info.not_after,
        });
    }
    // is_ca read basicConstraints already; a second one (which x509-parser
    // reports as an error) made is_ca false.
    if let Ok(Some(bc)) = cert.basic_constraints()
        && bc.value.path_len_constraint == Some(0)
    {
        return Err(RootProblem::PathLenZero);
    }
    self_signed(&cert)?;
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => return Err(RootProblem::NoKeyCertSign),
        Ok(_) => {}
        Err(e) => {
            return Err(RootProblem::Cert(format!(
                "its keyUsage is unreadable ({e})"
            )));
        }
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if !eku.value.any => {
            let missing = match (eku.value.server_auth, eku.value.client_auth) {
                (true, true) => None,
                (true, false) => Some("clientAuth"),
                (false, true) => Some("serverAuth"),
                (false, false) => Some("serverAuth and clientAuth"),
            };
            if let Some(missing) = missing {
                return Err(RootProblem::ExtendedKeyUsage { missing });
            }
        }
        Ok(_) => {}
        Err(e) => {
            return Err(RootProblem::Cert(format!(
                "its extendedKeyUsage is unreadable ({e})"
            )));
        }
    }
    if now + i64::from(intermediate_days) * 86400 > info.not_after {
        return Err(RootProblem::Outlived {
            not_after: info.not_after,
            intermediate_days,
            days_left: (info.not_after - now) / 86400,
        });
    }
    if let Some(key) = key_pem {
        let pair = key_pair(key).map_err(RootProblem::Key)?;
        if pair.subject_public_key_info() != cert.tbs_certificate.subject_pki.raw {
            return Err(RootProblem::KeyMismatch);
        }
    }
    Ok(info)
}

/// A root is its own issuer, signed by its own key, with no critical
/// extension a verifier would not understand.
fn self_signed(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), RootProblem> {
    use x509_parser::extensions::ParsedExtension;
    if cert.issuer() != cert.subject() {
        return Err(RootProblem::NotSelfSigned {
            why: format!(
                "it was issued by `{}`, not by itself (`{}`): an intermediate, given as the root",
                crate::rendered::shown(&cert.issuer().to_string()),
                crate::rendered::shown(&cert.subject().to_string())
            ),
        });
    }
    // An algorithm ring cannot check (RSA-PSS) is not held against it.
    if let Err(x509_parser::error::X509Error::SignatureVerificationError) =
        cert.verify_signature(None)
    {
        return Err(RootProblem::NotSelfSigned {
            why: "its signature does not verify with its own key".into(),
        });
    }
    for ext in cert.extensions() {
        if ext.critical
            && matches!(
                ext.parsed_extension(),
                ParsedExtension::UnsupportedExtension { .. } | ParsedExtension::ParseError { .. }
            )
        {
            return Err(RootProblem::UnknownCritical {
                oid: ext.oid.to_id_string(),
            });
        }
    }
    Ok(())
}

/// A PEM private key as rcgen signs with it. ring reads PKCS#8 only, but
/// `openssl genrsa -traditional` (and OpenSSL 1.x's `genrsa`, which Istio's
/// cert recipe runs) writes PKCS#1, and `openssl ecparam -genkey` SEC1:
/// both are rewrapped, unchanged, in the PKCS#8 envelope. The key's
/// content never reaches a message: the errors are fixed phrases.
fn key_pair(key: &Sensitive) -> Result<KeyPair, String> {
    let text = key.expose();
    // Legacy PEM encryption puts headers in the block, which the PEM
    // reader would report as bad base64: name the real problem.
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(ENCRYPTED.into());
    }
    // `openssl ecparam -genkey` writes the curve first, in its own block.
    let mut curve_block: Option<Vec<u8>> = None;
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|_| {
            "it is not valid PEM (a BEGIN line without its END, or bad base64)".to_string()
        })?;
        let pkcs8 = match block.label.as_str() {
            "PRIVATE KEY" => block.contents,
            "RSA PRIVATE KEY" => pkcs8(&RSA_ALGORITHM, &block.contents),
            "EC PRIVATE KEY" => {
                let curve = sec1_curve(&block.contents, curve_block.as_deref())?;
                let algorithm = der(0x30, &[EC_PUBLIC_KEY_OID.as_slice(), &curve].concat());
                pkcs8(&algorithm, &block.contents)
            }
            "EC PARAMETERS" => {
                curve_block = Some(block.contents);
                continue;
            }
            "ENCRYPTED PRIVATE KEY" => return Err(ENCRYPTED.into()),
            // A certificate kept in the same file, say.
            _ => continue,
        };
        return KeyPair::try_from(pkcs8.as_slice()).map_err(|_| {
            "it is damaged or of a type mesh cannot sign with \
             (RSA of 2048 to 8192 bits, ECDSA P-256 or P-384, and Ed25519 are)"
                .to_string()
        });
    }
    Err(
        "it holds no private key (a PEM block PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
            .into(),
    )
}

const ENCRYPTED: &str = "it is encrypted, and mesh reads it without a passphrase: \
                         decrypt it (`openssl pkey -in KEY -out KEY.plain`), keep it mode 0600";

/// AlgorithmIdentifier rsaEncryption (1.2.840.113549.1.1.1), NULL parameters.
const RSA_ALGORITHM: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// OBJECT IDENTIFIER id-ecPublicKey (1.2.840.10045.2.1).
const EC_PUBLIC_KEY_OID: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// OBJECT IDENTIFIER prime256v1 (1.2.840.10045.3.1.7).
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OBJECT IDENTIFIER secp384r1 (1.3.132.0.34).
const P384_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A DER element: `tag`, the length, `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// PKCS#8 PrivateKeyInfo (version 0) around a PKCS#1 or SEC1 key.
fn pkcs8(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    der(
        0x30,
        &[&[0x02, 0x01, 0x00][..], algorithm, &der(0x04, key)].concat(),
    )
}

/// The curve of a SEC1 ECPrivateKey, as an OID element: its own
/// parameters ([0]), else the EC PARAMETERS block, else its private key's
/// length (32 bytes P-256, 48 P-384).
fn sec1_curve(sec1: &[u8], params_block: Option<&[u8]>) -> Result<Vec<u8>, String> {
    const BAD: &str = "its EC PRIVATE KEY block is not a SEC1 key";
    let (_, key) = Any::from_der(sec1).map_err(|_| BAD.to_string())?;
    if key.header.tag() != Tag::Sequence {
        return Err(BAD.into());
    }
    let mut rest = key.data;
    let mut params = None;
    let mut secret_len = 0;
    while !rest.is_empty() {
        let (r, item) = Any::from_der(rest).map_err(|_| BAD.to_string())?;
        rest = r;
        if item.header.class() == Class::ContextSpecific && item.header.tag() == Tag(0) {
            params = Some(item.data);
        } else if item.header.tag() == Tag::OctetString {
            secret_len = item.data.len();
        }
    }
    let curve = match params.or(params_block) {
        Some(p) => p.to_vec(),
        None if secret_len == 32 => P256_OID.to_vec(),
        None if secret_len == 48 => P384_OID.to_vec(),
        None => return Err("its EC PRIVATE KEY names no curve".into()),
    };
    if curve.first() != Some(&0x06) {
        return Err(
            "its curve is given by explicit parameters: write it with a named curve \
             (`openssl ec -in KEY -param_enc named_curve -out KEY.named`)"
                .into(),
        );
    }
    if curve != P256_OID && curve != P384_OID {
        return Err("its curve is not one mesh can sign with (ECDSA P-256 or P-384)".into());
    }
    Ok(curve)
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
    // The same check as `mesh validate`: no intermediate from a root that
    // cannot carry it.
    check_root(root_cert_pem, Some(root_key), now(), days).map_err(|p| p.to_string())?;
    let (root_not_before, root_not_after) = read_cert(root_cert_pem).and_then(|pem| {
        let v = parse_cert(&pem)?.validity().clone();
        Ok((v.not_before.to_datetime(), v.not_after.to_datetime()))
    })?;
    let root_key = key_pair(root_key).map_err(|e| RootProblem::Key(e).to_string())?;
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
    // An hour back for clock skew, but within the root's validity, as a
    // chain must be (check_root made sure the root outlives `days`; the
    // bound only absorbs the second that passed since).
    params.not_before = (now - Duration::from_secs(3600)).max(root_not_before);
    params.not_after = (now + Duration::from_secs(u64::from(days) * 86400)).min(root_not_after);
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

/// The certificates of a PEM bundle (a `root-cert.pem` trusting several
/// roots), each as its sha256 (of the DER, as [`inspect`] gives it) and
/// its own PEM text, in the bundle's order. Blocks that are not
/// certificates are skipped.
pub fn bundle(pem: &str) -> Vec<(String, String)> {
    certificates(pem)
        .into_iter()
        .map(|der| {
            let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect();
            (
                sha256_hex(&der),
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    lines.join("\n")
                ),
            )
        })
        .collect()
}

/// The DER of each certificate of a PEM text, in order; blocks that are
/// not certificates are skipped.
pub fn certificates(pem: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

/// Whether `key` is the private key of the certificate `cert_pem` (what
/// istiod checks of `ca-cert.pem` and `ca-key.pem`).
pub fn key_matches(cert_pem: &str, key: &Sensitive) -> Result<(), String> {
    let pem = read_cert(cert_pem)?;
    let cert = parse_cert(&pem)?;
    let pair = key_pair(key)?;
    if pair.subject_public_key_info() == cert.tbs_certificate.subject_pki.raw {
        Ok(())
    } else {
        Err("is not the key of its ca-cert.pem".into())
    }
}

/// Root certificates joined into one `root-cert.pem`, in the order given.
pub fn join_bundle(pems: &[&str]) -> String {
    pems.iter().map(|p| normalise_pem(p)).collect()
}

/// PEM text ending in exactly one newline.
fn normalise_pem(pem: &str) -> String {
    format!("{}\n", pem.trim_end())
}

/// How long before an intermediate expires mesh rotates it (and `mesh
/// check` warns).
pub const ROTATE_WITHIN_DAYS: i64 = 30;

/// Whether the first certificate of `cert_pem` is signed by the first of
/// `root_pem` (its signature verified with the root's key), and its expiry.
pub fn verify_signed_by(cert_pem: &str, root_pem: &str) -> Result<i64, String> {
    use x509_parser::prelude::FromDer;
    let certs = certificates(cert_pem);
    let roots = certificates(root_pem);
    let (Some(der), Some(root_der)) = (certs.first(), roots.first()) else {
        return Err("not a PEM certificate".into());
    };
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let (_, root) = x509_parser::certificate::X509Certificate::from_der(root_der)
        .map_err(|e| format!("the root is not an X.509 certificate ({e})"))?;
    if cert.issuer() != root.subject() {
        return Err(format!(
            "it was issued by `{}`, not by the mesh's root `{}`",
            cert.issuer(),
            root.subject()
        ));
    }
    cert.verify_signature(Some(root.public_key()))
        .map_err(|e| format!("its signature does not verify with the mesh's root key ({e})"))?;
    Ok(cert.validity().not_after.timestamp())
}

/// Whether a certificate chain (a workload's: its certificate, then the
/// intermediates) was issued under `root_pem`: one of its certificates is
/// the root, or is signed by it.
pub fn signed_under(chain_pem: &str, root_pem: &str) -> bool {
    let root = certificates(root_pem);
    bundle(chain_pem)
        .iter()
        .any(|(_, pem)| certificates(pem) == root || verify_signed_by(pem, root_pem).is_ok())
}

/// The same certificates, whatever the PEM text around them.
pub fn same_certs(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (a, b) = (certificates(&a), certificates(&b));
    !a.is_empty() && a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intermediate_chains_to_its_root_and_not_to_another() {
        let (root, key) = new_root("check root").unwrap();
        let (other, _) = new_root("other root").unwrap();
        let ca = intermediate(&root, &key, "c1", 365).unwrap();
        let not_after = verify_signed_by(&ca.cert_pem, &root).unwrap();
        assert!(not_after > now());
        let why = verify_signed_by(&ca.cert_pem, &other).unwrap_err();
        assert!(why.contains("not by the mesh's root"), "{why}");
        assert!(verify_signed_by("nonsense", &root).is_err());
        assert!(same_certs(format!("\n{root}").as_bytes(), root.as_bytes()));
        assert!(!same_certs(other.as_bytes(), root.as_bytes()));
        assert!(!same_certs(b"", b""));
        // A workload's chain: issued under the root of its intermediate,
        // whether or not the chain carries the root itself.
        assert!(signed_under(&ca.chain_pem, &root));
        assert!(signed_under(&ca.cert_pem, &root));
        assert!(!signed_under(&ca.cert_pem, &other));
        assert!(!signed_under("", &root));
    }

    #[test]
    fn a_new_root_passes_its_checks_and_signs_intermediates() {
        let (cert, key) = new_root("mesh test root").unwrap();
        let info = check_root(&cert, Some(&key), now(), 365).unwrap();
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
            check_root(&cert, Some(&other_key), now(), 365),
            Err(RootProblem::KeyMismatch)
        );
        assert!(matches!(
            check_root(&cert, None, now() + 11 * 365 * 86400, 365),
            Err(RootProblem::Expired { .. })
        ));
        let (root, root_key) = new_root("r").unwrap();
        let leaf = intermediate(&root, &root_key, "c", 1).unwrap();
        // An intermediate (pathlen:0) is a CA but cannot be the mesh's root:
        // it can sign no intermediate. A PEM that is not a certificate is named.
        assert_eq!(
            check_root(&leaf.cert_pem, None, now(), 1),
            Err(RootProblem::PathLenZero)
        );
        assert!(matches!(
            check_root("hello", None, now(), 365),
            Err(RootProblem::Cert(_))
        ));
        assert!(matches!(
            check_root(&cert, Some(&Sensitive::new("nope")), now(), 365),
            Err(RootProblem::Key(_))
        ));
        assert_eq!(date(86400 * 365), "1971-01-01");
    }
}
