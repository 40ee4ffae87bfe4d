//! `mesh check`: live, read-only proof that each cluster is as the mesh
//! needs it. A plan compares the clusters with what mesh applied; a check
//! asks the clusters whether the mesh can work: the API server answers,
//! istiod runs, each remote secret's token is accepted by the cluster it
//! names and allowed what istiod reads, the CAs chain to the mesh's root,
//! the remotes point at their primary's gateway, and istiod itself reports
//! every cluster it should read as synced.
//!
//! Every request here is a read (GET, LIST) or a review (TokenReview,
//! SubjectAccessReview), which the API server answers without storing
//! anything: a check never changes a cluster. Tokens and kubeconfigs read
//! from remote secrets are used, never printed.
//!
//! What each cluster should look like ([`ClusterSpec`]) is worked out by
//! the engine from the mesh file and the state; this module only reads.

use crate::cluster::{ClusterError, Connection};
use crate::env::Env;
use crate::kinds::attach;
use crate::rendered::{Target, shown};
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;

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
    pub input: attach::Input,
    /// The control plane holding the Secret.
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
        format!("{} answers (Kubernetes {})", me.conn.server, me.version),
    )];
    let conn = &me.conn;
    out.push(or_error(spec, "istio-system", namespace(spec, conn).await));
    if spec.primary.is_none() {
        out.extend(or_errors(spec, "istiod", istiod(spec, conn).await));
    }
    if let Some(trust) = &spec.trust {
        out.extend(or_errors(spec, "trust", cacerts(spec, conn, trust).await));
    }
    if let Some(recorded) = &spec.eastwest {
        out.push(or_error(
            spec,
            "east-west gateway",
            eastwest(spec, conn, recorded.as_deref()).await,
        ));
    }
    if let Some(gateway) = spec.ambient {
        out.extend(or_errors(
            spec,
            "ambient",
            ambient(spec, conn, gateway).await,
        ));
    }
    if let Some(address) = &spec.pilot_address {
        out.push(or_error(
            spec,
            "remotePilotAddress",
            pilot_address(spec, conn, address.as_deref()).await,
        ));
    }
    for link in &spec.links {
        let name = link_name(link);
        if !reached.contains(&link.input.primary) {
            out.push(Check::warn(
                &spec.name,
                name,
                format!(
                    "not checked: its control plane `{}` cannot be reached (see its FAIL)",
                    link.input.primary
                ),
            ));
            continue;
        }
        out.extend(or_errors(
            spec,
            &name,
            self::link(env, spec, conn, link).await,
        ));
    }
    if !spec.istiod_reads.is_empty() {
        out.extend(istiod_view(spec, conn).await);
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

const NS: &str = crate::k8s::ISTIO_NAMESPACE;
const NETWORK_LABEL: &str = "topology.istio.io/network";
const CONTROL_PLANE_ANNOTATION: &str = "topology.istio.io/controlPlaneClusters";

fn object(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Value {
    crate::kinds::istioctl_install::object(api_version, kind, namespace, name)
}

/// `mesh apply` repairs what mesh applied; the plan first says what it will do.
const MESH_APPLY: &str = "`mesh plan` shows the repair, `mesh apply` makes it";

async fn namespace(spec: &ClusterSpec, conn: &Connection) -> Result<Check, ClusterError> {
    let c = &spec.name;
    let ctx = &spec.target.context;
    let Some(ns) = crate::k8s::get(conn, &object("v1", "Namespace", None, NS)).await? else {
        return Ok(
            Check::fail(c, "istio-system", "namespace istio-system missing".into()).fix(MESH_APPLY),
        );
    };
    let meta = serde_json::to_value(&ns.metadata).unwrap_or_default();
    let label = meta
        .pointer(&format!("/labels/{}", NETWORK_LABEL.replace('/', "~1")))
        .and_then(Value::as_str);
    let annotation = meta
        .pointer(&format!(
            "/annotations/{}",
            CONTROL_PLANE_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str);
    let mut wrong = Vec::new();
    let mut fixes = Vec::new();
    let mut said = Vec::new();
    if let Some(want) = &spec.network_label {
        if label != Some(want.as_str()) {
            wrong.push(format!(
                "label {NETWORK_LABEL} is {}, not {want}",
                label.map_or("missing".into(), |l| format!("`{}`", shown(l)))
            ));
            fixes.push(format!(
                "kubectl --context {ctx} label namespace {NS} {NETWORK_LABEL}={want} --overwrite"
            ));
        } else {
            said.push(format!("network {want}"));
        }
    }
    if let Some(primary) = &spec.primary {
        if annotation != Some(primary.as_str()) {
            wrong.push(format!(
                "annotation {CONTROL_PLANE_ANNOTATION} is {}, not {primary}",
                annotation.map_or("missing".into(), |a| format!("`{}`", shown(a)))
            ));
            fixes.push(format!(
                "kubectl --context {ctx} annotate namespace {NS} {CONTROL_PLANE_ANNOTATION}={primary} --overwrite"
            ));
        } else {
            said.push(format!("controlled by {primary}"));
        }
    }
    Ok(if wrong.is_empty() {
        Check::pass(
            c,
            "istio-system",
            if said.is_empty() {
                "present".into()
            } else {
                format!("present, {}", said.join(", "))
            },
        )
    } else {
        Check::fail(c, "istio-system", wrong.join("; "))
            .fix(format!("`mesh apply`, or {}", fixes.join(" && ")))
    })
}

/// The Deployment name of a revision (`istiod`, `istiod-canary`).
fn istiod_name(revision: Option<&str>) -> String {
    match revision {
        None | Some("") | Some("default") => "istiod".into(),
        Some(r) => format!("istiod-{r}"),
    }
}

/// The tag of an image reference (`docker.io/istio/pilot:1.28.0` → `1.28.0`);
/// None for a digest or no tag.
fn image_tag(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next()?;
    if last.contains('@') {
        return None;
    }
    last.split_once(':').map(|(_, t)| t)
}

async fn istiod(spec: &ClusterSpec, conn: &Connection) -> Result<Vec<Check>, ClusterError> {
    use k8s_openapi::api::apps::v1::Deployment;
    let c = &spec.name;
    let ctx = &spec.target.context;
    let api: kube::Api<Deployment> = kube::Api::namespaced(conn.client.clone(), NS);
    let lp = kube::api::ListParams::default();
    let listed = conn
        .call("listing Deployments", || async {
            match api.list(&lp).await {
                Err(e) if crate::k8s::is_absent(&e) => Ok(Vec::new()),
                other => other.map(|l| l.items),
            }
        })
        .await?;
    let want = istiod_name(spec.revision.as_deref());
    let mut out = Vec::new();
    let istiods: Vec<&Deployment> = listed
        .iter()
        .filter(|d| {
            let n = d.metadata.name.as_deref().unwrap_or_default();
            n == "istiod" || n.starts_with("istiod-")
        })
        .collect();
    if !istiods
        .iter()
        .any(|d| d.metadata.name.as_deref() == Some(&want))
    {
        out.push(
            Check::fail(
                c,
                want.clone(),
                format!("Deployment {NS}/{want} missing: no control plane of this revision"),
            )
            .fix(MESH_APPLY),
        );
    }
    for d in istiods {
        let name = d.metadata.name.clone().unwrap_or_default();
        let check = name.clone();
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.as_ref();
        let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
        let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
        if replicas == 0 {
            out.push(
                Check::fail(
                    c,
                    check.clone(),
                    format!("Deployment {NS}/{name} is scaled to 0"),
                )
                .fix(MESH_APPLY),
            );
        } else if ready < 1 || available < 1 {
            out.push(
                Check::fail(
                    c,
                    check.clone(),
                    format!("Deployment {NS}/{name} not available ({ready}/{replicas} ready)"),
                )
                .fix(format!(
                    "kubectl --context {ctx} -n {NS} describe deployment {name}; \
                     kubectl --context {ctx} -n {NS} logs deployment/{name}"
                )),
            );
        } else {
            out.push(Check::pass(
                c,
                check.clone(),
                format!("available ({ready}/{replicas} ready)"),
            ));
        }
        // The pinned version, for the revision mesh installs.
        if let Some(pinned) = &spec.istio_version
            && name == want
        {
            let image = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| {
                    p.containers
                        .iter()
                        .find(|c| c.name == "discovery")
                        .or(p.containers.first())
                })
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let vcheck = format!("{name} version");
            let tag = image_tag(&image).filter(|t| t.starts_with(|ch: char| ch.is_ascii_digit()));
            out.push(match tag {
                Some(t) if crate::istioctl::version_matches(pinned, t) => {
                    Check::pass(c, vcheck, format!("{t} (image {}), as pinned", shown(&image)))
                }
                Some(t) => Check::fail(
                    c,
                    vcheck,
                    format!(
                        "runs {} (image {}), the mesh file pins istio_version = \"{pinned}\"",
                        shown(t),
                        shown(&image)
                    ),
                )
                .fix("`mesh plan` then `mesh apply` with the pinned istioctl on PATH (or [istioctl] path)"),
                None => Check::warn(
                    c,
                    vcheck,
                    format!(
                        "cannot be known: image {} has no version tag, so whether it is {pinned} is not proven",
                        if image.is_empty() { "(none)".into() } else { shown(&image) }
                    ),
                )
                .fix(format!(
                    "compare `kubectl --context {ctx} -n {NS} exec deployment/{name} -- pilot-discovery version` with {pinned}"
                )),
            });
        }
    }
    Ok(out)
}

/// Whether the first certificate of `cert_pem` is signed by the first of
/// `root_pem` (its signature verified with the root's key), and its expiry.
pub fn verify_signed_by(cert_pem: &str, root_pem: &str) -> Result<i64, String> {
    use x509_parser::prelude::FromDer;
    let certs = crate::ca::certificates(cert_pem);
    let roots = crate::ca::certificates(root_pem);
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

async fn cacerts(
    spec: &ClusterSpec,
    conn: &Connection,
    trust: &TrustSpec,
) -> Result<Vec<Check>, ClusterError> {
    let c = &spec.name;
    let ctx = &spec.target.context;
    let short = |s: &str| s.chars().take(16).collect::<String>();
    let mut out = Vec::new();
    let secret = crate::k8s::get(conn, &object("v1", "Secret", Some(NS), "cacerts")).await?;
    out.push(match secret {
        None => Check::fail(
            c,
            "cacerts",
            format!("Secret {NS}/cacerts missing: istiod signs with a root of its own, which the other clusters do not trust"),
        )
        .fix(MESH_APPLY),
        Some(s) => {
            let file = |k: &str| {
                crate::k8s::secret_data(&s, k).map(|b| String::from_utf8_lossy(&b).into_owned())
            };
            let roots = file("root-cert.pem").map(|p| crate::ca::bundle(&p)).unwrap_or_default();
            let root = roots.first().map(|(sha, _)| sha.clone());
            let bundle = roots.len();
            // A root rotation under way (phase 1 or 2): the mesh's root and
            // the old one, the intermediate signed by one of them.
            let rotating = roots.len() == 2 && roots.iter().any(|(s, _)| *s == trust.root_sha256);
            match (root, file("ca-cert.pem")) {
                (Some(_), Some(ca)) if rotating => {
                    let signer = roots.iter().find(|(_, pem)| verify_signed_by(&ca, pem).is_ok());
                    let old = roots.iter().find(|(s, _)| *s != trust.root_sha256).map_or("", |(s, _)| s.as_str());
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
                (Some(r), _) if r != trust.root_sha256 || bundle != 1 => Check::fail(
                    c,
                    "cacerts",
                    format!(
                        "its root-cert.pem is not the mesh's root (sha256:{}…{}; the mesh's: sha256:{}…)",
                        short(&r),
                        if bundle > 1 { format!(", and {} certificates", bundle) } else { String::new() },
                        short(&trust.root_sha256)
                    ),
                )
                .fix(format!("{MESH_APPLY} (plug-ca writes a cacerts of the mesh's root and restarts istiod)")),
                (None, _) | (_, None) => Check::fail(
                    c,
                    "cacerts",
                    "no readable root-cert.pem or ca-cert.pem".into(),
                )
                .fix(MESH_APPLY),
                (Some(_), Some(ca)) => match verify_signed_by(&ca, &trust.root_pem) {
                    Err(why) => Check::fail(
                        c,
                        "cacerts",
                        format!("its intermediate does not chain to the mesh's root: {why}"),
                    )
                    .fix(MESH_APPLY),
                    Ok(not_after) => {
                        let left = not_after - crate::ca::now();
                        let until = crate::ca::date(not_after);
                        if left <= 0 {
                            Check::fail(c, "cacerts", format!("its intermediate expired on {until}"))
                                .fix(format!("{MESH_APPLY} (a new intermediate)"))
                        } else if left < crate::kinds::plug_ca::ROTATE_WITHIN_DAYS * 86400 {
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
    });
    let cm = crate::k8s::get(
        conn,
        &object("v1", "ConfigMap", Some(NS), "istio-ca-root-cert"),
    )
    .await?;
    let published = cm.as_ref().and_then(|cm| {
        cm.data
            .pointer("/data/root-cert.pem")
            .and_then(Value::as_str)
            .map(String::from)
    });
    let restart = format!(
        "kubectl --context {ctx} -n {NS} rollout restart deployment/{} (istiod publishes the root of cacerts when it starts)",
        istiod_name(spec.revision.as_deref())
    );
    out.push(match published.as_deref().map(crate::ca::bundle) {
        None => Check::fail(
            c,
            "published root",
            format!("ConfigMap {NS}/istio-ca-root-cert missing: istiod has not published its root"),
        )
        .fix(restart),
        Some(roots) if roots.len() == 2 && roots.iter().any(|(s, _)| *s == trust.root_sha256) =>
        {
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
    });
    Ok(out)
}

/// An ambient cluster: istio-cni and ztunnel ready on every node, and
/// (across networks) the ambient east-west Gateway programmed with an
/// address, which the other clusters' istiods route to.
async fn ambient(
    spec: &ClusterSpec,
    conn: &Connection,
    gateway: bool,
) -> Result<Vec<Check>, ClusterError> {
    let c = &spec.name;
    let ctx = &spec.target.context;
    let mut out = Vec::new();
    for ds in ["ztunnel", "istio-cni-node"] {
        let live = crate::k8s::get(conn, &object("apps/v1", "DaemonSet", Some(NS), ds)).await?;
        let check = format!("ambient {ds}");
        out.push(match live {
            None => Check::fail(c, check, format!("DaemonSet {NS}/{ds} missing: no ambient data plane on this cluster's nodes"))
                .fix(MESH_APPLY),
            Some(d) => {
                let n = |k: &str| d.data.pointer(&format!("/status/{k}")).and_then(Value::as_i64).unwrap_or(0);
                let (ready, desired) = (n("numberReady"), n("desiredNumberScheduled"));
                if desired > 0 && ready == desired {
                    Check::pass(c, check, format!("ready on {ready} of {desired} nodes"))
                } else {
                    Check::fail(c, check, format!("ready on {ready} of {desired} nodes"))
                        .fix(format!("kubectl --context {ctx} -n {NS} describe daemonset {ds} (its pods say why)"))
                }
            }
        });
    }
    if gateway {
        let name = crate::kinds::ambient_eastwest_gateway::NAME;
        let live = crate::k8s::get(
            conn,
            &object("gateway.networking.k8s.io/v1", "Gateway", Some(NS), name),
        )
        .await?;
        out.push(match live {
            None => Check::fail(c, "ambient east-west gateway", format!("Gateway {NS}/{name} missing: the other networks cannot reach this one"))
                .fix(MESH_APPLY),
            Some(g) => {
                let programmed = g
                    .data
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Programmed" && c["status"] == "True");
                // istiod lists the external addresses of every cluster's
                // Service of that name (Istio's gatewaycommon/context.go):
                // this cluster's own Service's must be among them.
                let listed: Vec<&str> = g
                    .data
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["value"].as_str())
                    .collect();
                let svc = crate::k8s::get(conn, &object("v1", "Service", Some(NS), name)).await?;
                let own = svc.as_ref().and_then(|s| {
                    let i = s.data.pointer("/status/loadBalancer/ingress/0")?;
                    i["ip"].as_str().or(i["hostname"].as_str()).map(String::from)
                });
                let address = match &own {
                    Some(own) => listed.iter().find(|a| **a == own.as_str()).copied(),
                    None => None,
                };
                match (programmed, address) {
                    (true, Some(a)) => Check::pass(
                        c,
                        "ambient east-west gateway",
                        format!("Gateway {name} programmed at {a}, its Service's load-balancer address"),
                    ),
                    _ => Check::fail(
                        c,
                        "ambient east-west gateway",
                        format!(
                            "Gateway {name} is not programmed with its Service's load-balancer address ({}; status lists {}): the other clusters' istiods route to the address istiod writes there",
                            own.as_deref().unwrap_or("none yet"),
                            if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
                        ),
                    )
                    .fix(format!(
                        "kubectl --context {ctx} -n {NS} describe gateways.gateway.networking.k8s.io {name} (istiod deploys it; its Service needs a LoadBalancer address)"
                    )),
                }
            }
        });
    }
    Ok(out)
}

const EASTWEST_SERVICE: &str = "istio-eastwestgateway";

async fn eastwest(
    spec: &ClusterSpec,
    conn: &Connection,
    recorded: Option<&str>,
) -> Result<Check, ClusterError> {
    let c = &spec.name;
    let ctx = &spec.target.context;
    let check = "east-west gateway";
    let Some(svc) =
        crate::k8s::get(conn, &object("v1", "Service", Some(NS), EASTWEST_SERVICE)).await?
    else {
        return Ok(
            Check::fail(c, check, format!("Service {NS}/{EASTWEST_SERVICE} missing"))
                .fix(MESH_APPLY),
        );
    };
    Ok(match crate::kinds::eastwest_address::address_of(&svc) {
        None => Check::fail(c, check, "its load balancer has no address".into()).fix(format!(
            "kubectl --context {ctx} -n {NS} describe service {EASTWEST_SERVICE} (the cluster's load-balancer controller gives it one)"
        )),
        Some(Err(why)) => Check::fail(c, check, why),
        Some(Ok(ip)) => match recorded {
            Some(r) if r != ip => Check::fail(
                c,
                check,
                format!(
                    "address {ip}, but the state records {}: the remotes still point at the old one",
                    shown(r)
                ),
            )
            .fix(format!(
                "{MESH_APPLY} (the remotes are re-installed with the new address)"
            )),
            Some(_) => Check::pass(c, check, format!("address {ip}, as recorded")),
            None => Check::pass(c, check, format!("address {ip}")),
        },
    })
}

async fn pilot_address(
    spec: &ClusterSpec,
    conn: &Connection,
    want: Option<&str>,
) -> Result<Check, ClusterError> {
    let c = &spec.name;
    let check = "remotePilotAddress";
    let primary = spec.primary.as_deref().unwrap_or_default();
    let name = match spec.revision.as_deref() {
        None | Some("") | Some("default") => "values".to_string(),
        Some(r) => format!("values-{r}"),
    };
    let Some(want) = want else {
        return Ok(Check::warn(
            c,
            check,
            format!("the state records no east-west address for `{primary}`: not compared"),
        )
        .fix("`mesh apply` records it"));
    };
    let Some(cm) = crate::k8s::get(conn, &object("v1", "ConfigMap", Some(NS), &name)).await? else {
        return Ok(Check::fail(
            c,
            check,
            format!("ConfigMap {NS}/{name} missing: the remote profile is not installed"),
        )
        .fix(MESH_APPLY));
    };
    let live = cm
        .data
        .pointer("/data/merged-values")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| {
            v.pointer("/global/remotePilotAddress")
                .and_then(Value::as_str)
                .map(String::from)
        });
    // What routes: the remote's selector-less `istiod[-rev]` Service sends
    // to the address in its EndpointSlice (Istio's chart makes one for an
    // IP address; a hostname uses an ExternalName Service instead).
    let slice_name = istiod_name(spec.revision.as_deref());
    let routed = if live.as_deref() == Some(want) && want.parse::<std::net::IpAddr>().is_ok() {
        crate::k8s::get(
            conn,
            &object(
                "discovery.k8s.io/v1",
                "EndpointSlice",
                Some(NS),
                &slice_name,
            ),
        )
        .await?
        .map(|o| {
            o.data["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .map(String::from)
                .collect::<Vec<_>>()
        })
    } else {
        None
    };
    if let Some(addresses) = routed
        && !addresses.iter().any(|a| a == want)
    {
        return Ok(Check::fail(
            c,
            check,
            format!(
                "EndpointSlice {NS}/{slice_name} routes istiod's traffic to {}, not {primary}'s east-west address {want}: this cluster's sidecars cannot reach istiod",
                if addresses.is_empty() { "nothing".to_string() } else { shown(&addresses.join(", ")) }
            ),
        )
        .fix(format!(
            "mesh apply --replace {c}/install-remote (re-installs the remote profile, which writes the EndpointSlice again)"
        )));
    }
    Ok(match live {
        Some(l) if l == want => Check::pass(
            c,
            check,
            format!("{l}: {primary}'s east-west gateway"),
        ),
        other => Check::fail(
            c,
            check,
            format!(
                "{} in ConfigMap {NS}/{name}, but {primary}'s east-west address is {want}: this cluster's sidecars cannot reach istiod",
                other.map_or("none".into(), |l| format!("`{}`", shown(&l)))
            ),
        )
        .fix(format!("{MESH_APPLY} (re-installs the remote profile with {want})")),
    })
}

/// What istiod needs to read in each cluster it discovers: list and watch
/// of these (group, resource).
const READER_NEEDS: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("discovery.k8s.io", "endpointslices"),
    ("", "namespaces"),
    ("", "nodes"),
];

/// What a remote secret's kubeconfig holds (the token stays inside).
struct SecretKubeconfig {
    server: Option<String>,
    ca: Option<Vec<u8>>,
    token: Option<crate::rendered::Sensitive>,
}

fn parse_kubeconfig(bytes: &[u8]) -> Option<SecretKubeconfig> {
    let kc: Value = serde_saphyr::from_slice(bytes).ok()?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Some(SecretKubeconfig {
        server: kc
            .pointer("/clusters/0/cluster/server")
            .and_then(Value::as_str)
            .map(String::from),
        ca: kc
            .pointer("/clusters/0/cluster/certificate-authority-data")
            .and_then(Value::as_str)
            .and_then(|d| b64.decode(d).ok()),
        token: kc
            .pointer("/users/0/user/token")
            .and_then(Value::as_str)
            .map(|t| crate::rendered::Sensitive::new(t.to_string())),
    })
}

/// The CA certificates of cluster `conn` as its reader sees them: the
/// `ca.crt` of its service-account token Secrets, and ConfigMap
/// `kube-root-ca.crt` (which Kubernetes puts in every namespace).
async fn cluster_cas(conn: &Connection, namespace: &str) -> Result<Vec<Vec<u8>>, ClusterError> {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(conn.client.clone(), namespace);
    let lp = kube::api::ListParams::default().fields("type=kubernetes.io/service-account-token");
    let listed = conn
        .call("listing token Secrets", || secrets.list(&lp))
        .await?;
    let mut cas: Vec<Vec<u8>> = listed
        .items
        .into_iter()
        .filter_map(|s| s.data?.get("ca.crt").map(|b| b.0.clone()))
        .filter(|b| !b.is_empty())
        .collect();
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

/// The same certificates, whatever the PEM text around them.
fn same_certs(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (a, b) = (crate::ca::certificates(&a), crate::ca::certificates(&b));
    !a.is_empty() && a == b
}

async fn link(
    env: &Env,
    spec: &ClusterSpec,
    conn: &Connection,
    link: &LinkSpec,
) -> Result<Vec<Check>, ClusterError> {
    let c = &spec.name;
    let q = &link.input.primary;
    let base = link_name(link);
    let secret_name = format!("istio-remote-secret-{c}");
    let primary = env.clusters.connect(&link.primary_target).await?;
    let Some(secret) =
        crate::k8s::get(&primary, &object("v1", "Secret", Some(NS), &secret_name)).await?
    else {
        return Ok(vec![
            Check::fail(
                c,
                format!("{base}: remote secret"),
                format!("Secret {NS}/{secret_name} missing in `{q}`: its istiod does not read {c}"),
            )
            .fix(MESH_APPLY),
        ]);
    };
    let labelled = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("istio/multiCluster"))
        .is_some_and(|v| v == "true");
    let Some(kc) = crate::k8s::secret_data(&secret, c).and_then(|b| parse_kubeconfig(&b)) else {
        return Ok(vec![
            Check::fail(
                c,
                format!("{base}: remote secret"),
                format!(
                    "Secret {NS}/{secret_name} in `{q}` has no readable kubeconfig under key `{c}`"
                ),
            )
            .fix(MESH_APPLY),
        ]);
    };
    let mut out = vec![if labelled {
        Check::pass(
            c,
            format!("{base}: remote secret"),
            format!("Secret {NS}/{secret_name} in `{q}`"),
        )
    } else {
        Check::fail(
            c,
            format!("{base}: remote secret"),
            format!("Secret {NS}/{secret_name} in `{q}` lacks label istio/multiCluster=true: istiod ignores it"),
        )
        .fix(MESH_APPLY)
    }];
    // Its server and CA: this cluster's.
    let want_server = link.input.api_server.as_deref().unwrap_or(&conn.server);
    let cas = cluster_cas(conn, &link.input.reader.namespace).await?;
    let check = format!("{base}: server and CA");
    let live_server = kc.server.as_deref().unwrap_or("no server");
    out.push(if live_server != want_server {
        Check::fail(
            c,
            check,
            format!(
                "the kubeconfig points at {}, not at {c}'s API server {want_server}",
                shown(live_server)
            ),
        )
        .fix(MESH_APPLY)
    } else {
        match &kc.ca {
            None => Check::fail(c, check, "the kubeconfig has no CA".into()).fix(MESH_APPLY),
            Some(ca) if cas.iter().any(|x| same_certs(x, ca)) => {
                Check::pass(c, check, format!("{want_server}, with {c}'s CA"))
            }
            Some(_) if cas.is_empty() => Check::warn(
                c,
                check,
                format!(
                    "{want_server}; {c}'s CA could not be found (no token Secret or kube-root-ca.crt in {}) to compare",
                    link.input.reader.namespace
                ),
            ),
            Some(_) => Check::fail(
                c,
                check,
                format!("{want_server}, but the kubeconfig trusts another CA than {c}'s"),
            )
            .fix(MESH_APPLY),
        }
    });
    // Its token: accepted by this cluster, as the reader.
    let reader = format!(
        "system:serviceaccount:{}:{}",
        link.input.reader.namespace, link.input.reader.name
    );
    let check = format!("{base}: token");
    let mut age_check = None;
    out.push(match &kc.token {
        None => Check::fail(c, check, "the kubeconfig has no token".into()).fix(MESH_APPLY),
        Some(token) => match token_review(conn, token).await? {
            Ok(user) if user == reader => {
                let found = token_secret_of(conn, &link.input.reader.namespace, token).await?;
                let whose = match &found {
                    Some((name, Some(holder), _)) if holder == q => {
                        format!(" (the link's own token, Secret {name})")
                    }
                    Some((name, _, _)) => format!(
                        " (the token of Secret {name}, not the link's own: `mesh apply` gives it one)"
                    ),
                    None => String::new(),
                };
                // Its age against `[credentials] rotate_after`, when set.
                if let (Some(limit), Some((name, _, Some(made)))) = (env.rotate_after, &found) {
                    let age = (crate::ca::now() - made).max(0) as u64;
                    let days = |s: u64| format!("{:.1} d", s as f64 / 86_400.0);
                    let aged = format!("{base}: token age");
                    age_check = Some(if age > limit.as_secs() {
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
                            format!(
                                "{} old (rotate_after {})",
                                days(age),
                                days(limit.as_secs())
                            ),
                        )
                    });
                }
                Check::pass(c, check, format!("accepted by {c} as {reader}{whose}"))
            }
            Ok(user) => Check::fail(
                c,
                check,
                format!(
                    "accepted by {c} as {}, not as the reader {reader}",
                    shown(&user)
                ),
            )
            .fix(MESH_APPLY),
            Err(why) => Check::fail(
                c,
                check,
                format!(
                    "{c}'s API server does not accept it ({why}): `{q}`'s istiod cannot read {c}"
                ),
            )
            .fix(format!(
                "{MESH_APPLY} (a new reader token in {c}, a new remote secret in {q})"
            )),
        },
    });
    out.extend(age_check);
    // What istiod needs, as the reader.
    let mut denied = Vec::new();
    for (group, resource) in READER_NEEDS {
        for verb in ["list", "watch"] {
            if !access_review(
                conn,
                &reader,
                &link.input.reader.namespace,
                verb,
                group,
                resource,
            )
            .await?
            {
                denied.push(match *group {
                    "" => format!("{verb} {resource}"),
                    g => format!("{verb} {resource}.{g}"),
                });
            }
        }
    }
    let check = format!("{base}: permissions");
    out.push(if denied.is_empty() {
        Check::pass(
            c,
            check,
            "the reader may list and watch pods, services, endpointslices, namespaces, nodes"
                .into(),
        )
    } else {
        let first = denied[0].split_once(' ').unwrap_or(("list", "pods"));
        Check::fail(c, check, format!("{reader} may not {}", denied.join(", "))).fix(format!(
            "{MESH_APPLY} (re-installs the reader's ClusterRole and binding); verify with \
             `kubectl --context {} auth can-i {} {} --as {reader}`",
            spec.target.context, first.0, first.1
        ))
    });
    Ok(out)
}

/// The service-account token Secret in `namespace` of `conn` that holds
/// `token`: `namespace/name`, and the control plane whose link token it
/// is (its `mesh/remote-secret-in` label), if mesh made it for a link.
async fn token_secret_of(
    conn: &Connection,
    namespace: &str,
    token: &crate::rendered::Sensitive,
) -> Result<Option<(String, Option<String>, Option<i64>)>, ClusterError> {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(conn.client.clone(), namespace);
    let lp = kube::api::ListParams::default().fields("type=kubernetes.io/service-account-token");
    let listed = conn
        .call("listing token Secrets", || secrets.list(&lp))
        .await?;
    let want = token.sha256();
    Ok(listed.items.into_iter().find_map(|s| {
        let t = s.data.as_ref()?.get("token")?;
        (crate::rendered::sha256_hex(&t.0) == want).then(|| {
            (
                format!(
                    "{namespace}/{}",
                    s.metadata.name.clone().unwrap_or_default()
                ),
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(attach::LINK_LABEL))
                    .cloned(),
                s.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second()),
            )
        })
    }))
}

/// A TokenReview on `conn`: the user the token authenticates as, or why not.
async fn token_review(
    conn: &Connection,
    token: &crate::rendered::Sensitive,
) -> Result<Result<String, String>, ClusterError> {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    let api: kube::Api<TokenReview> = kube::Api::all(conn.client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.expose().to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    let pp = kube::api::PostParams::default();
    let answer = conn
        .call("reviewing the remote secret's token", || {
            api.create(&pp, &review)
        })
        .await?;
    let status = answer.status.unwrap_or_default();
    Ok(match (status.authenticated, status.user) {
        (Some(true), Some(user)) => Ok(user.username.unwrap_or_default()),
        _ => Err(status
            .error
            .filter(|e| !e.is_empty())
            .map_or("not authenticated".into(), |e| shown(&e))),
    })
}

/// A SubjectAccessReview on `conn`: may the ServiceAccount `user` do
/// `verb` on `resource` in every namespace?
async fn access_review(
    conn: &Connection,
    user: &str,
    sa_namespace: &str,
    verb: &str,
    group: &str,
    resource: &str,
) -> Result<bool, ClusterError> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let api: kube::Api<SubjectAccessReview> = kube::Api::all(conn.client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{sa_namespace}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let pp = kube::api::PostParams::default();
    let answer = conn
        .call(&format!("reviewing access to {verb} {resource}"), || {
            api.create(&pp, &review)
        })
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// istiod's debug port, where `/debug/clusterz` is served.
const ISTIOD_DEBUG_PORT: u16 = 15014;

/// What the primary's istiod reports of the clusters it reads: its
/// `/debug/clusterz` (as `istioctl remote-clusters` asks it), through a
/// port-forward to an istiod pod ([`ask_pod`]). Every link whose secret this primary holds must
/// be listed as `synced`. An istiod that cannot be asked is a WARN that
/// says why.
async fn istiod_view(spec: &ClusterSpec, conn: &Connection) -> Vec<Check> {
    let c = &spec.name;
    let ctx = &spec.target.context;
    let check = "istiod's view";
    let pods = match istiod_pods(conn, spec.revision.as_deref()).await {
        Ok(p) => p,
        Err(e) => {
            return vec![Check::warn(
                c,
                check,
                format!("cannot list istiod's pods: {e}"),
            )];
        }
    };
    let Some(pod) = pods.first() else {
        return vec![
            Check::warn(
                c,
                check,
                "no running istiod pod to ask which clusters it reads".into(),
            )
            .fix(format!(
                "kubectl --context {ctx} -n {NS} get pods -l app=istiod"
            )),
        ];
    };
    let body = match ask_pod(conn, pod, ISTIOD_DEBUG_PORT, "/debug/clusterz").await {
        Ok(b) => b,
        Err(e) => {
            return vec![Check::warn(
                c,
                check,
                format!("cannot ask istiod (pod {pod}, port {ISTIOD_DEBUG_PORT}, /debug/clusterz, through a port-forward): {e}"),
            )
            .fix(format!("istioctl --context {ctx} remote-clusters"))];
        }
    };
    let listed: Vec<Value> = match serde_json::from_str::<Value>(&body) {
        Ok(Value::Array(a)) => a,
        _ => {
            return vec![Check::warn(
                c,
                check,
                format!(
                    "istiod's /debug/clusterz answer is not a list of clusters: {}",
                    shown(&body)
                ),
            )];
        }
    };
    spec.istiod_reads
        .iter()
        .map(|(step, cluster)| {
            let name = format!("istiod sees {cluster}");
            let entry = listed.iter().find(|e| e["id"] == cluster.as_str());
            let fix = format!(
                "check the lines of link {step}; then `kubectl --context {ctx} -n {NS} logs pod/{pod} | grep {cluster}`"
            );
            match entry.map(|e| e["syncStatus"].as_str().unwrap_or("unknown")) {
                Some("synced") => Check::pass(c, name, format!("synced ({step}), pod {pod}")),
                Some(s) => Check::fail(
                    c,
                    name,
                    format!("istiod lists {cluster} as `{}`, not synced: link {step} does not work", shown(s)),
                )
                .fix(fix),
                None => Check::fail(
                    c,
                    name,
                    format!("istiod does not list {cluster}: link {step} does not work"),
                )
                .fix(fix),
            }
        })
        .collect()
}

/// The running istiod pods of a revision, by name.
async fn istiod_pods(
    conn: &Connection,
    revision: Option<&str>,
) -> Result<Vec<String>, ClusterError> {
    use k8s_openapi::api::core::v1::Pod;
    let api: kube::Api<Pod> = kube::Api::namespaced(conn.client.clone(), NS);
    let rev = revision.filter(|r| !r.is_empty()).unwrap_or("default");
    let lp = kube::api::ListParams::default().labels(&format!("app=istiod,istio.io/rev={rev}"));
    let listed = conn.call("listing istiod pods", || api.list(&lp)).await?;
    let mut names: Vec<String> = listed
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

/// How long istiod may take to answer through the port-forward: a pod the
/// cluster cannot reach hangs until then.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest answer read from istiod's debug endpoint.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// A GET of `path` on `port` of `pod`, through a port-forward (the pods'
/// `portforward` subresource), as `istioctl remote-clusters` asks istiod.
/// Not the API server's pod proxy: istiod answers its debug endpoints only
/// to requests from localhost or authenticated as a workload, and the proxy
/// strips the caller's credentials, so through it a real istiod says 401;
/// a port-forward arrives from localhost inside the pod, as the kubelet
/// connects.
async fn ask_pod(conn: &Connection, pod: &str, port: u16, path: &str) -> Result<String, String> {
    use http_body_util::BodyExt;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(conn.client.clone(), NS);
    let ask = async {
        let mut forward = pods
            .portforward(pod, &[port])
            .await
            .map_err(|e| format!("port-forward refused: {e}"))?;
        let stream = forward
            .take_stream(port)
            .ok_or("port-forward gave no stream")?;
        let error = forward.take_error(port);
        let asked = async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let req = http::Request::get(path)
                .header("host", format!("localhost:{port}"))
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .map_err(|e| e.to_string())?;
            let answer = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = answer.status();
            let body = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer (at most {} MiB): {e}", MAX_ANSWER >> 20))?
                .to_bytes();
            let body = String::from_utf8_lossy(&body).to_string();
            if !status.is_success() {
                return Err(format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    shown(body.trim().chars().take(200).collect::<String>().as_str())
                ));
            }
            Ok(body)
        };
        let answer = asked.await;
        forward.abort();
        match answer {
            Ok(a) => Ok(a),
            // What the far side said, when it said something (nothing
            // listens on the port, say).
            Err(e) => match error {
                Some(err) => {
                    match tokio::time::timeout(std::time::Duration::from_millis(200), err).await {
                        Ok(Some(said)) => Err(said),
                        _ => Err(e),
                    }
                }
                None => Err(e),
            },
        }
    };
    match tokio::time::timeout(ASK_TIMEOUT, ask).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {} s through the port-forward",
            ASK_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("docker.io/istio/pilot:1.28.0"), Some("1.28.0"));
        assert_eq!(image_tag("localhost:5000/pilot:1.28.1"), Some("1.28.1"));
        assert_eq!(image_tag("localhost:5000/pilot"), None);
        assert_eq!(image_tag("istio/pilot@sha256:abcd"), None);
    }

    #[test]
    fn an_intermediate_chains_to_its_root_and_not_to_another() {
        let (root, key) = crate::ca::new_root("check root").unwrap();
        let (other, _) = crate::ca::new_root("other root").unwrap();
        let ca = crate::ca::intermediate(&root, &key, "c1", 365).unwrap();
        let not_after = verify_signed_by(&ca.cert_pem, &root).unwrap();
        assert!(not_after > crate::ca::now());
        let why = verify_signed_by(&ca.cert_pem, &other).unwrap_err();
        assert!(why.contains("not by the mesh's root"), "{why}");
        assert!(verify_signed_by("nonsense", &root).is_err());
    }

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
