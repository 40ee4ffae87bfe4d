//! Istio's names: the namespace, labels, annotations and object names that
//! more than one part of mesh uses (the step kinds, `mesh check`,
//! preflight). One place, so a kind that writes an object and a check that
//! reads it never disagree about what it is called.
//!
//! Names of Istio's own making only; what is mesh's (its ownership label,
//! the link token Secrets) lives with the code that owns it
//! ([`crate::k8s::MANAGED_BY`], [`crate::remote_secret`]).

/// Where Istio lives.
pub const NAMESPACE: &str = "istio-system";

/// The ConfigMap (key `root-cert.pem`) in which istiod publishes the roots
/// it has loaded, in every namespace: what workloads trust.
pub const ROOT_CONFIGMAP: &str = "istio-ca-root-cert";

/// The network of a cluster, on its istio-system namespace (and on the
/// gateways that serve it).
pub const NETWORK_LABEL: &str = "topology.istio.io/network";

/// A remote's primary, on its istio-system namespace.
pub const CONTROL_PLANE_ANNOTATION: &str = "topology.istio.io/controlPlaneClusters";

/// The revision (or tag) an object belongs to or a namespace is injected by.
pub const REVISION_LABEL: &str = "istio.io/rev";

/// The tag a revision tag's webhook (`istio-revision-tag-<tag>`) is.
pub const TAG_LABEL: &str = "istio.io/tag";

/// The east-west gateway's Service (and an ambient mesh's east-west
/// Gateway), as `gen-eastwest-gateway.sh` names it.
pub const EASTWEST_GATEWAY: &str = "istio-eastwestgateway";

/// The label that makes istiod read a Secret as a remote secret.
pub const MULTICLUSTER_LABEL: &str = "istio/multiCluster";

/// The remote secret's cluster, as an annotation.
pub const CLUSTER_ANNOTATION: &str = "networking.istio.io/cluster";

/// istiod's debug port (`/debug/clusterz`, …).
pub const DEBUG_PORT: u16 = 15014;

/// The name of a revision's object: `base` for the default revision,
/// `base-<revision>` otherwise (`istiod`, `istiod-canary`; `values`,
/// `values-canary`).
pub fn revisioned(base: &str, revision: Option<&str>) -> String {
    match revision {
        None | Some("") | Some("default") => base.to_string(),
        Some(r) => format!("{base}-{r}"),
    }
}

/// The istiod Deployment of a revision (`istiod`, `istiod-canary`).
pub fn istiod_name(revision: Option<&str>) -> String {
    revisioned("istiod", revision)
}

/// Whether a Deployment of istio-system is an istiod: `istiod`, or
/// `istiod-<revision>` (every revision's control plane).
pub fn is_istiod(name: &str) -> bool {
    name == "istiod" || name.starts_with("istiod-")
}

/// The tag of an image reference (`docker.io/istio/pilot:1.28.0` → `1.28.0`);
/// None for a digest or no tag.
pub fn image_tag(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next()?;
    if last.contains('@') {
        return None;
    }
    last.split_once(':').map(|(_, t)| t)
}

/// An ambient east-west Gateway as istiod leaves it once it has deployed
/// the gateway: `Programmed` true, and the addresses it lists in
/// `status.addresses` (istiod lists the external addresses of every
/// cluster's Service of that name, Istio's `gatewaycommon/context.go`).
/// None while not programmed; an empty list when programmed with none.
pub fn gateway_programmed(gateway: &serde_json::Value) -> Option<Vec<String>> {
    let programmed = gateway
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Programmed" && c["status"] == "True");
    programmed.then(|| {
        gateway
            .pointer("/status/addresses")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a["value"].as_str().map(String::from))
            .collect()
    })
}

/// Why a hostname is refused, in the words of Istio's guide.
fn hostname_refusal(hostname: &str) -> String {
    let hostname = crate::rendered::shown(hostname);
    format!(
        "the east-west gateway's load balancer has a hostname ({hostname}) and no IP address. \
         Primary-remote on one network needs an IP: remotes reach istiod through a Service of type \
         ExternalName that here only accepts IP addresses, and AWS load balancers (EKS) are presented \
         as hostnames. Use a load balancer that gives an IP (e.g. an AWS NLB with static IPs or \
         MetalLB), or a primary that is not on EKS"
    )
}

/// The east-west gateway Service's load-balancer address:
/// `Some(Ok(ip))`, `Some(Err(why))` for a hostname-only balancer or an
/// address that is not an IP, `None` while waiting. The address goes into
/// the remote's IstioOperator, so only a parsed IP (printed canonically)
/// ever leaves here.
pub fn eastwest_address(svc: &kube::api::DynamicObject) -> Option<Result<String, String>> {
    let ingress = svc.data.pointer("/status/loadBalancer/ingress/0")?;
    if let Some(ip) = ingress
        .get("ip")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return Some(match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(ip.to_string()),
            Err(_) => Err(format!(
                "the east-west gateway's load balancer reports `{}` as its IP, which is not an IP address. \
                 Check the load balancer controller of this cluster",
                crate::rendered::shown(ip)
            )),
        });
    }
    ingress
        .get("hostname")
        .and_then(serde_json::Value::as_str)
        .map(|h| Err(hostname_refusal(h)))
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
    fn revisioned_names() {
        assert_eq!(istiod_name(None), "istiod");
        assert_eq!(istiod_name(Some("default")), "istiod");
        assert_eq!(istiod_name(Some("canary")), "istiod-canary");
        assert_eq!(revisioned("values", Some("1-29")), "values-1-29");
        assert!(is_istiod("istiod") && is_istiod("istiod-1-29") && !is_istiod("istiodx"));
    }
}
