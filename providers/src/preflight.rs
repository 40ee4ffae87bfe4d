//! Preflight: what a plan's steps need of a cluster, and the checks that it
//! has it, made once per cluster before a plan is shown or a step runs.
//!
//! For each cluster: the kubeconfig and its context are there, the API
//! server answers (`GET /version`), and the credentials may do what the
//! steps will do (a `SelfSubjectAccessReview` per verb and resource, from
//! the tables below). For a cluster whose API server other clusters'
//! remote secrets point at: that address is not a loopback one. And
//! istioctl runs, in the pinned `istio_version` when there is one.
//!
//! What each step needs is the kind's to say, next to its verbs
//! (`Kind::apply_access`, `Kind::destroy_access`, `Kind::RUNS_ISTIOCTL`,
//! with the shared tables of [`crate::access`]); this module only checks.

pub use crate::access::{Access, Need};
use crate::cluster::{Clusters, Connection};
use crate::istioctl::{Istioctl, IstioctlError};
use crate::rendered::{Target, shown};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};

/// How many access reviews of one cluster are asked at once: each at once
/// would open a connection (a TLS handshake) each; one at a time would
/// cost a round trip each on a distant API server.
const REVIEWS_AT_ONCE: usize = 4;

/// The host of an https URL, if it is a loopback address (127.0.0.0/8,
/// ::1, localhost): an address no other cluster can reach.
pub fn loopback_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    let loopback = lower == "localhost"
        || lower.ends_with(".localhost")
        || lower
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback.then(|| host.to_string())
}

/// The checks of one cluster, made with one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterCheck {
    pub target: Target,
    /// The plan's steps that touch it (reading it, with refresh, counts).
    pub steps: BTreeSet<String>,
    /// Each permission the steps need here, with the steps that need it.
    pub access: BTreeMap<Access, BTreeSet<String>>,
    /// Set when remote secrets written by the plan point at this cluster.
    pub read_by: Option<ReadBy>,
}

/// Who reads a cluster's API server through a remote secret.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadBy {
    /// The mesh file's `api_server` for the cluster, if set (else the
    /// kubeconfig's server is what the secrets get).
    pub api_server: Option<String>,
    /// The primaries whose remote secrets point at it.
    pub primaries: BTreeSet<String>,
}

/// What the checks found: errors stop the plan; warnings are printed
/// (and are errors with `--strict`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Findings {
    pub fn extend(&mut self, other: Findings) {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }
}

/// Connects to the cluster (kubeconfig, context), asks `/version`, then
/// every permission at once, and looks at the address others will use.
/// `loopback_reachable`: the sandbox, whose simulated clusters all live on
/// loopback and reach each other there.
pub async fn check_cluster(
    clusters: &Clusters,
    check: &ClusterCheck,
    loopback_reachable: bool,
) -> Findings {
    let mut found = Findings::default();
    let t = &check.target;
    let who = format!(
        "cluster `{}` (context `{}`)",
        shown(&t.cluster),
        shown(&t.context)
    );
    let conn = match clusters.connect(t).await {
        Ok(c) => c,
        Err(e) => {
            found.errors.push(e.to_string());
            return found;
        }
    };
    if let Err(e) = conn.ping().await {
        found.errors.push(format!(
            "{e}. Is the cluster running, and does the context point at its API server? \
             (`kubectl --context {} version`)",
            shown(&t.context)
        ));
        return found;
    }
    if let Some(read) = &check.read_by {
        let (address, from) = match &read.api_server {
            Some(a) => (a.clone(), "its `api_server` in the mesh file"),
            None => (conn.server.clone(), "the server of its kubeconfig context"),
        };
        if !loopback_reachable && let Some(host) = loopback_host(&address) {
            let readers: Vec<&str> = read.primaries.iter().map(String::as_str).collect();
            found.warnings.push(format!(
                "{who}: the remote secret{} in {} will point at {} ({from}), a loopback address ({}) \
                 that istiod cannot reach from inside {}. Set `api_server` for `{}` in the mesh file \
                 to an address the primary's pods reach (kind: the control-plane node's, \
                 e.g. `kind get kubeconfig --internal --name <cluster>` shows it)",
                if readers.len() == 1 { "" } else { "s" },
                readers.join(", "),
                shown(&address),
                shown(&host),
                if readers.len() == 1 { "that cluster" } else { "those clusters" },
                shown(&t.cluster),
            ));
        }
    }
    let conn = &conn;
    let reviews = check
        .access
        .keys()
        .map(|a| async move { (a, allowed(conn, a).await) });
    let answers: Vec<_> = futures::stream::iter(reviews)
        .buffered(REVIEWS_AT_ONCE)
        .collect()
        .await;
    let mut denied: Vec<(&Access, &BTreeSet<String>)> = Vec::new();
    for (access, answer) in answers {
        match answer {
            Ok(true) => {}
            Ok(false) => denied.push((access, &check.access[access])),
            Err(e) => {
                // An API server without the authorization API (or one that
                // refuses to say) cannot be checked; the steps will tell.
                let credentials = matches!(&e, kube::Error::Api(s) if s.code == 401);
                let line = format!(
                    "{who}: could not check the permissions of its credentials \
                     (SelfSubjectAccessReview): {}",
                    crate::cluster::reason(&e)
                );
                if credentials {
                    found.errors.push(format!(
                        "{line}. The API server refuses the kubeconfig's credentials: \
                         renew them (`kubectl --context {} get ns` shows the same)",
                        shown(&t.context)
                    ));
                } else {
                    found.warnings.push(line);
                }
                return found;
            }
        }
    }
    if !denied.is_empty() {
        let lines: Vec<String> = denied
            .iter()
            .map(|(a, steps)| {
                format!(
                    "      {a} (for {}; `kubectl --context {} auth can-i {}`)",
                    steps.iter().cloned().collect::<Vec<_>>().join(", "),
                    shown(&t.context),
                    a.can_i()
                )
            })
            .collect();
        found.errors.push(format!(
            "{who}: its credentials may not do what the plan needs:\n{}\n    \
             Grant these to the kubeconfig's user (or use a context that has them)",
            lines.join("\n")
        ));
    }
    found
}

/// Asks the API server whether this connection's credentials may `access`.
async fn allowed(conn: &Connection, access: &Access) -> Result<bool, kube::Error> {
    crate::k8s::review::can_i(
        conn,
        access.verb,
        access.group,
        access.resource,
        access.namespace.as_deref(),
    )
    .await
}

/// istioctl is the `pinned` version (`istioctl version`), or without a
/// pin, is there to run: an executable file at its path, or on PATH
/// (found without running it, so a plan costs no process).
pub async fn check_istioctl(
    istioctl: &Istioctl,
    pinned: Option<&str>,
) -> Result<(), IstioctlError> {
    match pinned {
        Some(v) => istioctl.check_version(v).await,
        None if is_executable_program(&istioctl.program) => Ok(()),
        None => Err(IstioctlError::NotFound {
            program: istioctl.program.to_string_lossy().into_owned(),
        }),
    }
}

/// Whether `program` names an executable file: itself when it has a `/`,
/// else in one of PATH's folders (as the OS looks it up).
fn is_executable_program(program: &std::ffi::OsStr) -> bool {
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            }
            #[cfg(not(unix))]
            {
                m.is_file()
            }
        })
    };
    let path = std::path::Path::new(program);
    if path.components().count() > 1 || path.is_absolute() {
        return executable(path);
    }
    std::env::var_os("PATH")
        .is_some_and(|dirs| std::env::split_paths(&dirs).any(|d| executable(&d.join(program))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        for url in [
            "https://127.0.0.1:6443",
            "https://127.3.2.1",
            "https://[::1]:6443",
            "https://localhost:6443/",
            "https://LOCALHOST.",
            "https://api.localhost:443",
        ] {
            assert!(loopback_host(url).is_some(), "{url}");
        }
        for url in [
            "https://172.18.0.3:6443",
            "https://[fd00::1]:6443",
            "https://cluster2-control-plane:6443",
            "https://localhost-proxy.example.com",
            "https://128.0.0.1",
        ] {
            assert_eq!(loopback_host(url), None, "{url}");
        }
        assert_eq!(loopback_host("https://[::1]:6443").as_deref(), Some("::1"));
    }

    #[test]
    fn programs_are_found_as_the_os_would() {
        assert!(is_executable_program("sh".as_ref()));
        assert!(is_executable_program("/bin/sh".as_ref()));
        assert!(!is_executable_program("/nonexistent/istioctl".as_ref()));
        assert!(!is_executable_program("no-such-program-anywhere".as_ref()));
        // A file that is not executable is not a program.
        let dir = std::env::temp_dir().join(format!("mesh-preflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("istioctl");
        std::fs::write(&f, "").unwrap();
        assert!(!is_executable_program(f.as_os_str()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn accesses_read_as_kubectl_would_ask() {
        let a = Access::new(
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        );
        assert_eq!(
            a.to_string(),
            "create customresourcedefinitions.apiextensions.k8s.io (cluster-wide)"
        );
        assert_eq!(
            a.can_i(),
            "'create' 'customresourcedefinitions.apiextensions.k8s.io'"
        );
        let all = Access::new("*", "*", "*", Some("istio-system"));
        assert_eq!(
            all.to_string(),
            "every verb on every resource in istio-system"
        );
        assert_eq!(all.can_i(), "'*' '*' -n istio-system");
    }

    #[test]
    fn every_kind_that_changes_something_needs_a_permission() {
        use crate::kinds::StepKind;
        for kind in StepKind::ALL {
            if *kind != StepKind::EastwestAddress {
                assert!(!kind.destroy_access().is_empty(), "{kind}");
            }
        }
        assert!(StepKind::InstallEastwestGateway.runs_istioctl(false));
        assert!(!StepKind::InstallEastwestGateway.runs_istioctl(true));
        assert!(StepKind::InstallControlPlane.runs_istioctl(true));
        assert!(StepKind::RevisionTag.runs_istioctl(true));
        assert!(!StepKind::Attach.runs_istioctl(false));
    }
}
