//! `P/gateway-api-crds`: the Gateway API CRDs (standard channel) of an
//! ambient mesh's cluster, where it lacks them. Istio's ambient east-west
//! gateway is a Gateway API `Gateway`, and istiod watches `gateways` and
//! `gatewayclasses` of every cluster it reads; Kubernetes ships none of
//! them. Istio's guide installs them only where absent
//! (`kubectl get crd gateways.gateway.networking.k8s.io || kubectl apply …`).
//!
//! The CRDs are those of `sigs.k8s.io/gateway-api` at the version the
//! pinned Istio's go.mod requires (v1.6.0 for Istio 1.31), in this crate's
//! `assets/` (`scripts/vendor-gateway-api.sh`). The plan shows their names
//! and version, not their 1 MB of schema.
//!
//! CRDs someone else installed are left alone when they are of the same
//! minor release, and refused otherwise, before anything is written:
//! replacing them would downgrade or upgrade an API other tools serve.
//! Destroy deletes only the CRDs mesh installed (labelled so).

use crate::rendered::Rendered;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The Gateway API release the CRDs are of.
pub const BUNDLE_VERSION: &str = "v1.6.0";
const BUNDLE: &str = include_str!("../../assets/gateway-api-v1.6.0-standard.yaml");
pub const VERSION_ANNOTATION: &str = "gateway.networking.k8s.io/bundle-version";
pub const CHANNEL_ANNOTATION: &str = "gateway.networking.k8s.io/channel";
/// On the CRDs mesh installed: only those are ever deleted.
pub const MANAGED_BY: (&str, &str) = (crate::k8s::MANAGED_BY, crate::k8s::MESH);

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// [`BUNDLE_VERSION`], in the input so that a new bundle is a change.
    pub bundle_version: String,
}

/// The bundle's CRDs, whole, each labelled as mesh's.
fn bundle() -> &'static [Value] {
    static CRDS: OnceLock<Vec<Value>> = OnceLock::new();
    CRDS.get_or_init(|| {
        serde_saphyr::from_multiple::<Value>(BUNDLE)
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .map(|mut d| {
                d["metadata"]["labels"][MANAGED_BY.0] = json!(MANAGED_BY.1);
                d
            })
            .collect()
    })
}

fn name_of(d: &Value) -> &str {
    d.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// What the plan shows: each CRD by name, version and channel.
pub fn render(input: &Input) -> Rendered {
    Rendered {
        documents: bundle()
            .iter()
            .map(|d| {
                json!({
                    "apiVersion": "apiextensions.k8s.io/v1",
                    "kind": "CustomResourceDefinition",
                    "metadata": {
                        "name": name_of(d),
                        "labels": {MANAGED_BY.0: MANAGED_BY.1},
                        "annotations": {
                            VERSION_ANNOTATION: input.bundle_version,
                            CHANNEL_ANNOTATION: "standard",
                        },
                    },
                    "spec": "(Gateway API's own schema for this CRD, installed only where the cluster has none)",
                })
            })
            .collect(),
        unknown: false,
    }
}

/// `v1.6.0` → `(1, 6)`.
fn minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// What to do with one CRD of the bundle, given the live one.
#[derive(Debug, Clone, PartialEq)]
enum Decision {
    /// Absent, or mesh's own: (re)install it.
    Install,
    /// Someone else's, of the same minor release: leave it.
    Found(String),
    /// Someone else's, of another release: refuse, saying why.
    Refuse(String),
}

fn decide(cluster: &str, name: &str, live: Option<&kube::api::DynamicObject>) -> Decision {
    let Some(live) = live else {
        return Decision::Install;
    };
    let labels = live.metadata.labels.clone().unwrap_or_default();
    let annotations = live.metadata.annotations.clone().unwrap_or_default();
    let version = annotations.get(VERSION_ANNOTATION).cloned();
    // Mesh's own, as mesh installed it. One another tool re-applied at
    // another release (the label survives an apply) is that tool's now.
    if labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
        && version.as_deref() == Some(BUNDLE_VERSION)
    {
        return Decision::Install;
    }
    let channel = annotations
        .get(CHANNEL_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    match version.as_deref().and_then(minor) {
        Some(v) if Some(v) == minor(BUNDLE_VERSION) => {
            Decision::Found(format!("{} ({channel} channel)", version.unwrap_or_default()))
        }
        Some(v) => {
            let newer = Some(v) > minor(BUNDLE_VERSION);
            Decision::Refuse(format!(
                "cluster `{cluster}` has CustomResourceDefinition {name} of Gateway API {} ({channel} \
                 channel), which mesh did not install; the pinned Istio is built against Gateway API \
                 {BUNDLE_VERSION}. mesh never {} CRDs another tool installed: {}",
                version.unwrap_or_default(),
                if newer { "downgrades" } else { "upgrades" },
                if newer {
                    "pin an Istio release built against this Gateway API version, or reinstall the \
                     CRDs at v1.6 yourself"
                } else {
                    "upgrade them to v1.6 yourself (`kubectl apply --server-side -f` Gateway API's \
                     standard-install.yaml of v1.6.x), or delete them and let mesh install them"
                }
            ))
        }
        None => Decision::Refuse(format!(
            "cluster `{cluster}` has CustomResourceDefinition {name} without a Gateway API \
             bundle-version annotation, which mesh did not install: its version cannot be told. \
             Reinstall it from Gateway API {BUNDLE_VERSION}, or delete it and let mesh install it"
        )),
    }
}

// ---- against a cluster ----

use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::access::{self, Access, Need};
use crate::kind::{Adoption, Kind, OutputLookup};
use crate::observe::Observation;

fn crd_ref(name: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name}})
}

/// Each CRD of the bundle with what to do with it; an error naming every
/// CRD refused.
async fn decisions(cx: Ctx<'_>) -> Result<Vec<(&'static Value, Decision)>, StepError> {
    let conn = cx.connect().await?;
    let mut out = Vec::new();
    for d in bundle() {
        let live = crate::k8s::get(&conn, &crd_ref(name_of(d))).await?;
        out.push((d, decide(&cx.target.cluster, name_of(d), live.as_ref())));
    }
    let refused: Vec<&str> = out
        .iter()
        .filter_map(|(_, d)| match d {
            Decision::Refuse(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    if !refused.is_empty() {
        return Err(StepError::Refused(refused.join("\n")));
    }
    Ok(out)
}

/// How many objects of the CRD `crd` there are, cluster-wide (its storage
/// version). A CRD whose API does not serve counts none.
async fn objects_of(
    conn: &crate::cluster::Connection,
    crd: &kube::api::DynamicObject,
) -> Result<usize, StepError> {
    use kube::api::{Api, ApiResource, DynamicObject, ListParams};
    let spec = &crd.data["spec"];
    let (Some(group), Some(kind), Some(plural)) = (
        spec["group"].as_str(),
        spec.pointer("/names/kind").and_then(Value::as_str),
        spec.pointer("/names/plural").and_then(Value::as_str),
    ) else {
        return Ok(0);
    };
    let Some(version) = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["served"] == true)
        .and_then(|v| v["name"].as_str())
    else {
        return Ok(0);
    };
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = Api::all_with(conn.client.clone(), &ar);
    let lp = ListParams::default().limit(100);
    match conn.call(&format!("listing {plural}.{group}"), || api.list(&lp)).await {
        // Istio's own GatewayClasses (`istio`, `istio-east-west`…, which
        // istiod makes) go with Istio: they keep no CRD.
        Ok(list) => Ok(list
            .items
            .iter()
            .filter(|o| {
                !o.data
                    .pointer("/spec/controllerName")
                    .and_then(Value::as_str)
                    .is_some_and(|c| c.starts_with("istio.io/"))
            })
            .count()
            + list.metadata.remaining_item_count.unwrap_or(0) as usize),
        Err(crate::cluster::ClusterError::Api { cause, .. }) if crate::k8s::is_absent(&cause) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

/// The kind.
pub struct GatewayApiCrds;

impl Kind for GatewayApiCrds {
    const NAME: &'static str = "gateway-api-crds";
    /// CRDs another tool installed are named in the plan, or refused there.
    const PREVIEWS: bool = true;
    type Input = Input;

    /// The CRDs, each created where absent and waited for.
    fn apply_access(_: &Input, _update: bool) -> Vec<Need> {
        access::here(access::crds(&["get", "watch", "create", "patch"]))
    }

    fn destroy_access() -> Vec<Access> {
        access::crds(&["get", "delete"])
    }

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn removes(cluster: &str, _: Option<&str>, _: &[Value]) -> String {
        format!(
            "the Gateway API CRDs mesh installed in {cluster}, with every Gateway API object of \
             them (CRDs mesh found there are left)"
        )
    }

    /// Installs the CRDs the cluster lacks (and updates mesh's own), after
    /// checking every one: a refusal writes nothing.
    async fn apply(
        cx: Ctx<'_>,
        _input: &Input,
        _rendered: &Rendered,
        _previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        let plan = decisions(cx).await?;
        let conn = cx.connect().await?;
        let (mut installed, mut found) = (Vec::new(), Vec::new());
        let mut log = String::new();
        for (doc, decision) in plan {
            let name = name_of(doc).to_string();
            match decision {
                Decision::Install => {
                    crate::k8s::apply(&conn, doc).await?;
                    installed.push(name);
                }
                Decision::Found(v) => {
                    log.push_str(&format!("left CustomResourceDefinition {name} as found: {v}\n"));
                    found.push(name);
                }
                Decision::Refuse(_) => unreachable!("decisions refuses first"),
            }
        }
        // istiod watches them as soon as they serve.
        for name in &installed {
            crate::k8s::wait_crd_established(&conn, name, cx.env.wait_timeout).await?;
        }
        log.push_str(&format!(
            "installed {} Gateway API {BUNDLE_VERSION} CRDs (standard channel): {}\n",
            installed.len(),
            installed.join(", ")
        ));
        Ok(Applied {
            outputs: BTreeMap::from([
                ("installed".to_string(), json!(installed)),
                ("found".to_string(), json!(found)),
            ]),
            log,
        })
    }

    /// Drift: a CRD mesh installed, or one it found, gone.
    async fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        _input: Option<&Input>,
    ) -> Result<Observation, StepError> {
        let conn = cx.connect().await?;
        let mut obs = Observation::in_sync(recorded.outputs.clone());
        for name in names(recorded.outputs.get("installed"))
            .into_iter()
            .chain(names(recorded.outputs.get("found")))
        {
            if crate::k8s::get(&conn, &crd_ref(&name)).await?.is_none() {
                obs.drift
                    .push(format!("CustomResourceDefinition {name} missing"));
            }
        }
        Ok(obs)
    }

    /// Before the first apply: CRDs another tool installed, left alone (or
    /// refused, failing the plan).
    async fn preview(cx: Ctx<'_>, _input: &Input) -> Result<Vec<String>, StepError> {
        Ok(decisions(cx)
            .await?
            .into_iter()
            .filter_map(|(d, decision)| match decision {
                Decision::Found(v) => Some(format!(
                    "CustomResourceDefinition {} is there already ({v}): left as found",
                    name_of(d)
                )),
                _ => None,
            })
            .collect())
    }

    /// For `mesh import`: adopted when every CRD is there at this release.
    async fn adopt(cx: Ctx<'_>, _input: &Input, _text: &str) -> Result<Adoption, StepError> {
        let conn = cx.connect().await?;
        let (mut installed, mut found, mut missing) = (Vec::new(), Vec::new(), Vec::new());
        for d in bundle() {
            let name = name_of(d).to_string();
            let live = crate::k8s::get(&conn, &crd_ref(&name)).await?;
            match (live.is_some(), decide(&cx.target.cluster, &name, live.as_ref())) {
                (false, _) => missing.push(format!("CustomResourceDefinition {name} missing")),
                (true, Decision::Install) => installed.push(name),
                (true, Decision::Found(_)) => found.push(name),
                (true, Decision::Refuse(why)) => missing.push(why),
            }
        }
        if !missing.is_empty() {
            return Ok(Adoption::Differs(missing));
        }
        Ok(Adoption::Adopted(BTreeMap::from([
            ("installed".to_string(), json!(installed)),
            ("found".to_string(), json!(found)),
        ])))
    }

    /// Deletes the CRDs mesh installed (still labelled so), never the ones
    /// it found.
    async fn destroy(cx: Ctx<'_>, recorded: &Recorded<'_>) -> Result<String, StepError> {
        let conn = cx.connect().await?;
        let mut deleted = Vec::new();
        let mut kept = names(recorded.outputs.get("found"));
        // Mesh's own CRDs as they are, and how many objects each holds.
        let mut ours = Vec::new();
        for name in names(recorded.outputs.get("installed")) {
            let Some(live) = crate::k8s::get(&conn, &crd_ref(&name)).await? else {
                continue;
            };
            if decide(&cx.target.cluster, &name, Some(&live)) != Decision::Install {
                // Another tool's now (another release): not mesh's to delete.
                kept.push(format!("{name} (now another release)"));
                continue;
            }
            let used = objects_of(&conn, &live).await?;
            ours.push((name, used));
        }
        // Deleting a CRD deletes every object of it, and the Gateway API is
        // one API: an object someone else made (a Gateway, an HTTPRoute, a
        // waypoint) keeps the whole set, or its controllers would meet half
        // an API (a Gateway with no GatewayClass or route kinds).
        let in_use: Vec<String> = ours
            .iter()
            .filter(|(_, used)| *used > 0)
            .map(|(name, used)| {
                format!("{name} ({used} object{})", if *used == 1 { "" } else { "s" })
            })
            .collect();
        if !in_use.is_empty() {
            return Ok(format!(
                "kept every Gateway API CRD mesh installed ({}): still in use by {}\n",
                ours.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                in_use.join(", ")
            ));
        }
        for (name, _) in ours {
            crate::k8s::delete(&conn, &crd_ref(&name)).await?;
            deleted.push(name);
        }
        Ok(format!(
            "deleted the Gateway API CRDs mesh installed: {}{}\n",
            if deleted.is_empty() { "none".to_string() } else { deleted.join(", ") },
            if kept.is_empty() {
                String::new()
            } else {
                format!("; left those it found: {}", kept.join(", "))
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_gateway_apis_standard_crds_at_its_version() {
        let names: Vec<&str> = bundle().iter().map(name_of).collect();
        assert_eq!(names.len(), 10, "{names:?}");
        for n in ["gateways.gateway.networking.k8s.io", "gatewayclasses.gateway.networking.k8s.io"] {
            assert!(names.contains(&n), "{n}");
        }
        for d in bundle() {
            assert_eq!(d["metadata"]["annotations"][VERSION_ANNOTATION], BUNDLE_VERSION);
            assert_eq!(d["metadata"]["annotations"][CHANNEL_ANNOTATION], "standard");
        }
    }

    fn crd(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> kube::api::DynamicObject {
        let doc = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gateways.gateway.networking.k8s.io",
                "labels": labels.iter().cloned().collect::<BTreeMap<_, _>>(),
                "annotations": annotations.iter().cloned().collect::<BTreeMap<_, _>>()}});
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn crds_someone_else_installed_are_left_at_this_release_and_refused_at_another() {
        let n = "gateways.gateway.networking.k8s.io";
        assert_eq!(decide("c1", n, None), Decision::Install);
        let ours = crd(&[MANAGED_BY], &[(VERSION_ANNOTATION, BUNDLE_VERSION)]);
        assert_eq!(decide("c1", n, Some(&ours)), Decision::Install);
        // Mesh's label, but another tool re-applied it at another release.
        let upgraded = crd(&[MANAGED_BY], &[(VERSION_ANNOTATION, "v1.7.0")]);
        assert!(matches!(decide("c1", n, Some(&upgraded)), Decision::Refuse(_)));
        let same = crd(&[], &[(VERSION_ANNOTATION, "v1.6.2"), (CHANNEL_ANNOTATION, "experimental")]);
        assert_eq!(
            decide("c1", n, Some(&same)),
            Decision::Found("v1.6.2 (experimental channel)".into())
        );
        for (v, word) in [("v1.4.0", "upgrades"), ("v1.7.0", "downgrades")] {
            let Decision::Refuse(why) = decide("c1", n, Some(&crd(&[], &[(VERSION_ANNOTATION, v)]))) else {
                panic!("{v} not refused");
            };
            assert!(why.contains("cluster `c1`") && why.contains(n) && why.contains(v), "{why}");
            assert!(why.contains(&format!("never {word}")), "{why}");
        }
        assert!(matches!(decide("c1", n, Some(&crd(&[], &[]))), Decision::Refuse(_)));
    }
}
