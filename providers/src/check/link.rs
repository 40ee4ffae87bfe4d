//! `link C/attach…: …`: each remote secret of a cluster, one function per
//! line of output: the Secret in its control plane (`remote secret`), the
//! kubeconfig's `server and CA`, its `token` (a TokenReview on the
//! cluster), the `token age` against `rotate_after`, and the reader's
//! `permissions` (SubjectAccessReviews of what istiod reads).

use super::*;
use crate::istio::MULTICLUSTER_LABEL;
use crate::k8s::review;
use crate::remote_secret::{Kubeconfig, TokenSecret};

/// What istiod does with every cluster it discovers, as Istio's reader
/// ClusterRole grants it (`istio-discovery/templates/reader-clusterrole.yaml`):
/// read what it routes to, and review tokens and access (it authenticates
/// the cluster's workloads and the injector's callers).
const READER_NEEDS: &[(&[&str], &str, &str)] = &[
    (&["list", "watch"], "", "pods"),
    (&["list", "watch"], "", "services"),
    (&["list", "watch"], "discovery.k8s.io", "endpointslices"),
    (&["list", "watch"], "", "namespaces"),
    (&["list", "watch"], "", "nodes"),
    (&["list", "watch"], "", "secrets"),
    (&["create"], "authentication.k8s.io", "tokenreviews"),
    (&["create"], "authorization.k8s.io", "subjectaccessreviews"),
];

/// And what the control plane of a remote writes there, through its own
/// link (the same ClusterRole, in the remote profile): the published root
/// in every namespace, and its CA bundle into the remote's injector and
/// validator.
const REMOTE_NEEDS: &[(&[&str], &str, &str)] = &[
    (&["create", "update"], "", "configmaps"),
    (
        &["patch"],
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        &["update"],
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
];

pub(super) async fn link(
    env: &Env,
    spec: &ClusterSpec,
    conn: &Connection,
    link: &LinkSpec,
) -> Result<Vec<Check>, ClusterError> {
    let primary = env.clusters.connect(&link.primary_target).await?;
    let secret_name = crate::remote_secret::secret_name(&spec.name);
    let secret = crate::k8s::get(&primary, &object("v1", "Secret", Some(NS), &secret_name)).await?;
    let (first, kc) = remote_secret(spec, link, secret.as_ref());
    let Some(kc) = kc else {
        return Ok(vec![first]);
    };
    let mut out = vec![first];
    let tokens = crate::remote_secret::token_secrets(conn, &link.reader.namespace).await?;
    let cas = cluster_cas(conn, &link.reader.namespace, &tokens).await?;
    out.push(server_and_ca(spec, link, &kc, &conn.server, &cas));
    // Its token: accepted by this cluster, as the reader.
    let reviewed = match &kc.token {
        Some(token) => Some(review::token(conn, token).await?),
        None => None,
    };
    let found = kc
        .token
        .as_ref()
        .and_then(|t| tokens.iter().find(|s| s.holds(t)));
    out.push(token(spec, link, reviewed.as_ref(), found));
    if reviewed
        .as_ref()
        .is_some_and(|r| r.as_ref().is_ok_and(|u| *u == link.reader.user()))
    {
        out.extend(token_age(
            spec,
            link,
            env.rotate_after,
            found,
            crate::ca::now(),
        ));
    }
    // What istiod needs, as the reader.
    let mut denied = Vec::new();
    let own_primary = spec.primary.as_deref() == Some(link.primary.as_str());
    let needs = READER_NEEDS
        .iter()
        .chain(REMOTE_NEEDS.iter().filter(|_| own_primary));
    for (verbs, group, resource) in needs {
        for verb in verbs.iter().copied() {
            let user = link.reader.user();
            if !review::access(conn, &user, &link.reader.namespace, verb, group, resource).await? {
                denied.push(match *group {
                    "" => format!("{verb} {resource}"),
                    g => format!("{verb} {resource}.{g}"),
                });
            }
        }
    }
    out.push(permissions(spec, link, own_primary, &denied));
    Ok(out)
}

/// `remote secret`: the Secret (None: missing) in the control plane,
/// labelled for istiod, with a kubeconfig under the cluster's key; that
/// kubeconfig, when it has one (else the other lines are not checked).
fn remote_secret(
    spec: &ClusterSpec,
    link: &LinkSpec,
    secret: Option<&kube::api::DynamicObject>,
) -> (Check, Option<Kubeconfig>) {
    let c = &spec.name;
    let q = &link.primary;
    let check = format!("{}: remote secret", link_name(link));
    let secret_name = crate::remote_secret::secret_name(c);
    let Some(secret) = secret else {
        return (
            Check::fail(
                c,
                check,
                format!("Secret {NS}/{secret_name} missing in `{q}`: its istiod does not read {c}"),
            )
            .fix(MESH_APPLY),
            None,
        );
    };
    let Some(kc) = crate::k8s::secret_data(secret, c).and_then(|b| Kubeconfig::parse(&b)) else {
        return (
            Check::fail(
                c,
                check,
                format!(
                    "Secret {NS}/{secret_name} in `{q}` has no readable kubeconfig under key `{c}`"
                ),
            )
            .fix(MESH_APPLY),
            None,
        );
    };
    let labelled = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MULTICLUSTER_LABEL))
        .is_some_and(|v| v == "true");
    let line = if labelled {
        Check::pass(c, check, format!("Secret {NS}/{secret_name} in `{q}`"))
    } else {
        Check::fail(
            c,
            check,
            format!("Secret {NS}/{secret_name} in `{q}` lacks label istio/multiCluster=true: istiod ignores it"),
        )
        .fix(MESH_APPLY)
    };
    (line, Some(kc))
}

/// The CA certificates of cluster `conn` as its reader sees them: the
/// `ca.crt` of its service-account token Secrets (`tokens`), and ConfigMap
/// `kube-root-ca.crt` (which Kubernetes puts in every namespace).
async fn cluster_cas(
    conn: &Connection,
    namespace: &str,
    tokens: &[TokenSecret],
) -> Result<Vec<Vec<u8>>, ClusterError> {
    let mut cas: Vec<Vec<u8>> = tokens.iter().filter_map(|s| s.ca.clone()).collect();
    if let Some(cm) = crate::k8s::get(
        conn,
        &object("v1", "ConfigMap", Some(namespace), "kube-root-ca.crt"),
    )
    .await?
        && let Some(ca) = cm.data.pointer("/data/ca.crt").and_then(Value::as_str)
    {
        cas.push(ca.as_bytes().to_vec());
    }
    Ok(cas)
}

/// `server and CA`: the kubeconfig names this cluster's API server (the
/// mesh file's `api_server`, else `server`, the context's) and trusts
/// one of its CAs (`cas`).
fn server_and_ca(
    spec: &ClusterSpec,
    link: &LinkSpec,
    kc: &Kubeconfig,
    server: &str,
    cas: &[Vec<u8>],
) -> Check {
    let c = &spec.name;
    let check = format!("{}: server and CA", link_name(link));
    let want_server = link.api_server.as_deref().unwrap_or(server);
    let live_server = kc.server.as_deref().unwrap_or("no server");
    if live_server != want_server {
        return Check::fail(
            c,
            check,
            format!(
                "the kubeconfig points at {}, not at {c}'s API server {want_server}",
                shown(live_server)
            ),
        )
        .fix(MESH_APPLY);
    }
    match &kc.ca {
        None => Check::fail(c, check, "the kubeconfig has no CA".into()).fix(MESH_APPLY),
        Some(ca) if cas.iter().any(|x| crate::ca::same_certs(x, ca)) => {
            Check::pass(c, check, format!("{want_server}, with {c}'s CA"))
        }
        Some(_) if cas.is_empty() => Check::warn(
            c,
            check,
            format!(
                "{want_server}; {c}'s CA could not be found (no token Secret or kube-root-ca.crt in {}) to compare",
                link.reader.namespace
            ),
        ),
        Some(_) => Check::fail(
            c,
            check,
            format!("{want_server}, but the kubeconfig trusts another CA than {c}'s"),
        )
        .fix(MESH_APPLY),
    }
}

/// `token`: the TokenReview's answer (None: the kubeconfig has no token)
/// is the reader; `found`, the token Secret holding the token, says whose.
fn token(
    spec: &ClusterSpec,
    link: &LinkSpec,
    reviewed: Option<&Result<String, String>>,
    found: Option<&TokenSecret>,
) -> Check {
    let c = &spec.name;
    let q = &link.primary;
    let check = format!("{}: token", link_name(link));
    let reader = link.reader.user();
    let ns = &link.reader.namespace;
    match reviewed {
        None => Check::fail(c, check, "the kubeconfig has no token".into()).fix(MESH_APPLY),
        Some(Ok(user)) if *user == reader => {
            let whose = match found {
                Some(s) if s.link.as_deref() == Some(q.as_str()) => {
                    format!(" (the link's own token, Secret {ns}/{})", s.name)
                }
                Some(s) => format!(
                    " (the token of Secret {ns}/{}, not the link's own: `mesh apply` gives it one)",
                    s.name
                ),
                None => String::new(),
            };
            Check::pass(c, check, format!("accepted by {c} as {reader}{whose}"))
        }
        Some(Ok(user)) => Check::fail(
            c,
            check,
            format!(
                "accepted by {c} as {}, not as the reader {reader}",
                shown(user)
            ),
        )
        .fix(MESH_APPLY),
        Some(Err(why)) => Check::fail(
            c,
            check,
            format!("{c}'s API server does not accept it ({why}): `{q}`'s istiod cannot read {c}"),
        )
        .fix(format!(
            "{MESH_APPLY} (a new reader token in {c}, a new remote secret in {q})"
        )),
    }
}

/// `token age`: the token Secret's age at `now` against `rotate_after`,
/// when that is set and the Secret is known.
fn token_age(
    spec: &ClusterSpec,
    link: &LinkSpec,
    rotate_after: Option<std::time::Duration>,
    found: Option<&TokenSecret>,
    now: i64,
) -> Option<Check> {
    let c = &spec.name;
    let (limit, s) = (rotate_after?, found?);
    let made = s.created_unix?;
    let name = format!("{}/{}", link.reader.namespace, s.name);
    let age = (now - made).max(0) as u64;
    let days = |s: u64| format!("{:.1} d", s as f64 / 86_400.0);
    let aged = format!("{}: token age", link_name(link));
    Some(if age > limit.as_secs() {
        Check::warn(
            c,
            aged,
            format!(
                "Secret {name} is {} old, older than rotate_after ({})",
                days(age),
                days(limit.as_secs())
            ),
        )
        .fix(format!("{MESH_APPLY} (rotates it with no gap)"))
    } else {
        Check::pass(
            c,
            aged,
            format!("{} old (rotate_after {})", days(age), days(limit.as_secs())),
        )
    })
}

/// `permissions`: what the reader may not do (`denied`), of what istiod reads.
fn permissions(spec: &ClusterSpec, link: &LinkSpec, remote: bool, denied: &[String]) -> Check {
    let c = &spec.name;
    let check = format!("{}: permissions", link_name(link));
    let reader = link.reader.user();
    if denied.is_empty() {
        let writes = if remote {
            "; write the root's ConfigMaps and the webhooks' CA bundle"
        } else {
            ""
        };
        return Check::pass(
            c,
            check,
            format!(
                "the reader may list and watch pods, services, endpointslices, namespaces, nodes, \
                 secrets; review tokens and access{writes}"
            ),
        );
    }
    let first = denied[0].split_once(' ').unwrap_or(("list", "pods"));
    // The install that writes the reader's ClusterRole: an edited one is
    // not drift a plan sees, a re-run of that install restores it.
    let install = match &spec.primary {
        Some(_) => format!("{}/install-remote", spec.name),
        None => format!("{}/install-control-plane", spec.name),
    };
    Check::fail(c, check, format!("{reader} may not {}", denied.join(", "))).fix(format!(
        "{MESH_APPLY} when the reader's ClusterRole or binding is missing; an edited one is \
         re-installed by `mesh apply --replace {install}`. Verify with \
         `kubectl --context {} auth can-i {} {} --as {reader}`",
        spec.target.context, first.0, first.1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests_support::spec;
    use crate::rendered::Sensitive;

    fn link_spec() -> LinkSpec {
        LinkSpec {
            step: "c2/attach".into(),
            primary: "c1".into(),
            api_server: None,
            reader: Reader::default(),
            primary_target: spec("c1").target,
        }
    }

    fn token_secret(name: &str, link: Option<&str>, created_unix: i64) -> TokenSecret {
        TokenSecret {
            name: name.into(),
            sa: Some("istio-reader-service-account".into()),
            link: link.map(String::from),
            token: Some(Sensitive::new("t".to_string())),
            ca: Some(b"CA".to_vec()),
            created: None,
            created_unix: Some(created_unix),
        }
    }

    #[test]
    fn the_remote_secret_must_be_labelled_and_hold_a_kubeconfig() {
        let (s, l) = (spec("c2"), link_spec());
        let (missing, kc) = remote_secret(&s, &l, None);
        assert!(kc.is_none());
        assert!(
            missing.detail.contains("missing in `c1`"),
            "{}",
            missing.detail
        );
        let secret: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "istio-remote-secret-c2"}, "data": {"c2": "bm90IHlhbWw6IFs="}}))
        .unwrap();
        let (unreadable, kc) = remote_secret(&s, &l, Some(&secret));
        assert!(kc.is_none());
        assert!(
            unreadable
                .detail
                .contains("no readable kubeconfig under key `c2`")
        );
    }

    #[test]
    fn server_and_ca_are_the_cluster_s() {
        let (s, l) = (spec("c2"), link_spec());
        let (root, _) = crate::ca::new_root("cluster CA").unwrap();
        let kc = Kubeconfig {
            server: Some("https://c2:6443".into()),
            ca: Some(root.clone().into_bytes()),
            token: None,
        };
        let cas = vec![format!("\n{root}\n").into_bytes()];
        assert_eq!(
            server_and_ca(&s, &l, &kc, "https://c2:6443", &cas).status,
            Status::Pass
        );
        assert_eq!(
            server_and_ca(&s, &l, &kc, "https://c2:6443", &[]).status,
            Status::Warn
        );
        let elsewhere = server_and_ca(&s, &l, &kc, "https://c3:6443", &cas);
        assert!(
            elsewhere
                .detail
                .contains("not at c2's API server https://c3:6443")
        );
        let (other, _) = crate::ca::new_root("other CA").unwrap();
        let wrong = server_and_ca(&s, &l, &kc, "https://c2:6443", &[other.into_bytes()]);
        assert!(wrong.detail.contains("another CA"));
    }

    #[test]
    fn the_token_is_the_reader_s_and_says_whose_it_is() {
        let (s, l) = (spec("c2"), link_spec());
        let reader = Ok(l.reader.user());
        let own = token_secret("istio-reader-token-c1", Some("c1"), 0);
        let ok = token(&s, &l, Some(&reader), Some(&own));
        assert_eq!(ok.status, Status::Pass);
        assert!(
            ok.detail
                .ends_with("(the link's own token, Secret istio-system/istio-reader-token-c1)"),
            "{}",
            ok.detail
        );
        let shared = token_secret("shared", None, 0);
        assert!(
            token(&s, &l, Some(&reader), Some(&shared))
                .detail
                .contains("not the link's own")
        );
        let other = token(&s, &l, Some(&Ok("system:anonymous".into())), None);
        assert_eq!(other.status, Status::Fail);
        let refused = token(&s, &l, Some(&Err("token expired".into())), None);
        assert!(
            refused
                .detail
                .contains("does not accept it (token expired)")
        );
        assert!(token(&s, &l, None, None).detail.contains("no token"));
    }

    #[test]
    fn token_age_against_rotate_after() {
        let (s, l) = (spec("c2"), link_spec());
        let day = 86_400;
        let own = token_secret("istio-reader-token-c1", Some("c1"), 0);
        let limit = Some(std::time::Duration::from_secs(90 * day as u64));
        let young = token_age(&s, &l, limit, Some(&own), 10 * day).unwrap();
        assert_eq!(
            (young.status, young.detail.as_str()),
            (Status::Pass, "10.0 d old (rotate_after 90.0 d)")
        );
        let old = token_age(&s, &l, limit, Some(&own), 91 * day).unwrap();
        assert_eq!(old.status, Status::Warn);
        assert!(token_age(&s, &l, None, Some(&own), 0).is_none());
        assert!(token_age(&s, &l, limit, None, 0).is_none());
    }

    #[test]
    fn permissions_name_what_is_denied() {
        let (s, l) = (spec("c2"), link_spec());
        assert_eq!(permissions(&s, &l, false, &[]).status, Status::Pass);
        assert!(
            permissions(&s, &l, true, &[])
                .detail
                .contains("the webhooks' CA bundle")
        );
        let denied = permissions(
            &s,
            &l,
            false,
            &[
                "watch nodes".into(),
                "list endpointslices.discovery.k8s.io".into(),
            ],
        );
        assert!(
            denied
                .detail
                .ends_with("may not watch nodes, list endpointslices.discovery.k8s.io")
        );
        assert!(denied.fix.unwrap().contains("auth can-i watch nodes --as system:serviceaccount:istio-system:istio-reader-service-account"));
    }
}
