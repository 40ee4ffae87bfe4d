//! Pipelines you can trust: a plan never runs a program the change under
//! review introduced. mesh runs for real here (not `--sandbox`), against
//! the simulator's clusters, with the simulated istioctl behind a path.

use crate::preflight::{mesh_in, simulated_istioctl};
use crate::support::{World, succeeded as ok, text};
use serde_json::Value;

const SEED: &str = include_str!("../../examples/primary-remote.toml");
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];

/// A script that leaves `mark` when run, then behaves as istioctl.
fn planted(dir: &std::path::Path, istioctl: &str, mark: &std::path::Path) -> String {
    let path = dir.join("evil.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ntouch '{}'\nexec '{istioctl}' \"$@\"\n",
            mark.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// The state of a run outside the sandbox: beside the mesh file.
fn state(w: &World) -> Value {
    serde_json::from_str(&std::fs::read_to_string(w.path("mesh.state.json")).unwrap()).unwrap()
}

#[test]
fn a_plan_never_runs_an_istioctl_the_change_under_review_introduced() {
    let w = World::new(SEED, CONTEXTS);
    let dir = w.dir.path();
    let istioctl = simulated_istioctl(dir);
    let kubeconfig = w.set().kubeconfig_path().display().to_string();
    // A pinned version: every plan asks istioctl its version (preflight),
    // so a planted istioctl would run at plan time.
    let pinned = SEED.replace("id = \"mesh1\"", "id = \"mesh1\"\nistio_version = \"1.28\"");
    let with = |path: &str| format!("{pinned}\n[istioctl]\npath = \"{path}\"\n");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut a = vec!["--kubeconfig", kubeconfig.as_str()];
        a.extend_from_slice(args);
        mesh_in(dir, &a, env)
    };
    w.write_mesh(&with(&istioctl));
    ok(&run(&["apply", "--auto-approve"], &[]));
    let recorded = &state(&w)["programs"]["istioctl"];
    assert_eq!(recorded["path"], istioctl.as_str(), "{recorded}");
    assert_eq!(
        recorded["sha256"].as_str().map(str::len),
        Some(64),
        "{recorded}"
    );

    // The pull request points `[istioctl] path` at a script of its own.
    let mark = dir.join("ran");
    let evil = planted(dir, &istioctl, &mark);
    w.write_mesh(&with(&evil));
    for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let o = run(args, &[]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(
            t.contains("this plan would run programs no apply has run before")
                && t.contains(&format!("istioctl is `{evil}`"))
                && t.contains(&format!("the last apply ran `{istioctl}`"))
                && t.contains("--allow new-binary"),
            "{args:?}: {t}"
        );
        assert!(!mark.exists(), "{args:?} ran the planted script: {t}");
    }
    // The same path with other bytes is another program.
    std::fs::write(
        &istioctl,
        std::fs::read_to_string(&istioctl).unwrap() + "# changed\n",
    )
    .unwrap();
    w.write_mesh(&with(&istioctl));
    let o = run(&["plan"], &[]);
    assert!(
        text(&o).contains("is not the program the last apply ran"),
        "{}",
        text(&o)
    );
    std::fs::write(
        &istioctl,
        std::fs::read_to_string(&istioctl)
            .unwrap()
            .replace("# changed\n", ""),
    )
    .unwrap();

    // The pipeline's own istioctl overrides the mesh file's.
    w.write_mesh(&with(&evil));
    let o = run(
        &["plan", "--detailed-exitcode"],
        &[("MESH_ISTIOCTL", &istioctl)],
    );
    assert_ne!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        !mark.exists(),
        "MESH_ISTIOCTL did not override the mesh file"
    );

    // Allowed: the plan records the override, and a saved plan applies
    // with it; the state then records the new program.
    let saved = dir.join("plan.bin");
    let o = run(
        &[
            "plan",
            "--allow",
            "new-binary",
            "--out",
            saved.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    );
    let t = text(&o);
    assert_ne!(o.status.code(), Some(1), "{t}");
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {t}"));
    assert_eq!(
        plan["policy"]["allowed"],
        serde_json::json!(["new-binary"]),
        "{t}"
    );
    assert!(
        plan["policy"]["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["rule"] == "new-binary" && v["allowed"] == true),
        "{t}"
    );
    // Applied with the override: the state records the new program, and
    // the next plan keeps to it.
    ok(&run(
        &["apply", "--auto-approve", "--allow", "new-binary"],
        &[],
    ));
    assert_eq!(state(&w)["programs"]["istioctl"]["path"], evil.as_str());
    assert!(mark.exists(), "the allowed program did not run");
    let o = run(&["plan", "--detailed-exitcode"], &[]);
    assert_ne!(o.status.code(), Some(1), "{}", text(&o));
}
