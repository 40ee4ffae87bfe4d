//! Permissions: what a step needs of a cluster, as the step kinds declare
//! it ([`crate::Kind::apply_access`], [`crate::Kind::destroy_access`]) and
//! preflight checks it (one `SelfSubjectAccessReview` each). Below both:
//! a kind says what it needs without knowing how it is checked.

use crate::rendered::Target;
use std::fmt;

const ISTIO: &str = crate::istio::NAMESPACE;

/// One permission: a verb on a resource, in a namespace or cluster-wide.
/// `*` is every verb, or every resource of every group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub verb: &'static str,
    /// The API group ("" for the core group; `*` with resource `*`).
    pub group: &'static str,
    /// The plural resource name.
    pub resource: &'static str,
    /// None: cluster-wide.
    pub namespace: Option<String>,
}

impl Access {
    pub fn new(
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        ns: Option<&str>,
    ) -> Self {
        Access {
            verb,
            group,
            resource,
            namespace: ns.map(String::from),
        }
    }

    /// `resource.group`, as kubectl names it.
    fn qualified(&self) -> String {
        if self.group.is_empty() || self.group == "*" {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// The `kubectl auth can-i` arguments that ask the same question.
    pub fn can_i(&self) -> String {
        let ns = match &self.namespace {
            Some(ns) => format!(" -n {ns}"),
            None => String::new(),
        };
        format!("'{}' '{}'{ns}", self.verb, self.qualified())
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.verb == "*" {
            "every verb on"
        } else {
            self.verb
        };
        let what = if self.resource == "*" {
            "every resource".to_string()
        } else {
            self.qualified()
        };
        match &self.namespace {
            Some(ns) => write!(f, "{verb} {what} in {ns}"),
            None => write!(f, "{verb} {what} (cluster-wide)"),
        }
    }
}

/// A permission a step needs, and where: its own target, or (for
/// `R/attach`) the remote cluster it reads the reader token from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// None: the step's target cluster.
    pub remote: Option<Target>,
    pub access: Access,
}

/// The needs of a step in its own target cluster.
pub fn here(access: Vec<Access>) -> Vec<Need> {
    access
        .into_iter()
        .map(|access| Need {
            remote: None,
            access,
        })
        .collect()
}

/// What `istioctl install` and `uninstall --purge` do: anything in
/// istio-system, and create or delete the cluster-wide objects of Istio's
/// charts (CRDs, cluster roles and their bindings, webhooks, the namespace).
pub fn istioctl_access(verb: &'static str) -> Vec<Access> {
    let mut access = vec![Access::new("*", "*", "*", Some(ISTIO))];
    for (group, resource) in [
        ("", "namespaces"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
        ),
    ] {
        access.push(Access::new(verb, group, resource, None));
    }
    access
}

/// Objects mesh server-side applies: creating one needs `create` as well
/// as `patch`; an update may delete what is no longer rendered.
pub fn applied(group: &'static str, resources: &[&'static str], update: bool) -> Vec<Access> {
    let mut access = Vec::new();
    for r in resources {
        access.push(Access::new("create", group, r, Some(ISTIO)));
        access.push(Access::new("patch", group, r, Some(ISTIO)));
        if update {
            access.push(Access::new("delete", group, r, Some(ISTIO)));
        }
    }
    access
}

/// What `istioctl tag set` and `tag remove` touch: the tag's webhooks
/// (mutating, and for `default` the validating one) and its Service.
pub fn tag_access() -> Vec<Access> {
    let mut access = Vec::new();
    for (group, resource, ns) in [
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            None,
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            None,
        ),
        ("", "services", Some(ISTIO)),
    ] {
        for verb in ["get", "list", "create", "patch", "delete"] {
            access.push(Access::new(verb, group, resource, ns));
        }
    }
    access
}

/// Cluster-wide `verbs` on CustomResourceDefinitions.
pub fn crds(verbs: &[&'static str]) -> Vec<Access> {
    verbs
        .iter()
        .map(|v| Access::new(v, "apiextensions.k8s.io", "customresourcedefinitions", None))
        .collect()
}

/// `verbs` on `resource` of the core group in istio-system.
pub fn in_istio(
    verbs: &[&'static str],
    group: &'static str,
    resource: &'static str,
) -> Vec<Access> {
    verbs
        .iter()
        .map(|v| Access::new(v, group, resource, Some(ISTIO)))
        .collect()
}
