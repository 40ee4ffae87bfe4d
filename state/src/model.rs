//! The state file's model: what mesh has applied, step by step.
//!
//! This JSON is a contract (docs/state.md): scripts read it and older or
//! newer meshes meet it. Unknown fields are refused rather than dropped, so
//! a mesh never silently loses what a newer one recorded: any change to the
//! shape bumps [`FORMAT_VERSION`], and an older mesh then says "upgrade"
//! instead of rewriting the file without the new fields.
//!
//! Maps are `BTreeMap`s and fields serialise in declaration order, so the
//! same state always gives the same bytes (and small diffs in review).

use crate::error::StateError;
use crate::lock_info::random_id;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The format this mesh writes; it refuses files with a larger one.
/// 2: `programs`, the binaries the applies ran (a plan refuses others).
/// 3: `clusters`, each cluster's identity (a context that now reaches
/// another cluster is refused).
pub const FORMAT_VERSION: u32 = 3;

/// The largest serial a state may have: the largest integer every JSON
/// reader keeps exactly (2^53 − 1), so no tool misreads it.
pub const MAX_SERIAL: u64 = (1 << 53) - 1;

/// A pushed state must leave at least this many writes before
/// [`MAX_SERIAL`]: a serial nearer the limit was made by hand, and would
/// stop every apply soon after.
pub const SERIAL_HEADROOM: u64 = 1 << 32;

/// What to do about a state whose serial reached [`MAX_SERIAL`].
pub const SERIAL_RECOVERY: &str = "pull it with `mesh state pull > state.json`, then push it \
     back with `mesh state push --force state.json`, which renumbers it";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format_version: u32,
    /// A random ID made with the state: a saved plan made against another
    /// state (another lineage) is refused.
    pub lineage: String,
    /// Incremented on every write.
    pub serial: u64,
    pub mesh_id: String,
    /// Keyed by step ID (`cluster2/attach`), so the file is ordered.
    pub steps: BTreeMap<String, StepRecord>,
    /// The programs the last apply ran, by their role (`istioctl`, a kept
    /// revision's `istioctl#<revision>`): a plan refuses to run another
    /// one (a pull request's change) unless allowed. Absent in states
    /// written before it existed, and for the sandbox, whose simulator
    /// stands in for every program.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub programs: BTreeMap<String, Program>,
    /// Each cluster's identity, by the mesh file's cluster name, recorded
    /// when an apply first reaches it. Absent in states written before it
    /// existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, ClusterRecord>,
}

/// Which cluster a name of the mesh file is, as mesh found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterRecord {
    /// The UID of its `kube-system` namespace.
    pub uid: String,
    /// The context that reached it.
    pub context: String,
}

/// A program mesh runs, as it was when it ran: where, and what (the
/// sha256 of the file's bytes, so the same path holding other bytes is
/// another program).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    pub path: String,
    pub sha256: String,
}

impl State {
    /// The serial of this state's next write, if it has one left.
    pub fn next_serial(&self) -> Option<u64> {
        self.serial.checked_add(1).filter(|s| *s <= MAX_SERIAL)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    pub kind: String,
    /// The cluster of the step ID.
    pub cluster: String,
    /// The kubeconfig context the step acted on: destroy needs it even after
    /// the cluster has left the mesh file.
    pub context: String,
    /// Step IDs, so that steps gone from the mesh file are still deleted in
    /// reverse dependency order.
    pub depends_on: Vec<String>,
    /// sha256 (hex) of `input`.
    pub input_fingerprint: String,
    /// The rendered input as applied; sensitive values appear only as
    /// `(sensitive, sha256:…)`.
    pub input: String,
    pub outputs: BTreeMap<String, Value>,
    pub status: Status,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Applied,
    /// Began applying and failed or was interrupted: the next apply runs it
    /// again, destroy cleans it up.
    Tainted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Applied => "applied",
            Status::Tainted => "tainted",
        }
    }
}

impl State {
    /// A new, empty state with a fresh lineage.
    pub fn new(mesh_id: &str) -> State {
        State {
            format_version: FORMAT_VERSION,
            lineage: random_id(),
            serial: 0,
            mesh_id: mesh_id.to_string(),
            steps: BTreeMap::new(),
            programs: BTreeMap::new(),
            clusters: BTreeMap::new(),
        }
    }

    /// Refuses a state that belongs to another mesh.
    pub fn check_mesh_id(&self, expected: &str) -> Result<(), StateError> {
        if self.mesh_id == expected {
            Ok(())
        } else {
            Err(StateError::OtherMesh {
                found: self.mesh_id.clone(),
                expected: expected.to_string(),
            })
        }
    }

    /// Records (or replaces) the step `id`; returns the previous record.
    pub fn record(&mut self, id: impl Into<String>, record: StepRecord) -> Option<StepRecord> {
        self.steps.insert(id.into(), record)
    }

    /// Forgets the step `id` (after its destroy); returns its record.
    pub fn remove(&mut self, id: &str) -> Option<StepRecord> {
        self.steps.remove(id)
    }

    pub fn get(&self, id: &str) -> Option<&StepRecord> {
        self.steps.get(id)
    }

    /// The steps by ID, in ID order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &StepRecord)> {
        self.steps.iter().map(|(id, r)| (id.as_str(), r))
    }

    /// The steps recorded as `tainted`: the next apply runs them again.
    pub fn tainted(&self) -> impl Iterator<Item = &str> {
        self.iter()
            .filter(|(_, r)| r.status == Status::Tainted)
            .map(|(id, _)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(status: Status) -> StepRecord {
        StepRecord {
            kind: "attach".into(),
            cluster: "cluster2".into(),
            context: "kind-cluster2".into(),
            depends_on: vec!["cluster2/install-remote".into()],
            input_fingerprint: "00".repeat(32),
            input: "kind: Secret\n".into(),
            outputs: BTreeMap::from([("kubeconfig_sha256".into(), Value::from("ab"))]),
            status,
            updated_at: "2026-01-02T03:04:05Z".into(),
        }
    }

    #[test]
    fn new_state_has_a_fresh_lineage_and_serial_zero() {
        let (a, b) = (State::new("mesh1"), State::new("mesh1"));
        assert_eq!(a.serial, 0);
        assert_eq!(a.format_version, FORMAT_VERSION);
        assert_eq!(a.lineage.len(), 32);
        assert!(a.lineage.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.lineage, b.lineage);
    }

    #[test]
    fn record_remove_and_iterate() {
        let mut st = State::new("mesh1");
        assert!(st.record("cluster2/attach", rec(Status::Applied)).is_none());
        st.record("cluster1/install-control-plane", rec(Status::Tainted));
        let ids: Vec<&str> = st.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["cluster1/install-control-plane", "cluster2/attach"]);
        assert_eq!(
            st.tainted().collect::<Vec<_>>(),
            ["cluster1/install-control-plane"]
        );
        assert!(st.remove("cluster2/attach").is_some());
        assert!(st.get("cluster2/attach").is_none());
    }

    /// The exact bytes are the contract: key order, status spelling.
    #[test]
    fn json_shape() {
        let mut st = State::new("mesh1");
        st.lineage = "l".into();
        st.record("cluster2/attach", rec(Status::Tainted));
        let json = serde_json::to_string_pretty(&st).unwrap();
        let expected = r#"{
  "format_version": 3,
  "lineage": "l",
  "serial": 0,
  "mesh_id": "mesh1",
  "steps": {
    "cluster2/attach": {
      "kind": "attach",
      "cluster": "cluster2",
      "context": "kind-cluster2",
      "depends_on": [
        "cluster2/install-remote"
      ],
      "input_fingerprint": "0000000000000000000000000000000000000000000000000000000000000000",
      "input": "kind: Secret\n",
      "outputs": {
        "kubeconfig_sha256": "ab"
      },
      "status": "tainted",
      "updated_at": "2026-01-02T03:04:05Z"
    }
  }
}"#;
        assert_eq!(json, expected);
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), st);
    }

    #[test]
    fn other_mesh_is_refused() {
        let st = State::new("mesh1");
        assert!(st.check_mesh_id("mesh1").is_ok());
        let e = st.check_mesh_id("mesh2").unwrap_err().to_string();
        assert!(
            e.contains("`mesh1`") && e.contains("`mesh2`") && e.contains("--state"),
            "{e}"
        );
    }
}
