//! The root of trust as users bring it: keys in each encoding openssl
//! writes, and the roots that cannot do the job, each refused with its
//! reason (`providers::ca::check_root`, which both `mesh validate` and the
//! `plug-ca` step run).

use base64::Engine as _;
use providers::Sensitive;
use providers::ca::{self, CertInfo, RootProblem};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::PathBuf;
use std::time::Duration;
use x509_parser::asn1_rs::{Any, FromDer};

const DAY: Duration = Duration::from_secs(86400);

fn check(
    cert: &str,
    key: Option<&Sensitive>,
    now: i64,
    intermediate_days: u32,
) -> Result<CertInfo, RootProblem> {
    ca::check_root(cert, key, now, intermediate_days)
}

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/trust-encodings")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The key inside a PKCS#8 PrivateKeyInfo: PKCS#1 for RSA, SEC1 (without
/// its curve parameters) for ECDSA.
fn unwrap_pkcs8(der: &[u8]) -> Vec<u8> {
    let (_, info) = Any::from_der(der).unwrap();
    let (rest, _version) = Any::from_der(info.data).unwrap();
    let (rest, _algorithm) = Any::from_der(rest).unwrap();
    let (_, key) = Any::from_der(rest).unwrap();
    key.data.to_vec()
}

/// A self-signed root, `edit`ed, valid from an hour ago for ten years.
fn root(edit: impl FnOnce(&mut CertificateParams)) -> (String, Sensitive) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "test root");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - Duration::from_secs(3600);
    p.not_after = now + 10 * 365 * DAY;
    edit(&mut p);
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), Sensitive::new(key.serialize_pem()))
}

/// The intermediate is signed by the root's key and names it as issuer.
fn assert_signed_by(root_pem: &str, intermediate_pem: &str) {
    let (_, r) = x509_parser::pem::parse_x509_pem(root_pem.as_bytes()).unwrap();
    let r = r.parse_x509().unwrap();
    let (_, i) = x509_parser::pem::parse_x509_pem(intermediate_pem.as_bytes()).unwrap();
    let i = i.parse_x509().unwrap();
    i.verify_signature(Some(r.public_key()))
        .expect("the intermediate's signature verifies with the root's key");
    assert_eq!(i.issuer(), r.subject());
}

/// `openssl genrsa -traditional` (PKCS#1), `openssl ecparam -genkey`
/// (SEC1 after an EC PARAMETERS block) and `-noout` (SEC1 alone): each is
/// read, matched with its certificate and signs an intermediate.
#[test]
fn openssl_key_encodings_are_roots_that_sign() {
    for name in ["rsa-pkcs1", "ec-sec1", "ec384-sec1"] {
        let cert = fixture(&format!("{name}-cert.pem"));
        let key = Sensitive::new(fixture(&format!("{name}-key.pem")));
        let info =
            check(&cert, Some(&key), ca::now(), 365).unwrap_or_else(|p| panic!("{name}: {p}"));
        assert_eq!(info.subject, "O=Istio, CN=Root CA", "{name}");
        let i = ca::intermediate(&cert, &key, "cluster1", 365)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_signed_by(&cert, &i.cert_pem);
        // A key of another root is still told apart.
        let other = Sensitive::new(fixture("ec384-sec1-key.pem"));
        if name != "ec384-sec1" {
            assert_eq!(
                check(&cert, Some(&other), ca::now(), 365),
                Err(RootProblem::KeyMismatch),
                "{name}"
            );
        }
    }
}

/// SEC1 without curve parameters (rcgen's own P-256 and P-384 keys,
/// unwrapped from PKCS#8): the curve follows from the key's length.
#[test]
fn sec1_without_parameters_is_read() {
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
    ] {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap().pem();
        let sec1 = pem("EC PRIVATE KEY", &unwrap_pkcs8(&key.serialize_der()));
        let sec1 = Sensitive::new(sec1);
        check(&cert, Some(&sec1), ca::now(), 365).unwrap();
        let i = ca::intermediate(&cert, &sec1, "c", 30).unwrap();
        assert_signed_by(&cert, &i.cert_pem);
    }
}

/// Every root that could not sign the intermediates, or whose
/// intermediates could not sign workload certificates, is refused with
/// its reason.
#[test]
fn unusable_roots_are_refused_with_the_reason() {
    let now = ca::now();
    type Edit = Box<dyn FnOnce(&mut CertificateParams)>;
    let cases: Vec<(&str, Edit, u32, &str)> = vec![
        (
            "not yet valid",
            Box::new(|p| p.not_before += 4 * 365 * DAY),
            365,
            "the root certificate is not valid before",
        ),
        (
            "pathlen:0",
            Box::new(|p| p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))),
            365,
            "basicConstraints pathlen:0: it cannot sign an intermediate CA",
        ),
        (
            "no keyCertSign",
            Box::new(|p| p.key_usages = vec![KeyUsagePurpose::DigitalSignature]),
            365,
            "keyUsage lacks keyCertSign",
        ),
        (
            "serverAuth only",
            Box::new(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]),
            365,
            "extendedKeyUsage lacks clientAuth",
        ),
        (
            "10-day root, 365-day intermediates",
            Box::new(|p| p.not_after = p.not_before + 10 * DAY),
            365,
            "before the intermediates it signs would",
        ),
        (
            "10-day root, 10-day intermediates",
            Box::new(|p| p.not_after = p.not_before + 10 * DAY),
            10,
            "intermediate_days = 10",
        ),
    ];
    for (what, edit, days, reason) in cases {
        let (cert, key) = root(edit);
        let problem = check(&cert, Some(&key), now, days).expect_err(what);
        let message = problem.to_string();
        assert!(message.contains(reason), "{what}: {message}");
        // The check at apply time is the same: no intermediate is made.
        assert!(
            ca::intermediate(&cert, &key, "c", days).is_err(),
            "{what}: an intermediate was made"
        );
    }
    // A 10-day root signs intermediates of 9 days: they end before it.
    let (cert, key) = root(|p| p.not_after = p.not_before + 10 * DAY);
    check(&cert, Some(&key), now, 9).unwrap();
    // pathlen:1 and keyUsage with keyCertSign are what a root needs.
    let (cert, key) = root(|p| p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1)));
    check(&cert, Some(&key), now, 365).unwrap();
    let i = ca::intermediate(&cert, &key, "c", 365).unwrap();
    assert_signed_by(&cert, &i.cert_pem);
}

/// What is not a root is refused as one, as `openssl verify` and Go's
/// x509 (istiod) refuse it: an intermediate given as the root, a
/// certificate naming itself as issuer but signed by another key, and one
/// with a critical extension verifiers do not understand.
#[test]
fn what_is_not_a_root_is_refused() {
    let now = ca::now();
    // An intermediate of another tool (no pathlen), signed by a root.
    let root_key = KeyPair::generate().unwrap();
    let mut rp = CertificateParams::new(Vec::<String>::new()).unwrap();
    rp.distinguished_name
        .push(DnType::CommonName, "the real root");
    rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let real_root = rcgen::Issuer::new(rp, root_key);
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "an intermediate");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let intermediate = p.signed_by(&key, &real_root).unwrap().pem();
    let why = check(&intermediate, None, now, 30).unwrap_err().to_string();
    assert!(
        why.contains("is not a root: it was issued by `CN=the real root`"),
        "{why}"
    );
    // Its own name as issuer, another key's signature.
    let issuer_key = KeyPair::generate().unwrap();
    let mut ip = CertificateParams::new(Vec::<String>::new()).unwrap();
    ip.distinguished_name.push(DnType::CommonName, "test root");
    ip.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ip, issuer_key);
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "test root");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let forged = p.signed_by(&key, &issuer).unwrap().pem();
    let why = check(&forged, None, now, 30).unwrap_err().to_string();
    assert!(why.contains("does not verify with its own key"), "{why}");
    // An unknown critical extension.
    let (odd, _) = root(|p| {
        let mut e =
            rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![5, 0]);
        e.set_criticality(true);
        p.custom_extensions.push(e);
    });
    let why = check(&odd, None, now, 30).unwrap_err().to_string();
    assert!(
        why.contains("critical extension 1.3.6.1.4.1.55555.1"),
        "{why}"
    );
    // The same extension, not critical, is no problem.
    let (fine, key) = root(|p| {
        p.custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 55555, 1],
                vec![5, 0],
            ));
    });
    check(&fine, Some(&key), now, 30).unwrap();
}

/// An intermediate lies within its root's validity, even for a root made
/// minutes ago (the intermediate otherwise starts an hour back).
#[test]
fn intermediates_lie_within_their_root() {
    let (cert, key) =
        root(|p| p.not_before = time::OffsetDateTime::now_utc() - 60 * Duration::from_secs(1));
    let i = ca::intermediate(&cert, &key, "c", 30).unwrap();
    let (_, r) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
    let r = r.parse_x509().unwrap();
    let (_, c) = x509_parser::pem::parse_x509_pem(i.cert_pem.as_bytes()).unwrap();
    let c = c.parse_x509().unwrap();
    assert!(c.validity().not_before >= r.validity().not_before);
    assert!(c.validity().not_after <= r.validity().not_after);
}

/// Keys that cannot be used say why, and never show what they hold.
#[test]
fn unreadable_keys_say_why_and_never_show_the_key() {
    let (cert, key) = root(|_| {});
    let body: String = key
        .expose()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let encrypted_pkcs8 = pem("ENCRYPTED PRIVATE KEY", body.as_bytes());
    let legacy_encrypted = format!(
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\n{body}\n-----END RSA PRIVATE KEY-----\n"
    );
    let cases = [
        (encrypted_pkcs8.as_str(), "encrypted"),
        (legacy_encrypted.as_str(), "encrypted"),
        (cert.as_str(), "no private key"),
        ("hello\n", "no private key"),
        (
            "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
            "not valid PEM",
        ),
    ];
    for (text, reason) in cases {
        let problem = check(&cert, Some(&Sensitive::new(text)), ca::now(), 365).expect_err(reason);
        let message = problem.to_string();
        assert!(matches!(problem, RootProblem::Key(_)), "{message}");
        assert!(message.contains(reason), "{message}");
        assert!(!message.contains(&body[..24]), "{message}");
    }
}
