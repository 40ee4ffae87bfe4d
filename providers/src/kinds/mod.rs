//! The step kinds (DESIGN.md's step tables: the seed's seven, and the
//! topologies' `plug-ca` and `expose-services`), one module each, and the
//! enums the engine uses to hold any of them.

pub mod attach;
pub mod eastwest_address;
pub mod expose_istiod;
pub mod expose_services;
pub mod install_control_plane;
pub mod install_eastwest_gateway;
pub mod install_remote;
pub mod plug_ca;
pub mod prepare_namespace;

use crate::rendered::{Known, Rendered};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// The annotation that carries `[mesh] istio_version` into the install
/// steps' IstioOperators: istioctl ignores it, but it is part of the
/// step's input, so changing the version shows as an update of every
/// install (an upgrade in the plan) and re-runs them.
pub const ISTIO_VERSION_ANNOTATION: &str = "mesh/istio-version";

/// An IstioOperator's `metadata`: its name, and the Istio version when the
/// mesh file pins one. The name matters: `istioctl install` prunes every
/// object of its revision that carries its owner labels, and an unnamed
/// IstioOperator's owner labels match other IstioOperators' objects too,
/// so re-installing an unnamed control plane deletes the east-west gateway
/// (Istio issues 29634 and 36982). Each install of mesh's has its own name.
pub(crate) fn iop_metadata(name: &str, istio_version: Option<&str>) -> Value {
    let mut meta = serde_json::json!({ "name": name });
    if let Some(v) = istio_version {
        meta["annotations"] = serde_json::json!({ ISTIO_VERSION_ANNOTATION: v });
    }
    meta
}

/// The revision of an IstioOperator document (`default` when it has none).
pub(crate) fn revision_of(doc: Option<&Value>) -> String {
    doc.and_then(|d| d.pointer("/spec/revision"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// The recorded revision, when the new document installs another one.
pub(crate) fn revision_change(old: &[Value], new: &[Value]) -> Option<String> {
    let (was, now) = (revision_of(old.first()), revision_of(new.first()));
    (!old.is_empty() && was != now).then_some(was)
}

/// Looks up an upstream step's output: `(step id, output key)`.
pub type OutputLookup<'a> = &'a dyn Fn(&str, &str) -> Known<Value>;

/// A kind of step. Its string form is the second half of a step ID
/// (`cluster1/install-control-plane`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepKind {
    InstallControlPlane,
    InstallEastwestGateway,
    EastwestAddress,
    ExposeIstiod,
    PrepareNamespace,
    InstallRemote,
    Attach,
    PlugCa,
    ExposeServices,
}

impl StepKind {
    pub const ALL: [StepKind; 9] = [
        StepKind::InstallControlPlane,
        StepKind::InstallEastwestGateway,
        StepKind::EastwestAddress,
        StepKind::ExposeIstiod,
        StepKind::PrepareNamespace,
        StepKind::InstallRemote,
        StepKind::Attach,
        StepKind::PlugCa,
        StepKind::ExposeServices,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::InstallControlPlane => "install-control-plane",
            StepKind::InstallEastwestGateway => "install-eastwest-gateway",
            StepKind::EastwestAddress => "eastwest-address",
            StepKind::ExposeIstiod => "expose-istiod",
            StepKind::PrepareNamespace => "prepare-namespace",
            StepKind::InstallRemote => "install-remote",
            StepKind::Attach => "attach",
            StepKind::PlugCa => "plug-ca",
            StepKind::ExposeServices => "expose-services",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown step kind `{s}`"))
    }
}

/// The input of one step, whatever its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum StepInput {
    InstallControlPlane(install_control_plane::Input),
    InstallEastwestGateway(install_eastwest_gateway::Input),
    EastwestAddress(eastwest_address::Input),
    ExposeIstiod(expose_istiod::Input),
    PrepareNamespace(prepare_namespace::Input),
    InstallRemote(install_remote::Input),
    Attach(attach::Input),
    PlugCa(plug_ca::Input),
    ExposeServices(expose_services::Input),
}

impl StepInput {
    pub fn kind(&self) -> StepKind {
        match self {
            StepInput::InstallControlPlane(_) => StepKind::InstallControlPlane,
            StepInput::InstallEastwestGateway(_) => StepKind::InstallEastwestGateway,
            StepInput::EastwestAddress(_) => StepKind::EastwestAddress,
            StepInput::ExposeIstiod(_) => StepKind::ExposeIstiod,
            StepInput::PrepareNamespace(_) => StepKind::PrepareNamespace,
            StepInput::InstallRemote(_) => StepKind::InstallRemote,
            StepInput::Attach(_) => StepKind::Attach,
            StepInput::PlugCa(_) => StepKind::PlugCa,
            StepInput::ExposeServices(_) => StepKind::ExposeServices,
        }
    }

    /// Whether the step looks at its cluster before it is first applied
    /// ([`crate::run::preview`]): what is there may be replaced, and the
    /// plan should say so.
    pub fn has_preview(&self) -> bool {
        matches!(self, StepInput::PlugCa(_))
    }

    /// What an update from the recorded input `recorded` (its canonical
    /// text) to `new` leaves behind: objects mesh applied and no longer
    /// renders, which the apply deletes (a VirtualService renamed by a
    /// revision), and a replaced Istio revision, which stays installed (a
    /// canary upgrade keeps the old control plane until workloads moved;
    /// removing it is the user's call). One phrase each, for the plan's
    /// reason; pure.
    pub fn leftovers(&self, recorded: &str, new: &Rendered) -> Vec<String> {
        let old = crate::env::Recorded {
            input: recorded,
            outputs: &Default::default(),
        };
        let Ok(old_docs) = old.documents() else {
            return Vec::new();
        };
        match self {
            StepInput::ExposeIstiod(_) => {
                expose_istiod::no_longer_rendered(&old_docs, &new.documents)
                    .iter()
                    .map(|d| {
                        format!(
                            "will delete {} (no longer rendered)",
                            crate::k8s::describe(d)
                        )
                    })
                    .collect()
            }
            StepInput::InstallControlPlane(_) | StepInput::InstallRemote(_) => revision_change(
                &old_docs,
                &new.documents,
            )
            .map(|old| {
                vec![format!(
                    "Istio revision `{old}` stays installed beside the new one: once workloads \
                             have moved, remove it with `istioctl uninstall --revision {old}`"
                )]
            })
            .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Renders the step's canonical input. `outputs` supplies upstream
    /// outputs (only `install-remote` needs one: the east-west address).
    pub fn render(&self, outputs: OutputLookup<'_>) -> Rendered {
        match self {
            StepInput::InstallControlPlane(i) => install_control_plane::render(i),
            StepInput::InstallEastwestGateway(i) => install_eastwest_gateway::render(i),
            StepInput::EastwestAddress(i) => eastwest_address::render(i),
            StepInput::ExposeIstiod(i) => expose_istiod::render(i),
            StepInput::PrepareNamespace(i) => prepare_namespace::render(i),
            StepInput::InstallRemote(i) => install_remote::render(i, outputs),
            StepInput::Attach(i) => attach::render(i),
            StepInput::PlugCa(i) => plug_ca::render(i),
            StepInput::ExposeServices(i) => expose_services::render(i),
        }
    }
}
