//! The resource types a simulated cluster serves: the built-in kinds mesh
//! and kubectl need, plus every CustomResourceDefinition created.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// Serves a `/status` subresource.
    pub status: bool,
    /// kubectl's abbreviations (`ns`, `svc`).
    pub short_names: Vec<String>,
}

impl ResourceType {
    fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            status: false,
            short_names: short_names(plural).iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` or `plural.group`, as the API server names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The key objects of this type are stored under (all versions share it).
    pub fn key(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }

    /// An entry of an APIResourceList.
    pub fn discovery(&self) -> Value {
        let mut verbs = vec![
            "create", "delete", "get", "list", "patch", "update", "watch",
        ];
        if self.plural != "namespaces" {
            verbs.push("deletecollection");
        }
        let mut entry = json!({
            "name": self.plural,
            "singularName": self.kind.to_lowercase(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
        });
        // `kubectl get all`: the kinds a real server puts in category "all"
        // (of those kubesim serves).
        if matches!(
            (self.group.as_str(), self.plural.as_str()),
            ("", "pods" | "services") | ("apps", "deployments")
        ) {
            entry["categories"] = json!(["all"]);
        }
        entry
    }
}

fn short_names(plural: &str) -> &'static [&'static str] {
    match plural {
        "namespaces" => &["ns"],
        "services" => &["svc"],
        "serviceaccounts" => &["sa"],
        "configmaps" => &["cm"],
        "pods" => &["po"],
        "endpoints" => &["ep"],
        "deployments" => &["deploy"],
        "daemonsets" => &["ds"],
        "statefulsets" => &["sts"],
        "customresourcedefinitions" => &["crd", "crds"],
        _ => &[],
    }
}

/// The built-in kinds.
pub fn builtin() -> Vec<ResourceType> {
    let mut services = ResourceType::new("", "v1", "Service", "services", true);
    services.status = true;
    let mut namespaces = ResourceType::new("", "v1", "Namespace", "namespaces", false);
    namespaces.status = true;
    let mut deployments = ResourceType::new("apps", "v1", "Deployment", "deployments", true);
    deployments.status = true;
    let mut daemonsets = ResourceType::new("apps", "v1", "DaemonSet", "daemonsets", true);
    daemonsets.status = true;
    let mut statefulsets = ResourceType::new("apps", "v1", "StatefulSet", "statefulsets", true);
    statefulsets.status = true;
    vec![
        namespaces,
        services,
        ResourceType::new("", "v1", "Secret", "secrets", true),
        ResourceType::new("", "v1", "ServiceAccount", "serviceaccounts", true),
        ResourceType::new("", "v1", "ConfigMap", "configmaps", true),
        ResourceType::new("", "v1", "Pod", "pods", true),
        ResourceType::new("", "v1", "Endpoints", "endpoints", true),
        ResourceType::new(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
        ),
        deployments,
        daemonsets,
        statefulsets,
        ResourceType::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        ResourceType::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        ResourceType::new("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        ResourceType::new(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        ResourceType::new(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
        ),
        ResourceType::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
        ),
        ResourceType::new("coordination.k8s.io", "v1", "Lease", "leases", true),
        ResourceType::new(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        ),
    ]
}

/// The resource types a CRD object defines (one per served version).
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let (Some(group), Some(kind), Some(plural)) = (
        spec["group"].as_str(),
        spec["names"]["kind"].as_str(),
        spec["names"]["plural"].as_str(),
    ) else {
        return Vec::new();
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .map(|(version, v)| {
            let mut t = ResourceType::new(group, version, kind, plural, namespaced);
            // A status subresource only where the CRD declares one.
            t.status = v.pointer("/subresources/status").is_some()
                || spec.pointer("/subresources/status").is_some();
            t.short_names = spec["names"]["shortNames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(String::from))
                .collect();
            t
        })
        .collect()
}
