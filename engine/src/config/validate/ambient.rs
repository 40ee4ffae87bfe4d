//! `[mesh] dataplane = "ambient"`: Istio's ambient multicluster, and what
//! Istio supports of it (docs/ambient.md cites each rule's source).

use super::Checker;
use super::clusters::minor_of;
use crate::config::model::{Cluster, Dataplane, MeshSection};
use crate::config::parse::{Draft, DraftCluster};

/// The first Istio release with ambient mode stable (one cluster).
pub const AMBIENT_MINOR: u32 = 24;
/// The first with ambient multicluster, across networks, in beta (alpha
/// from 1.27).
pub const AMBIENT_MULTI_NETWORK_MINOR: u32 = 29;

impl Checker<'_> {
    pub(super) fn dataplane(
        &mut self,
        draft: &Draft,
        mesh: &MeshSection,
        clusters: &[(Cluster, &DraftCluster)],
        trust: bool,
    ) -> Dataplane {
        let Some(at) = &draft.dataplane else {
            return Dataplane::Sidecar;
        };
        let dataplane = match at.value.as_str() {
            "sidecar" => return Dataplane::Sidecar,
            "ambient" => Dataplane::Ambient,
            other => {
                self.error(
                    at.span.clone(),
                    format!("dataplane `{other}` is not one mesh installs"),
                    "write dataplane = \"sidecar\" (the default) or dataplane = \"ambient\"",
                );
                return Dataplane::Sidecar;
            }
        };
        // Every cluster a primary: Istio's ambient multicluster guide.
        for dc in &draft.clusters {
            if let Some(role) = &dc.role
                && role.value == "remote"
            {
                self.error(
                    role.span.clone(),
                    format!(
                        "`{}` is a remote, and Istio's ambient mode supports only multi-primary: \
                         \"Primary remote configuration is not currently supported… Configurations \
                         with one or more remote clusters will not work correctly\" \
                         (istio.io/latest/docs/ambient/install/multicluster)",
                        dc.name.as_ref().map_or("?", |n| n.value.as_str())
                    ),
                    "make it a primary (role = \"primary\", and remove `primary`), or keep \
                     dataplane = \"sidecar\" for a primary-remote mesh",
                );
            }
        }
        if !trust {
            self.error(
                at.span.clone(),
                "an ambient mesh needs a common root of trust: each cluster's ztunnel and \
                 east-west gateway accept only peers whose certificates chain to the same root",
                "add a [trust] section with root_cert and root_key; `mesh ca init` makes a new \
                 root in certs/ beside the mesh file",
            );
        }
        let networks = {
            let mut n: Vec<&str> = clusters.iter().map(|(c, _)| c.network.as_str()).collect();
            n.sort();
            n.dedup();
            n.len()
        };
        // Istio's guide: "Only multi-network configurations are supported".
        if clusters.len() > 1 && networks == 1 {
            self.error(
                at.span.clone(),
                format!(
                    "an ambient mesh of {} clusters on one network: Istio's ambient multicluster \
                     supports \"only multi-network configurations\" (one network is untested and may \
                     be broken: istio.io/latest/docs/ambient/install/multicluster)",
                    clusters.len()
                ),
                "give each cluster its own `network`, or keep dataplane = \"sidecar\" for clusters \
                 sharing a network",
            );
        }
        if let (Some(v), Some(vat)) = (&mesh.istio_version, &draft.istio_version)
            && let Some(minor) = minor_of(v)
        {
            let (need, what) = if clusters.len() > 1 {
                (
                    AMBIENT_MULTI_NETWORK_MINOR,
                    "ambient multicluster across networks is in Istio from 1.29 (beta)",
                )
            } else {
                (AMBIENT_MINOR, "ambient mode is in Istio from 1.24 (stable)")
            };
            if minor < need {
                self.error(
                    vat.span.clone(),
                    format!("istio_version `{v}` is too old for this mesh: {what}"),
                    format!("pin Istio 1.{need} or later (and its istioctl), or keep dataplane = \"sidecar\""),
                );
            }
        }
        // One ztunnel per node: a second revision would take it over.
        for k in &draft.keep_revisions {
            self.error(
                k.span.clone(),
                "an ambient mesh cannot keep a second revision installed: a cluster runs one \
                 ztunnel and one istio-cni, which a second revision's install takes over \
                 (Istio does not yet run several ztunnel revisions side by side; \
                 istio-ecosystem/sail-operator#1299)",
                "upgrade an ambient mesh in place: change istio_version (one minor release at a \
                 time) and remove [[mesh.keep_revision]]",
            );
        }
        dataplane
    }
}
