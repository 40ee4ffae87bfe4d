//! `cacerts` and `published root`: each primary signs with an intermediate
//! of the mesh's root (its `cacerts`), and publishes that root to its
//! workloads (`istio-ca-root-cert`); a root rotation under way is named.

use super::*;
use crate::ca::ROTATE_WITHIN_DAYS;
use crate::istio::istiod_name;

pub(super) async fn trust(
    spec: &ClusterSpec,
    conn: &Connection,
    trust: &TrustSpec,
) -> Result<Vec<Check>, ClusterError> {
    let secret = crate::k8s::get(conn, &object("v1", "Secret", Some(NS), "cacerts")).await?;
    let files = secret.map(|s| {
        let file = |k: &str| {
            crate::k8s::secret_data(&s, k).map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        Cacerts {
            roots: file("root-cert.pem"),
            ca: file("ca-cert.pem"),
        }
    });
    let cm = crate::k8s::get(
        conn,
        &object("v1", "ConfigMap", Some(NS), crate::istio::ROOT_CONFIGMAP),
    )
    .await?;
    let published = cm.as_ref().and_then(|cm| {
        cm.data
            .pointer("/data/root-cert.pem")
            .and_then(Value::as_str)
            .map(String::from)
    });
    Ok(vec![
        cacerts(spec, trust, files.as_ref(), crate::ca::now()),
        published_root(spec, trust, published.as_deref()),
    ])
}

/// The files of Secret `cacerts` the verdict reads.
struct Cacerts {
    roots: Option<String>,
    ca: Option<String>,
}

fn short(s: &str) -> String {
    s.chars().take(16).collect()
}

/// `cacerts`: the mesh's root alone, an intermediate it signed, not
/// expired (a WARN within the rotation window, at `now`); during a root
/// rotation, two roots and an intermediate signed by one of them.
fn cacerts(spec: &ClusterSpec, trust: &TrustSpec, files: Option<&Cacerts>, now: i64) -> Check {
    let c = &spec.name;
    let Some(files) = files else {
        return Check::fail(
            c,
            "cacerts",
            format!("Secret {NS}/cacerts missing: istiod signs with a root of its own, which the other clusters do not trust"),
        )
        .fix(MESH_APPLY);
    };
    let roots = files
        .roots
        .as_deref()
        .map(crate::ca::bundle)
        .unwrap_or_default();
    let root = roots.first().map(|(sha, _)| sha.clone());
    let bundle = roots.len();
    // A root rotation under way (phase 1 or 2): the mesh's root and
    // the old one, the intermediate signed by one of them.
    let rotating = roots.len() == 2 && roots.iter().any(|(s, _)| *s == trust.root_sha256);
    match (root, files.ca.as_deref()) {
        (Some(_), Some(ca)) if rotating => rotating_cacerts(spec, trust, &roots, ca),
        (Some(r), _) if r != trust.root_sha256 || bundle != 1 => Check::fail(
            c,
            "cacerts",
            format!(
                "its root-cert.pem is not the mesh's root (sha256:{}…{}; the mesh's: sha256:{}…)",
                short(&r),
                if bundle > 1 {
                    format!(", and {} certificates", bundle)
                } else {
                    String::new()
                },
                short(&trust.root_sha256)
            ),
        )
        .fix(format!(
            "{MESH_APPLY} (plug-ca writes a cacerts of the mesh's root and restarts istiod)"
        )),
        (None, _) | (_, None) => Check::fail(
            c,
            "cacerts",
            "no readable root-cert.pem or ca-cert.pem".into(),
        )
        .fix(MESH_APPLY),
        (Some(_), Some(ca)) => match crate::ca::verify_signed_by(ca, &trust.root_pem) {
            Err(why) => Check::fail(
                c,
                "cacerts",
                format!("its intermediate does not chain to the mesh's root: {why}"),
            )
            .fix(MESH_APPLY),
            Ok(not_after) => {
                let left = not_after - now;
                let until = crate::ca::date(not_after);
                if left <= 0 {
                    Check::fail(c, "cacerts", format!("its intermediate expired on {until}"))
                        .fix(format!("{MESH_APPLY} (a new intermediate)"))
                } else if left < ROTATE_WITHIN_DAYS * 86400 {
                    Check::warn(
                        c,
                        "cacerts",
                        format!("chains to the mesh's root; its intermediate expires on {until}, within 30 days"),
                    )
                    .fix(format!("{MESH_APPLY} (rotates the intermediate)"))
                } else {
                    Check::pass(
                        c,
                        "cacerts",
                        format!("intermediate signed by the mesh's root, valid until {until}"),
                    )
                }
            }
        },
    }
}

/// `cacerts` during a root rotation: which root signs the intermediate.
fn rotating_cacerts(
    spec: &ClusterSpec,
    trust: &TrustSpec,
    roots: &[(String, String)],
    ca: &str,
) -> Check {
    let c = &spec.name;
    let signer = roots
        .iter()
        .find(|(_, pem)| crate::ca::verify_signed_by(ca, pem).is_ok());
    let old = roots
        .iter()
        .find(|(s, _)| *s != trust.root_sha256)
        .map_or("", |(s, _)| s.as_str());
    match signer {
        Some((s, _)) => Check::warn(
            c,
            "cacerts",
            format!(
                "a root rotation is under way: root-cert.pem trusts the mesh's root and the old root sha256:{}…, \
                 and the intermediate is signed by {}",
                short(old),
                if *s == trust.root_sha256 { "the mesh's root (phase 2 done)" } else { "the old root (phase 1 done)" }
            ),
        )
        .fix("`mesh plan` names the next phase and what must happen before it; `mesh apply` takes it"),
        None => Check::fail(
            c,
            "cacerts",
            "its intermediate is signed by neither root of its root-cert.pem".into(),
        )
        .fix(MESH_APPLY),
    }
}

/// `published root`: `istio-ca-root-cert` (the root istiod gives every
/// workload) is the mesh's root, or both roots during a rotation.
fn published_root(spec: &ClusterSpec, trust: &TrustSpec, published: Option<&str>) -> Check {
    let (c, ctx) = (&spec.name, &spec.target.context);
    let restart = format!(
        "kubectl --context {ctx} -n {NS} rollout restart deployment/{} (istiod publishes the root of cacerts when it starts)",
        istiod_name(spec.revision.as_deref())
    );
    match published.map(crate::ca::bundle) {
        None => Check::fail(
            c,
            "published root",
            format!("ConfigMap {NS}/istio-ca-root-cert missing: istiod has not published its root"),
        )
        .fix(restart),
        Some(roots) if roots.len() == 2 && roots.iter().any(|(s, _)| *s == trust.root_sha256) => {
            Check::warn(
                c,
                "published root",
                "istio-ca-root-cert trusts the mesh's root and the old one: a root rotation is under way".into(),
            )
            .fix("`mesh plan` names the next phase; restart the workloads before it")
        }
        Some(roots) => match roots.first().map(|(sha, _)| sha.clone()) {
            Some(sha) if sha == trust.root_sha256 => Check::pass(
                c,
                "published root",
                format!("istio-ca-root-cert is the mesh's root (sha256:{}…)", short(&sha)),
            ),
            other => Check::fail(
                c,
                "published root",
                format!(
                    "istio-ca-root-cert is {}, not the mesh's root (sha256:{}…): workloads here do not trust the other clusters",
                    other.map_or("not a certificate".into(), |s| format!("sha256:{}…", short(&s))),
                    short(&trust.root_sha256)
                ),
            )
            .fix(restart),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests_support::spec;

    fn trust_of(root: &str) -> TrustSpec {
        TrustSpec {
            root_pem: root.to_string(),
            root_sha256: crate::ca::inspect(root).unwrap().sha256,
        }
    }

    #[test]
    fn cacerts_verdicts() {
        let (root, key) = crate::ca::new_root("check root").unwrap();
        let (other, other_key) = crate::ca::new_root("other root").unwrap();
        let ca = crate::ca::intermediate(&root, &key, "c1", 365).unwrap();
        let trust = trust_of(&root);
        let s = spec("c1");
        let files = |roots: &str, ca: &str| Cacerts {
            roots: Some(roots.to_string()),
            ca: Some(ca.to_string()),
        };
        let now = crate::ca::now();
        let ok = cacerts(&s, &trust, Some(&files(&root, &ca.cert_pem)), now);
        assert_eq!(ok.status, Status::Pass, "{}", ok.detail);
        // Within the rotation window, and expired.
        let soon = cacerts(
            &s,
            &trust,
            Some(&files(&root, &ca.cert_pem)),
            now + 340 * 86_400,
        );
        assert_eq!(soon.status, Status::Warn, "{}", soon.detail);
        let gone = cacerts(
            &s,
            &trust,
            Some(&files(&root, &ca.cert_pem)),
            now + 400 * 86_400,
        );
        assert!(gone.detail.contains("expired"), "{}", gone.detail);
        // Another root, an intermediate of another root, nothing.
        let wrong = cacerts(&s, &trust, Some(&files(&other, &ca.cert_pem)), now);
        assert!(
            wrong.detail.contains("not the mesh's root"),
            "{}",
            wrong.detail
        );
        let stranger = crate::ca::intermediate(&other, &other_key, "c1", 365).unwrap();
        let unchained = cacerts(&s, &trust, Some(&files(&root, &stranger.cert_pem)), now);
        assert!(
            unchained.detail.contains("does not chain"),
            "{}",
            unchained.detail
        );
        assert!(cacerts(&s, &trust, None, now).detail.contains("missing"));
        // A rotation: both roots, signed by the old one (phase 1).
        let both = crate::ca::join_bundle(&[&other, &root]);
        let phase1 = cacerts(&s, &trust, Some(&files(&both, &stranger.cert_pem)), now);
        assert_eq!(phase1.status, Status::Warn);
        assert!(phase1.detail.contains("phase 1 done"), "{}", phase1.detail);
        let phase2 = cacerts(&s, &trust, Some(&files(&both, &ca.cert_pem)), now);
        assert!(phase2.detail.contains("phase 2 done"), "{}", phase2.detail);
    }

    #[test]
    fn the_published_root_is_the_mesh_root() {
        let (root, _) = crate::ca::new_root("check root").unwrap();
        let (other, _) = crate::ca::new_root("other root").unwrap();
        let trust = trust_of(&root);
        let s = spec("c1");
        assert_eq!(published_root(&s, &trust, Some(&root)).status, Status::Pass);
        let old = published_root(&s, &trust, Some(&other));
        assert_eq!(old.status, Status::Fail);
        assert!(
            old.fix
                .unwrap()
                .contains("rollout restart deployment/istiod")
        );
        let both = crate::ca::join_bundle(&[&other, &root]);
        assert_eq!(published_root(&s, &trust, Some(&both)).status, Status::Warn);
        assert_eq!(published_root(&s, &trust, None).status, Status::Fail);
    }
}
