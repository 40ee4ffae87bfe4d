//! The programs mesh runs (the mesh's `istioctl`, each kept revision's),
//! and the rule that keeps a review safe: a plan never runs a program the
//! change under review introduced. In a pipeline the mesh file comes from
//! the pull request, so `[istioctl] path = "./evil.sh"` would otherwise run
//! with the plan job's credentials before anyone reviewed it (preflight
//! asks istioctl its version).
//!
//! Each apply records the programs it ran in the state (path and the
//! sha256 of the file's bytes); a plan whose programs differ from the
//! recorded ones is refused before any of them runs, unless `--allow
//! new-binary` (recorded in the plan). With nothing recorded (a first
//! plan, or a state from before this rule), the pipeline's own
//! `MESH_ISTIOCTL` overrides the mesh file's path. The sandbox runs no
//! program: its simulator stands in for every one.

use engine::config::MeshFile;
use state::Program;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `--allow` names to run programs the state does not record.
pub const ALLOW: &str = "new-binary";

/// The pipeline's own istioctl: overrides `[istioctl] path`.
pub const ISTIOCTL_ENV: &str = "MESH_ISTIOCTL";

/// The istioctl the mesh runs: `MESH_ISTIOCTL`, else `[istioctl] path`,
/// else `istioctl` from PATH.
pub fn istioctl(mesh: &MeshFile) -> String {
    std::env::var(ISTIOCTL_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .or_else(|| mesh.istioctl.path.clone())
        .unwrap_or_else(|| "istioctl".into())
}

/// Every program the mesh file makes mesh run, by role, as each is now on
/// this machine. A program that cannot be found is left out: the
/// preflight says it is missing, and nothing missing can run. One found
/// but unreadable (mode 0111 still runs) is [`UNREADABLE`], never equal
/// to a recorded sha256.
pub fn current(mesh: &MeshFile) -> BTreeMap<String, Program> {
    let mut wanted = vec![("istioctl".to_string(), istioctl(mesh))];
    for k in &mesh.mesh.keep_revisions {
        wanted.push((format!("istioctl#{}", k.name), k.istioctl.clone()));
    }
    wanted
        .into_iter()
        .filter_map(|(role, path)| {
            let sha256 = fingerprint(&path)?;
            Some((role, Program { path, sha256 }))
        })
        .collect()
}

/// What [`current`] records for a program it cannot read.
const UNREADABLE: &str = "unreadable";

/// The sha256 of the file `program` names (a path, or a name looked up in
/// PATH as a child process would be); None when there is no such file.
fn fingerprint(program: &str) -> Option<String> {
    let file = resolve(program).filter(|f| f.exists())?;
    let sha256 = std::fs::File::open(file)
        .and_then(providers::rendered::sha256_hex_of)
        .unwrap_or_else(|_| UNREADABLE.into());
    Some(sha256)
}

fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| Path::new(p).is_file())
}

/// Why `current` may not run: one sentence per program that differs from
/// the state's record (another path, other bytes, a role the state has
/// not seen), unless the last apply ran that very program in another role
/// (a canary's kept istioctl, a rollback's). Empty when nothing is recorded: a first plan has no record
/// to keep to (pure).
pub fn changed(
    recorded: &BTreeMap<String, Program>,
    current: &BTreeMap<String, Program>,
) -> Vec<String> {
    if recorded.is_empty() {
        return Vec::new();
    }
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let shown = providers::rendered::shown;
    current
        .iter()
        .filter_map(|(role, now)| match recorded.get(role) {
            Some(was) if was == now => None,
            // A program the last apply ran in another role is not new: a
            // rollback makes the kept revision's istioctl the mesh's again.
            _ if recorded.values().any(|was| was == now) => None,
            Some(was) if was.path == now.path => Some(format!(
                "{role} `{}` is not the program the last apply ran (sha256:{}… now, sha256:{}… then)",
                shown(&now.path),
                short(&now.sha256),
                short(&was.sha256)
            )),
            Some(was) => Some(format!(
                "{role} is `{}` (sha256:{}…), the last apply ran `{}`",
                shown(&now.path),
                short(&now.sha256),
                shown(&was.path)
            )),
            None => Some(format!(
                "{role} `{}` (sha256:{}…) is new: no apply has run it",
                shown(&now.path),
                short(&now.sha256)
            )),
        })
        .collect()
}

/// The refusal of a plan whose programs changed, before any of them ran.
pub fn refusal(changes: &[String]) -> String {
    format!(
        "this plan would run programs no apply has run before, and runs none of them:\n{}\n\
         A mesh file under review must not choose what the plan job executes. If the change is \
         meant (an upgrade's new istioctl), check the program, then plan with `--allow {ALLOW}` \
         (the plan records it); in a pipeline, set {ISTIOCTL_ENV} to the istioctl the pipeline \
         installs",
        changes
            .iter()
            .map(|c| format!("  - {c}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str, sha: &str) -> Program {
        Program {
            path: path.into(),
            sha256: sha.into(),
        }
    }

    #[test]
    fn a_program_the_state_does_not_record_is_named_and_a_first_plan_is_free() {
        let was = BTreeMap::from([("istioctl".to_string(), p("/opt/1.28/istioctl", "aaaa"))]);
        let same = was.clone();
        assert!(changed(&was, &same).is_empty());
        assert!(
            changed(&BTreeMap::new(), &same).is_empty(),
            "nothing recorded"
        );
        let moved = BTreeMap::from([("istioctl".to_string(), p("./evil.sh", "bbbb"))]);
        assert_eq!(
            changed(&was, &moved),
            vec!["istioctl is `./evil.sh` (sha256:bbbb…), the last apply ran `/opt/1.28/istioctl`"]
        );
        let swapped = BTreeMap::from([("istioctl".to_string(), p("/opt/1.28/istioctl", "cccc"))]);
        assert!(changed(&was, &swapped)[0].contains("not the program the last apply ran"));
        let kept = BTreeMap::from([
            ("istioctl".to_string(), p("/opt/1.28/istioctl", "aaaa")),
            ("istioctl#default".to_string(), p("./x", "dddd")),
        ]);
        assert_eq!(changed(&was, &kept).len(), 1);
        // A canary: the old istioctl kept for its revision, a new one for the mesh.
        let canary = BTreeMap::from([
            ("istioctl".to_string(), p("/opt/1.29/istioctl", "eeee")),
            (
                "istioctl#default".to_string(),
                p("/opt/1.28/istioctl", "aaaa"),
            ),
        ]);
        assert_eq!(
            changed(&was, &canary).len(),
            1,
            "{:?}",
            changed(&was, &canary)
        );
        assert!(changed(&was, &kept)[0].starts_with("istioctl#default `./x`"));
        // Its rollback: both programs ran in the last apply, in other roles.
        let rolled_back = BTreeMap::from([
            ("istioctl".to_string(), p("/opt/1.28/istioctl", "aaaa")),
            ("istioctl#1-29".to_string(), p("/opt/1.29/istioctl", "eeee")),
        ]);
        assert!(changed(&canary, &rolled_back).is_empty());
    }
}
