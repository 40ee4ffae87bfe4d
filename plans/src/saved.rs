//! Saved plans (`mesh plan --out FILE`): the plan plus what it was made
//! against, so `mesh apply FILE` can refuse a plan that went stale. A saved
//! plan is an artifact passed between CI jobs, so `mesh apply FILE` never
//! executes it as written: it recomputes the plan from the mesh file and
//! state the file names and refuses unless both agree
//! ([`Plan::first_difference`]).

use crate::model::Plan;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Marks a file as a saved plan, and its format.
const MAGIC: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub plan: Plan,
    /// A `mesh plan --destroy` plan.
    pub destroy: bool,
    /// The state's lineage, None when there was no state yet.
    pub lineage: Option<String>,
    /// The state's serial (0 without a state).
    pub serial: u64,
    /// sha256 of the mesh file's bytes.
    pub mesh_file_sha256: String,
    /// The mesh version that made it.
    pub mesh_version: String,
    /// Whether the plan read the clusters (not `--no-refresh`): `mesh apply
    /// FILE` recomputes the plan the same way and compares.
    #[serde(default = "yes")]
    pub refreshed: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    mesh_saved_plan: u32,
    #[serde(flatten)]
    saved: SavedPlan,
}

#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("cannot read the plan file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the plan file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a saved plan made by `mesh plan --out` ({detail})")]
    NotAPlan { path: PathBuf, detail: String },
    #[error("stale plan: {reason}. Make a new one with `mesh plan --out FILE`")]
    Stale { reason: String },
    #[error(
        "{path} does not match the plan mesh computes from the mesh file and state it names: \
         {difference}. The file was edited, or the clusters changed since it was made: \
         nothing was applied. Make a new plan with `mesh plan --out FILE`"
    )]
    Tampered { path: PathBuf, difference: String },
}

impl SavedPlan {
    /// Writes the plan atomically (temporary file, rename), mode 0600.
    pub fn write(&self, path: &Path) -> Result<(), SavedPlanError> {
        let err = |source| SavedPlanError::Write {
            path: path.to_path_buf(),
            source,
        };
        let file = File {
            mesh_saved_plan: MAGIC,
            saved: self.clone(),
        };
        let json = serde_json::to_string_pretty(&file).expect("a plan serialises") + "\n";
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&tmp)
            .and_then(|mut f| f.write_all(json.as_bytes()).and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        Ok(())
    }

    pub fn read(path: &Path) -> Result<SavedPlan, SavedPlanError> {
        let bytes = read_bounded(path).map_err(|source| SavedPlanError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let not_a_plan = |detail: String| SavedPlanError::NotAPlan {
            path: path.to_path_buf(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| not_a_plan(format!("not JSON: {e}")))?;
        match value
            .get("mesh_saved_plan")
            .and_then(serde_json::Value::as_u64)
        {
            Some(v) if v == u64::from(MAGIC) => {}
            Some(v) => {
                return Err(not_a_plan(format!(
                    "saved-plan format {v}, this mesh reads {MAGIC}"
                )));
            }
            None => return Err(not_a_plan("no `mesh_saved_plan` marker".into())),
        }
        let file: File = serde_json::from_value(value).map_err(|e| not_a_plan(e.to_string()))?;
        if file.saved.plan.format_version != crate::model::FORMAT_VERSION {
            return Err(not_a_plan(format!(
                "its plan has format_version {:?}, this mesh reads {:?}: make a new plan with this mesh",
                file.saved.plan.format_version,
                crate::model::FORMAT_VERSION
            )));
        }
        Ok(file.saved)
    }

    /// Refuses a saved plan whose changes are not those of `recomputed`,
    /// the plan made now from the same mesh file and state.
    pub fn check_matches(&self, path: &Path, recomputed: &Plan) -> Result<(), SavedPlanError> {
        match self.plan.first_difference(recomputed) {
            None => Ok(()),
            Some(difference) => Err(SavedPlanError::Tampered {
                path: path.to_path_buf(),
                difference,
            }),
        }
    }

    /// Refuses a plan made against another state or mesh file.
    pub fn check_fresh(
        &self,
        lineage: Option<&str>,
        serial: u64,
        mesh_file_sha256: &str,
    ) -> Result<(), SavedPlanError> {
        let stale = |reason: String| Err(SavedPlanError::Stale { reason });
        if self.mesh_file_sha256 != mesh_file_sha256 {
            return stale("the mesh file changed since this plan was made".into());
        }
        match (self.lineage.as_deref(), lineage) {
            (Some(a), Some(b)) if a != b => {
                return stale(format!(
                    "it was made for another state (lineage {a}, this state is {b})"
                ));
            }
            (None, Some(_)) if serial > 0 => {
                return stale(
                    "it was made before any state existed, and a state has been written since"
                        .into(),
                );
            }
            (Some(a), None) => {
                return stale(format!(
                    "it was made against state lineage {a}, and there is no state now"
                ));
            }
            _ => {}
        }
        if self.serial != serial {
            return stale(format!(
                "the state changed since this plan was made (serial {} → {serial})",
                self.serial
            ));
        }
        Ok(())
    }
}

/// The largest saved plan read: far above any plan (a 1,010-cluster fleet's
/// is a few MiB), far below what would exhaust memory.
const PLAN_FILE_LIMIT: u64 = 256 << 20;

/// A regular file's bytes, up to [`PLAN_FILE_LIMIT`]: a FIFO or a device
/// named as the plan is refused at once (opened without blocking), and
/// never read without end.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let not_regular = || std::io::Error::other("it is not a regular file");
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    let mut bytes = Vec::new();
    file.take(PLAN_FILE_LIMIT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > PLAN_FILE_LIMIT {
        return Err(std::io::Error::other(format!(
            "it is larger than {} MiB, more than a saved plan may be",
            PLAN_FILE_LIMIT >> 20
        )));
    }
    Ok(bytes)
}
