//! `mesh check`: live, read-only proof that each cluster is as the mesh
//! needs it. A plan compares the clusters with what mesh applied; a check
//! asks the clusters whether the mesh can work: the API server answers,
//! istiod runs, each remote secret's token is accepted by the cluster it
//! names and allowed what istiod reads, the CAs chain to the mesh's root,
//! the remotes point at their primary's gateway, and istiod itself reports
//! every cluster it should read as synced.
//!
//! One file per group of checks, as docs/check.md lists them: `namespace`
//! (`istio-system`), `istiod` (the Deployments, the pinned version, and
//! istiod's own view of the clusters it reads), `trust` (`cacerts`, the
//! published root), `gateways` (east-west, ambient), `remote`
//! (`remotePilotAddress`) and `link` (each remote secret, one function per
//! line of output). Each check reads what it needs, then hands it to a pure
//! verdict function of the same name, which the unit tests drive.
//!
//! Every request here is a read (GET, LIST) or a review (TokenReview,
//! SubjectAccessReview), which the API server answers without storing
//! anything: a check never changes a cluster. Tokens and kubeconfigs read
//! from remote secrets are used, never printed.
//!
//! What each cluster should look like ([`ClusterSpec`]) is worked out by
//! the engine from the mesh file and the state; this module only reads.
//! It stands beside `kinds/` and never imports it (nor `kinds/` this):
//! what both need is below them (`istio`, `ca`, `k8s`, `remote_secret`).

mod gateways;
mod istiod;
mod link;
mod namespace;
mod remote;
mod trust;

use crate::cluster::{ClusterError, Connection};
use crate::env::Env;
use crate::k8s::object;
use crate::remote_secret::Reader;
use crate::rendered::{Target, shown};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;

const NS: &str = crate::istio::NAMESPACE;

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One line of `mesh check`: the JSON contract (`cluster`, `check`,
/// `status`, `detail`, `fix`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub cluster: String,
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// What to do, when it is not a pass: usually the exact command.
    pub fix: Option<String>,
}

impl Check {
    fn new(cluster: &str, check: impl Into<String>, status: Status, detail: String) -> Check {
        Check {
            cluster: cluster.to_string(),
            check: check.into(),
            status,
            detail,
            fix: None,
        }
    }
    pub fn pass(cluster: &str, check: impl Into<String>, detail: String) -> Check {
        Check::new(cluster, check, Status::Pass, detail)
    }
    pub fn warn(cluster: &str, check: impl Into<String>, detail: String) -> Check {
        Check::new(cluster, check, Status::Warn, detail)
    }
    pub fn fail(cluster: &str, check: impl Into<String>, detail: String) -> Check {
        Check::new(cluster, check, Status::Fail, detail)
    }
    pub fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// What one cluster should look like, from the mesh file and the state.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    pub target: Target,
    /// A remote's primary; None for a primary.
    pub primary: Option<String>,
    /// `topology.istio.io/network` on istio-system, in a multi-network mesh.
    pub network_label: Option<String>,
    pub revision: Option<String>,
    /// `[mesh] istio_version`, when pinned.
    pub istio_version: Option<String>,
    /// `[trust]`, on primaries.
    pub trust: Option<TrustSpec>,
    /// The cluster has an east-west gateway; with the address the state
    /// recorded for it (`P/eastwest-address`), when it has that step.
    pub eastwest: Option<Option<String>>,
    /// A remote: its primary's recorded east-west address (what its
    /// `remotePilotAddress` must be), None when the state has none.
    pub pilot_address: Option<Option<String>>,
    /// This cluster's remote secrets in control planes (`C/attach`,
    /// `C/attach@Q`).
    pub links: Vec<LinkSpec>,
    /// A primary: the links whose secret it holds, which its istiod must
    /// report as synced (`(link step, cluster)`).
    pub istiod_reads: Vec<(String, String)>,
    /// An ambient mesh's cluster: whether it has an ambient east-west
    /// gateway (`P/ambient-eastwest-gateway`). None in a sidecar mesh.
    pub ambient: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct TrustSpec {
    pub root_pem: String,
    pub root_sha256: String,
}

/// A remote secret of this cluster in a control plane.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    /// `C/attach` or `C/attach@Q`.
    pub step: String,
    /// The control plane holding the Secret (Q).
    pub primary: String,
    /// `api_server` from the mesh file, if set: what the kubeconfig names.
    pub api_server: Option<String>,
    /// The ServiceAccount whose token the Secret holds.
    pub reader: Reader,
    /// The control plane's target.
    pub primary_target: Target,
}

/// The cluster answered: its connection and version.
pub struct Reached {
    pub conn: Connection,
    pub version: String,
}

/// How long the first request to a cluster may take. Short: an
/// unreachable cluster is reported, it must not hold the others up.
const REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks the API server its version, once (no retries: an unreachable
/// cluster is one FAIL, reported at once).
pub async fn reach(env: &Env, spec: &ClusterSpec) -> Result<Reached, Check> {
    let fail = |why: String| {
        Check::fail(&spec.name, "api server", why).fix(format!(
            "check that `kubectl --context {} version` answers (VPN, credentials, the context's \
             server); the other clusters were checked",
            spec.target.context
        ))
    };
    let conn = env
        .clusters
        .connect(&spec.target)
        .await
        .map_err(|e| fail(e.to_string()))?;
    match tokio::time::timeout(REACH_TIMEOUT, conn.client.apiserver_version()).await {
        Ok(Ok(info)) => Ok(Reached {
            version: info.git_version,
            conn,
        }),
        Ok(Err(e)) => Err(fail(format!(
            "cannot reach {} (context `{}`): {e}",
            conn.server, spec.target.context
        ))),
        Err(_) => Err(fail(format!(
            "{} (context `{}`) did not answer within {} s",
            conn.server,
            spec.target.context,
            REACH_TIMEOUT.as_secs()
        ))),
    }
}

/// Every check of one reachable cluster. `reached` names the clusters that
/// answered: a link to one that did not is a warning, not a second FAIL.
pub async fn check_cluster(
    env: &Env,
    spec: &ClusterSpec,
    me: &Reached,
    reached: &BTreeSet<String>,
) -> Vec<Check> {
    let mut out = vec![Check::pass(
        &spec.name,
        "api server",
        format!(
            "{} answers (Kubernetes {})",
            me.conn.server,
            shown(&me.version)
        ),
    )];
    let conn = &me.conn;
    out.push(or_error(
        spec,
        "istio-system",
        namespace::namespace(spec, conn).await,
    ));
    if spec.primary.is_none() {
        out.extend(or_errors(spec, "istiod", istiod::istiod(spec, conn).await));
    }
    if let Some(trust) = &spec.trust {
        out.extend(or_errors(
            spec,
            "trust",
            trust::trust(spec, conn, trust).await,
        ));
    }
    if let Some(recorded) = &spec.eastwest {
        out.push(or_error(
            spec,
            "east-west gateway",
            gateways::eastwest(spec, conn, recorded.as_deref()).await,
        ));
    }
    if let Some(gateway) = spec.ambient {
        out.extend(or_errors(
            spec,
            "ambient",
            gateways::ambient(spec, conn, gateway).await,
        ));
    }
    if let Some(address) = &spec.pilot_address {
        out.push(or_error(
            spec,
            "remotePilotAddress",
            remote::pilot_address(spec, conn, address.as_deref()).await,
        ));
    }
    for link in &spec.links {
        let name = link_name(link);
        if !reached.contains(&link.primary) {
            out.push(Check::warn(
                &spec.name,
                name,
                format!(
                    "not checked: its control plane `{}` cannot be reached (see its FAIL)",
                    link.primary
                ),
            ));
            continue;
        }
        out.extend(or_errors(
            spec,
            &name,
            link::link(env, spec, conn, link).await,
        ));
    }
    if !spec.istiod_reads.is_empty() {
        out.extend(istiod::istiod_view(spec, conn).await);
    }
    out
}

/// A read that failed (the cluster answered an error) is a FAIL of that
/// check saying so; never a pass.
fn or_error(spec: &ClusterSpec, check: &str, r: Result<Check, ClusterError>) -> Check {
    r.unwrap_or_else(|e| {
        Check::fail(&spec.name, check, format!("could not be read: {e}")).fix(format!(
            "check your access: `kubectl --context {} auth can-i --list -n istio-system`",
            spec.target.context
        ))
    })
}

fn or_errors(spec: &ClusterSpec, check: &str, r: Result<Vec<Check>, ClusterError>) -> Vec<Check> {
    match r {
        Ok(v) => v,
        Err(e) => vec![or_error(spec, check, Err(e))],
    }
}

fn link_name(link: &LinkSpec) -> String {
    format!("link {}", link.step)
}

/// `mesh apply` repairs what mesh applied; the plan first says what it will do.
const MESH_APPLY: &str = "`mesh plan` shows the repair, `mesh apply` makes it";

/// What the verdicts' unit tests share.
#[cfg(test)]
mod tests_support {
    use super::*;

    /// A cluster `name` (context `k-<name>`) that expects nothing.
    pub fn spec(name: &str) -> ClusterSpec {
        ClusterSpec {
            name: name.into(),
            target: Target {
                cluster: name.into(),
                context: format!("k-{name}"),
                kubeconfig: None,
            },
            primary: None,
            network_label: None,
            revision: None,
            istio_version: None,
            trust: None,
            eastwest: None,
            pilot_address: None,
            links: Vec::new(),
            istiod_reads: Vec::new(),
            ambient: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_are_the_contract() {
        let c = Check::fail("c1", "istio-system", "missing".into()).fix("mesh apply");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cluster": "c1", "check": "istio-system", "status": "FAIL",
                "detail": "missing", "fix": "mesh apply"})
        );
    }
}
