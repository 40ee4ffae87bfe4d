//! `istiod`, `istiod… version` and `istiod sees C`: the primaries' control
//! planes run (every revision's), the mesh's revision is the pinned Istio
//! version, and istiod itself reports every cluster it should read as
//! synced (its `/debug/clusterz`, as `istioctl remote-clusters` asks it).

use super::*;
use crate::istio::{DEBUG_PORT, image_tag, is_istiod, istiod_name};
use k8s_openapi::api::apps::v1::Deployment;

pub(super) async fn istiod(
    spec: &ClusterSpec,
    conn: &Connection,
) -> Result<Vec<Check>, ClusterError> {
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
    Ok(deployments(spec, &listed))
}

/// One line per istiod Deployment of `listed` (and the version of the
/// mesh's revision, when pinned); a FAIL first when the mesh's revision
/// has none.
fn deployments(spec: &ClusterSpec, listed: &[Deployment]) -> Vec<Check> {
    let c = &spec.name;
    let want = istiod_name(spec.revision.as_deref());
    let mut out = Vec::new();
    let istiods: Vec<&Deployment> = listed
        .iter()
        .filter(|d| is_istiod(d.metadata.name.as_deref().unwrap_or_default()))
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
        out.push(istiod_available(spec, &name, d));
        // The pinned version, for the revision mesh installs.
        if let Some(pinned) = &spec.istio_version
            && name == want
        {
            out.push(version(spec, &name, &discovery_image(d), pinned));
        }
    }
    out
}

/// The image of istiod's `discovery` container (else its first).
fn discovery_image(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| {
            p.containers
                .iter()
                .find(|c| c.name == "discovery")
                .or(p.containers.first())
        })
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// `istiod[-rev]`: not scaled to 0, a ready and available replica.
fn istiod_available(spec: &ClusterSpec, name: &str, d: &Deployment) -> Check {
    let (c, ctx) = (&spec.name, &spec.target.context);
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.as_ref();
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
    if replicas == 0 {
        Check::fail(c, name, format!("Deployment {NS}/{name} is scaled to 0")).fix(MESH_APPLY)
    } else if ready < 1 || available < 1 {
        Check::fail(
            c,
            name,
            format!("Deployment {NS}/{name} not available ({ready}/{replicas} ready)"),
        )
        .fix(format!(
            "kubectl --context {ctx} -n {NS} describe deployment {name}; \
             kubectl --context {ctx} -n {NS} logs deployment/{name}"
        ))
    } else {
        Check::pass(c, name, format!("available ({ready}/{replicas} ready)"))
    }
}

/// `istiod[-rev] version`: the image's tag is the `pinned` release.
fn version(spec: &ClusterSpec, name: &str, image: &str, pinned: &str) -> Check {
    let (c, ctx) = (&spec.name, &spec.target.context);
    let vcheck = format!("{name} version");
    let tag = image_tag(image).filter(|t| t.starts_with(|ch: char| ch.is_ascii_digit()));
    match tag {
        Some(t) if crate::istioctl::version_matches(pinned, t) => {
            Check::pass(c, vcheck, format!("{t} (image {}), as pinned", shown(image)))
        }
        Some(t) => Check::fail(
            c,
            vcheck,
            format!(
                "runs {} (image {}), the mesh file pins istio_version = \"{pinned}\"",
                shown(t),
                shown(image)
            ),
        )
        .fix("`mesh plan` then `mesh apply` with the pinned istioctl on PATH (or [istioctl] path)"),
        None => Check::warn(
            c,
            vcheck,
            format!(
                "cannot be known: image {} has no version tag, so whether it is {pinned} is not proven",
                if image.is_empty() { "(none)".into() } else { shown(image) }
            ),
        )
        .fix(format!(
            "compare `kubectl --context {ctx} -n {NS} exec deployment/{name} -- pilot-discovery version` with {pinned}"
        )),
    }
}

/// The check's name while istiod cannot be asked at all.
const VIEW: &str = "istiod's view";

/// What the primary's istiods report of the clusters they read: the
/// `/debug/clusterz` of every running istiod pod of every revision (each
/// reads the remote secrets, and a workload may be served by any of them),
/// through a port-forward to the pod ([`crate::k8s::port_forward`]), as
/// `istioctl remote-clusters` asks one revision's. Every link whose
/// secret this primary holds must be listed as `synced` by every pod that
/// answers. A pod that cannot be asked is a WARN that says why.
pub(super) async fn istiod_view(spec: &ClusterSpec, conn: &Connection) -> Vec<Check> {
    let (c, ctx) = (&spec.name, &spec.target.context);
    let pods = match istiod_pods(conn).await {
        Ok(p) => p,
        Err(e) => {
            return vec![Check::warn(
                c,
                VIEW,
                format!("cannot list istiod's pods: {e}"),
            )];
        }
    };
    if pods.is_empty() {
        return vec![
            Check::warn(
                c,
                VIEW,
                "no running istiod pod to ask which clusters it reads".into(),
            )
            .fix(format!(
                "kubectl --context {ctx} -n {NS} get pods -l app=istiod"
            )),
        ];
    }
    // One port-forward per pod, all at once.
    let asked = futures::future::join_all(pods.iter().map(|pod| async move {
        let body =
            crate::k8s::port_forward::get(conn, NS, pod, DEBUG_PORT, "/debug/clusterz").await;
        (pod.as_str(), body)
    }))
    .await;
    let mut out = Vec::new();
    let mut answers: Vec<(&str, Vec<Value>)> = Vec::new();
    for (pod, body) in asked {
        match body.map(|b| clusterz(&b)) {
            Ok(Ok(listed)) => answers.push((pod, listed)),
            Ok(Err(body)) => out.push(Check::warn(
                c,
                VIEW,
                format!(
                    "istiod's /debug/clusterz answer (pod {pod}) is not a list of clusters: {}",
                    shown(&body)
                ),
            )),
            Err(e) => out.push(
                Check::warn(
                    c,
                    VIEW,
                    format!("cannot ask istiod (pod {pod}, port {DEBUG_PORT}, /debug/clusterz, through a port-forward): {e}"),
                )
                .fix(format!("istioctl --context {ctx} remote-clusters")),
            ),
        }
    }
    if !answers.is_empty() {
        out.extend(istiod_sees(spec, &answers));
    }
    out
}

/// The clusters a `/debug/clusterz` body lists, or the body when it is not
/// a list.
fn clusterz(body: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(a)) => Ok(a),
        _ => Err(body.to_string()),
    }
}

/// `istiod sees C` for each link this primary holds, from what each pod
/// that answered lists (`answers`: pod and its `/debug/clusterz`): a PASS
/// only when every one lists C as synced.
fn istiod_sees(spec: &ClusterSpec, answers: &[(&str, Vec<Value>)]) -> Vec<Check> {
    let (c, ctx) = (&spec.name, &spec.target.context);
    let several = answers.len() > 1;
    spec.istiod_reads
        .iter()
        .map(|(step, cluster)| {
            let name = format!("istiod sees {cluster}");
            let status = |listed: &[Value]| {
                listed
                    .iter()
                    .find(|e| e["id"] == cluster.as_str())
                    .map(|e| e["syncStatus"].as_str().unwrap_or("unknown").to_string())
            };
            let lagging = answers
                .iter()
                .find(|(_, listed)| status(listed).as_deref() != Some("synced"));
            let Some((pod, listed)) = lagging else {
                let pods: Vec<&str> = answers.iter().map(|(p, _)| *p).collect();
                let which = if several {
                    format!("pods {}", pods.join(", "))
                } else {
                    format!("pod {}", pods[0])
                };
                return Check::pass(c, name, format!("synced ({step}), {which}"));
            };
            let by = if several { format!(" (pod {pod})") } else { String::new() };
            let fix = format!(
                "check the lines of link {step}; then `kubectl --context {ctx} -n {NS} logs pod/{pod} | grep {cluster}`"
            );
            match status(listed) {
                Some(s) => Check::fail(
                    c,
                    name,
                    format!("istiod{by} lists {cluster} as `{}`, not synced: link {step} does not work", shown(&s)),
                )
                .fix(fix),
                None => Check::fail(
                    c,
                    name,
                    format!("istiod{by} does not list {cluster}: link {step} does not work"),
                )
                .fix(fix),
            }
        })
        .collect()
}

/// The running istiod pods of every revision, by name.
async fn istiod_pods(conn: &Connection) -> Result<Vec<String>, ClusterError> {
    Ok(crate::istiod_clients::running(conn)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests_support::spec;

    fn deployment(name: &str, replicas: i32, ready: i32, image: &str) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {}, "template": {"spec": {"containers": [
                {"name": "discovery", "image": image}]}}},
            "status": {"readyReplicas": ready, "availableReplicas": ready},
        }))
        .unwrap()
    }

    #[test]
    fn every_istiod_is_judged_and_the_mesh_revision_must_exist() {
        let mut s = spec("c1");
        s.revision = Some("canary".into());
        s.istio_version = Some("1.28".into());
        let listed = vec![
            deployment("istiod", 1, 1, "docker.io/istio/pilot:1.27.3"),
            deployment("istiod-canary", 2, 0, "docker.io/istio/pilot:1.28.1"),
            deployment("istio-ingressgateway", 1, 1, "x"),
        ];
        let out = deployments(&s, &listed);
        let names: Vec<(&str, Status)> = out.iter().map(|c| (c.check.as_str(), c.status)).collect();
        assert_eq!(
            names,
            [
                ("istiod", Status::Pass),
                ("istiod-canary", Status::Fail),
                ("istiod-canary version", Status::Pass),
            ]
        );
        assert!(out[1].detail.contains("not available (0/2 ready)"));
        let none = deployments(&s, &listed[..1]);
        assert_eq!(none[0].check, "istiod-canary");
        assert!(none[0].detail.contains("missing"));
    }

    #[test]
    fn the_version_is_the_image_tag() {
        let s = spec("c1");
        assert_eq!(
            version(&s, "istiod", "pilot:1.28.0", "1.28").status,
            Status::Pass
        );
        let other = version(&s, "istiod", "pilot:1.27.0", "1.28");
        assert_eq!(other.status, Status::Fail);
        assert!(other.detail.contains("pins istio_version = \"1.28\""));
        assert_eq!(
            version(&s, "istiod", "pilot@sha256:ab", "1.28").status,
            Status::Warn
        );
        assert_eq!(
            version(&s, "istiod", "pilot:latest", "1.28").status,
            Status::Warn
        );
    }

    #[test]
    fn every_istiod_pod_must_list_each_link_synced() {
        let mut s = spec("c1");
        s.istiod_reads = vec![
            ("c2/attach".into(), "c2".into()),
            ("c3/attach".into(), "c3".into()),
            ("c4/attach".into(), "c4".into()),
        ];
        let listed =
            clusterz(r#"[{"id":"c2","syncStatus":"synced"},{"id":"c3","syncStatus":"timeout"}]"#)
                .unwrap();
        let out = istiod_sees(&s, &[("istiod-1", listed.clone())]);
        assert_eq!(out[0].status, Status::Pass);
        assert_eq!(out[0].detail, "synced (c2/attach), pod istiod-1");
        assert_eq!(out[1].status, Status::Fail);
        assert!(out[1].detail.contains("as `timeout`, not synced"));
        assert!(out[2].detail.contains("does not list c4"));
        // A second pod (another revision's) that has not synced c2 yet.
        let behind = clusterz(r#"[{"id":"c2","syncStatus":"syncing"}]"#).unwrap();
        let out = istiod_sees(
            &s,
            &[("istiod-1", listed.clone()), ("istiod-canary-1", behind)],
        );
        assert_eq!(out[0].status, Status::Fail);
        assert!(
            out[0]
                .detail
                .starts_with("istiod (pod istiod-canary-1) lists c2 as `syncing`"),
            "{}",
            out[0].detail
        );
        let both = istiod_sees(&s, &[("istiod-1", listed.clone()), ("istiod-2", listed)]);
        assert_eq!(
            both[0].detail,
            "synced (c2/attach), pods istiod-1, istiod-2"
        );
        assert_eq!(clusterz("<html>\n").unwrap_err(), "<html>\n");
    }
}
