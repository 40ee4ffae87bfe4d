//! The step kinds, one file each, and the one list that registers them.
//!
//! Each file holds its kind's `Input`, its pure `render`, and a unit struct
//! implementing [`Kind`] (apply, read, destroy, and where it differs from
//! the defaults, adopt and preview). The `registry!` list below turns the
//! kinds into what the engine holds: [`StepKind`] (a step ID's second half),
//! [`StepInput`] (any kind's input) and one method per verb that dispatches
//! to the kind. Adding a kind is a new file and one line in that list.
//!
//! Two helpers are not kinds: `istioctl_install` (what the three istioctl
//! install kinds share) and [`crate::objects`] (the default verbs).

pub mod istioctl_install;

use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::kind::{Adoption, Kind, OutputLookup};
use crate::observe::Observation;
use crate::rendered::Rendered;
use std::fmt;
use std::str::FromStr;

pub use istioctl_install::ISTIO_VERSION_ANNOTATION;

/// Declares each kind's module and builds the enums and dispatch from the
/// list: `Variant => module::Type,`.
macro_rules! registry {
    ($($variant:ident => $module:ident :: $kind:ident,)+) => {
        $(pub mod $module;)+

        /// A kind of step. Its string form is the second half of a step ID
        /// (`cluster1/install-control-plane`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum StepKind {
            $($variant,)+
        }

        impl StepKind {
            pub const ALL: &[StepKind] = &[$(StepKind::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(StepKind::$variant => <$module::$kind as Kind>::NAME,)+
                }
            }

            /// Reads a recorded step back from its cluster ([`Kind::read`]).
            /// `input` is the step as the mesh file has it now, if it does.
            pub async fn read(
                self,
                cx: Ctx<'_>,
                recorded: &Recorded<'_>,
                input: Option<&StepInput>,
            ) -> Result<Observation, StepError> {
                match self {
                    $(StepKind::$variant => {
                        let input = match input {
                            Some(StepInput::$variant(i)) => Some(i),
                            _ => None,
                        };
                        <$module::$kind as Kind>::read(cx, recorded, input).await
                    })+
                }
            }

            /// What deleting the step removes, in plain words ([`Kind::removes`]).
            pub fn removes(self, cluster: &str, holder: Option<&str>, recorded: &[serde_json::Value]) -> String {
                match self {
                    $(StepKind::$variant => <$module::$kind as Kind>::removes(cluster, holder, recorded),)+
                }
            }

            /// What destroying a recorded step needs of its cluster
            /// ([`Kind::destroy_access`]).
            pub fn destroy_access(self) -> Vec<crate::access::Access> {
                match self {
                    $(StepKind::$variant => <$module::$kind as Kind>::destroy_access(),)+
                }
            }

            /// Whether applying (`destroy` false) or destroying a step of
            /// this kind runs istioctl ([`Kind::RUNS_ISTIOCTL`]).
            pub fn runs_istioctl(self, destroy: bool) -> bool {
                let runs = match self {
                    $(StepKind::$variant => <$module::$kind as Kind>::RUNS_ISTIOCTL,)+
                };
                if destroy { runs.destroy } else { runs.apply }
            }

            /// Undoes a recorded step, from its record alone ([`Kind::destroy`]).
            pub async fn destroy(
                self,
                cx: Ctx<'_>,
                recorded: &Recorded<'_>,
            ) -> Result<String, StepError> {
                match self {
                    $(StepKind::$variant => <$module::$kind as Kind>::destroy(cx, recorded).await,)+
                }
            }
        }

        /// The input of one step, whatever its kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum StepInput {
            $($variant(<$module::$kind as Kind>::Input),)+
        }

        impl StepInput {
            pub fn kind(&self) -> StepKind {
                match self {
                    $(StepInput::$variant(_) => StepKind::$variant,)+
                }
            }

            /// What applying the step needs of the clusters
            /// ([`Kind::apply_access`]; `update`: it is recorded already).
            pub fn apply_access(&self, update: bool) -> Vec<crate::access::Need> {
                match self {
                    $(StepInput::$variant(i) => <$module::$kind as Kind>::apply_access(i, update),)+
                }
            }

            /// The step's canonical input ([`Kind::render`]); pure.
            pub fn render(&self, outputs: OutputLookup<'_>) -> Rendered {
                match self {
                    $(StepInput::$variant(i) => <$module::$kind as Kind>::render(i, outputs),)+
                }
            }

            /// Whether the step looks at its cluster before it is first
            /// applied ([`Kind::PREVIEWS`]).
            pub fn has_preview(&self) -> bool {
                match self {
                    $(StepInput::$variant(_) => <$module::$kind as Kind>::PREVIEWS,)+
                }
            }

            /// What an update from the recorded input `recorded` (its
            /// canonical text) to `new` leaves behind, one phrase each for
            /// the plan's reason ([`Kind::leftovers`]); pure.
            pub fn leftovers(&self, recorded: &str, new: &Rendered) -> Vec<String> {
                let old = Recorded {
                    input: recorded,
                    outputs: &Default::default(),
                };
                let Ok(old) = old.documents() else {
                    return Vec::new();
                };
                match self {
                    $(StepInput::$variant(_) => <$module::$kind as Kind>::leftovers(&old, new),)+
                }
            }

            /// Applies the step, rendered as `rendered` ([`Kind::apply`]).
            pub async fn apply(
                &self,
                cx: Ctx<'_>,
                rendered: &Rendered,
                previous: Option<&Recorded<'_>>,
            ) -> Result<Applied, StepError> {
                match self {
                    $(StepInput::$variant(i) => {
                        <$module::$kind as Kind>::apply(cx, i, rendered, previous).await
                    })+
                }
            }

            /// For `mesh import` ([`Kind::adopt`]); changes nothing.
            pub async fn adopt(&self, cx: Ctx<'_>, text: &str) -> Result<Adoption, StepError> {
                match self {
                    $(StepInput::$variant(i) => <$module::$kind as Kind>::adopt(cx, i, text).await,)+
                }
            }

            /// What the step would replace, before its first apply
            /// ([`Kind::preview`]; empty for kinds that replace nothing).
            pub async fn preview(&self, cx: Ctx<'_>) -> Result<Vec<String>, StepError> {
                match self {
                    $(StepInput::$variant(i) if <$module::$kind as Kind>::PREVIEWS => {
                        <$module::$kind as Kind>::preview(cx, i).await
                    })+
                    _ => Ok(Vec::new()),
                }
            }
        }
    };
}

// The kinds, in the order of the step tables of docs/mesh-toml.md: the seed's seven, then
// the topologies' `plug-ca` and `expose-services`, the upgrades' `revision-tag`, and
// ambient's `gateway-api-crds` and `ambient-eastwest-gateway`.
registry! {
    InstallControlPlane => install_control_plane::InstallControlPlane,
    InstallEastwestGateway => install_eastwest_gateway::InstallEastwestGateway,
    EastwestAddress => eastwest_address::EastwestAddress,
    ExposeIstiod => expose_istiod::ExposeIstiod,
    PrepareNamespace => prepare_namespace::PrepareNamespace,
    InstallRemote => install_remote::InstallRemote,
    Attach => attach::Attach,
    PlugCa => plug_ca::PlugCa,
    ExposeServices => expose_services::ExposeServices,
    RevisionTag => revision_tag::RevisionTag,
    GatewayApiCrds => gateway_api_crds::GatewayApiCrds,
    AmbientEastwestGateway => ambient_eastwest_gateway::AmbientEastwestGateway,
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
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown step kind `{s}`"))
    }
}
