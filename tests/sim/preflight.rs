//! Preflight and the errors around it: `plan` (and `apply`, before any
//! step) fails when a cluster the plan touches cannot be reached or used,
//! or istioctl is missing or not the pinned version, instead of printing
//! "7 to create" for an apply that fails part-way. And the messages: a
//! cluster named with its server and cause, paths printed as paths, causes
//! said once; the kubeconfig found as kubectl finds it; `init`, `ca init`
//! and a missing mesh file.
//!
//! Clusters are simulated (kubesim), served by the test (`support::World`)
//! or by mesh itself (`--sandbox`); a closed port is 127.0.0.1:1.

use crate::support::{World, succeeded, text};
use kubesim::Faults;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SEED: &str = include_str!("../../examples/primary-remote.toml");
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];

/// `mesh ARGS…` in `dir`, outside any sandbox, with `$KUBECONFIG` unset
/// unless `env` sets it.
pub(crate) fn mesh_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mesh"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "0")
        .env_remove("KUBECONFIG")
        .env_remove("MESH_FILE")
        .env_remove("MESH_STATE")
        .env_remove("MESH_SANDBOX")
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A kubeconfig with only `kind-cluster1`, whose server is a closed port.
const CLOSED_PORT_KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: abc
contexts:
- name: kind-cluster1
  context: {cluster: c1, user: u}
current-context: kind-cluster1
";

/// The steps a state file records (none when there is no state file).
fn recorded_steps(path: &Path) -> usize {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["steps"].as_object().map_or(0, |s| s.len())
        }
        Err(_) => 0,
    }
}

/// How many times the simulated istioctl installed something.
fn installs(w: &World) -> usize {
    w.istioctl_log()
        .iter()
        .filter(|run| run["argv"][0] == "install")
        .count()
}

/// The observed failure: on a fresh state, a closed port, a context the
/// kubeconfig lacks and a missing istioctl gave `plan` exit 0 and "7 to
/// create", then an apply that recorded tainted steps that never touched a
/// cluster. Now plan fails naming each, and apply runs nothing.
#[test]
fn a_closed_port_a_missing_context_and_a_missing_istioctl_fail_the_first_plan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), CLOSED_PORT_KUBECONFIG).unwrap();
    std::fs::write(
        dir.path().join("mesh.toml"),
        format!("{SEED}\n[istioctl]\npath = \"/nonexistent/istioctl\"\n"),
    )
    .unwrap();
    let o = mesh_in(
        dir.path(),
        &["--kubeconfig", "kubeconfig", "plan", "--detailed-exitcode"],
        &[],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        !text(&o).contains("to create"),
        "no plan is shown:\n{}",
        text(&o)
    );
    for want in [
        "preflight",
        // The unreachable cluster: name, context, server, cause.
        "cluster `cluster1` (context `kind-cluster1`, https://127.0.0.1:1)",
        "connection refused",
        // The missing context, in which kubeconfig, and what is there.
        "kubeconfig (kubeconfig) has no usable context `kind-cluster2` for cluster `cluster2`",
        "the contexts there are: kind-cluster1",
        // istioctl.
        "/nonexistent/istioctl",
        "--no-refresh",
    ] {
        assert!(err.contains(want), "lacks `{want}`:\n{err}");
    }
    assert!(!err.contains("ServiceError"), "{err}");

    let o = mesh_in(
        dir.path(),
        &["--kubeconfig", "kubeconfig", "apply", "--auto-approve"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("nothing was changed"), "{}", text(&o));
    assert_eq!(
        recorded_steps(&dir.path().join("mesh.state.json")),
        0,
        "no step was started, so none is recorded (tainted)"
    );
}

/// Paths are printed as paths (not `'"/root/.kube/config"'`), and a cause
/// the message already says is not repeated as "caused by".
#[test]
fn a_missing_kubeconfig_is_named_once_as_a_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.toml"), SEED).unwrap();
    let home = dir.path().join("home");
    let o = mesh_in(dir.path(), &["plan"], &[("HOME", home.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let config = home.join(".kube/config");
    assert!(
        err.contains(&format!("{} does not exist", config.display())),
        "{err}"
    );
    assert!(!err.contains("'\""), "a path in Debug quotes:\n{err}");

    // The Kubernetes state backend wraps the same error: said once.
    std::fs::write(
        dir.path().join("mesh.toml"),
        SEED.replacen(
            "[[cluster]]",
            "[state]\nbackend = \"kubernetes\"\n\n[[cluster]]",
            1,
        ),
    )
    .unwrap();
    let o = mesh_in(dir.path(), &["--kubeconfig", "missing.yaml", "plan"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(
        err.matches("missing.yaml does not exist").count(),
        1,
        "{err}"
    );
    assert!(!err.contains("'\""), "{err}");
}

/// `KUBECONFIG=/missing:/real` works as with kubectl: missing entries are
/// skipped; only when none exists is it an error, naming them.
#[test]
fn kubeconfig_entries_that_do_not_exist_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("kubeconfig");
    std::fs::write(&real, CLOSED_PORT_KUBECONFIG).unwrap();
    let list = format!("/nonexistent/a:{}", real.display());
    let o = mesh_in(dir.path(), &["init"], &[("KUBECONFIG", &list)]);
    succeeded(&o);
    let written = std::fs::read_to_string(dir.path().join("mesh.toml")).unwrap();
    assert!(written.contains("context = \"kind-cluster1\""), "{written}");

    let o = mesh_in(
        dir.path(),
        &["-f", "other.toml", "init"],
        &[("KUBECONFIG", "/nonexistent/a:/nonexistent/b")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .contains("$KUBECONFIG names /nonexistent/a, /nonexistent/b, and none of them exists"),
        "{}",
        stderr(&o)
    );
}

/// A permission the plan needs (kubesim denies it, as RBAC would) fails
/// the plan, naming it, the step that needs it, and how to check it.
#[test]
fn a_missing_permission_fails_the_plan() {
    let w = World::new(SEED, CONTEXTS);
    w.cluster("kind-cluster1").set_faults(Faults {
        denied: vec![("create".into(), "customresourcedefinitions".into())],
        ..Default::default()
    });
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    for want in [
        "cluster `cluster1` (context `kind-cluster1`): its credentials may not",
        "create customresourcedefinitions.apiextensions.k8s.io (cluster-wide)",
        "cluster1/install-control-plane",
        "kubectl --context kind-cluster1 auth can-i 'create' 'customresourcedefinitions.apiextensions.k8s.io'",
    ] {
        assert!(err.contains(want), "lacks `{want}`:\n{err}");
    }
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(installs(&w), 0, "no step ran");
    assert_eq!(recorded_steps(&w.state_path()), 0);

    w.cluster("kind-cluster1").set_faults(Faults::default());
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Destroying a link revokes its token in the cluster it read: a destroy
/// whose credentials there may not delete Secrets fails before any step,
/// naming that cluster and the link.
#[test]
fn a_destroy_that_could_not_revoke_a_links_token_fails_first() {
    let w = World::new(SEED, CONTEXTS);
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    let before = recorded_steps(&w.state_path());
    w.cluster("kind-cluster2").set_faults(Faults {
        denied: vec![("delete".into(), "secrets".into())],
        ..Default::default()
    });
    let o = w.mesh(&["destroy", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    // cluster2/attach's Secret is in cluster1; it is in cluster2's list
    // for the token it revokes there.
    for want in [
        "cluster `cluster2` (context `kind-cluster2`): its credentials may not",
        "delete secrets in istio-system (for cluster2/attach;",
    ] {
        assert!(err.contains(want), "lacks `{want}`:\n{err}");
    }
    assert_eq!(
        recorded_steps(&w.state_path()),
        before,
        "a step was destroyed"
    );
    w.cluster("kind-cluster2").set_faults(Faults::default());
    let o = w.mesh(&["destroy", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Each cluster is checked once per command (one `GET /version`), however
/// many steps touch it.
#[test]
fn each_cluster_is_checked_once() {
    let w = World::new(SEED, CONTEXTS);
    for c in CONTEXTS {
        w.cluster(c).clear_requests();
    }
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    for c in CONTEXTS {
        let requests = w.cluster(c).requests();
        let versions = requests.iter().filter(|r| r.path == "/version").count();
        assert_eq!(versions, 1, "{c}: {requests:?}");
        let reviews = requests
            .iter()
            .filter(|r| r.path.ends_with("/selfsubjectaccessreviews"))
            .count();
        assert!(reviews > 0, "{c}: permissions were checked");
    }
}

/// A pinned `istio_version` that istioctl does not have fails the plan,
/// not only the apply.
#[test]
fn a_pinned_istio_version_istioctl_does_not_have_fails_the_plan() {
    let pinned = SEED.replace("id = \"mesh1\"", "id = \"mesh1\"\nistio_version = \"1.29\"");
    let w = World::new(&pinned, CONTEXTS);
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("asks for Istio 1.29") && err.contains("1.28.0"),
        "{err}"
    );
    let o = w
        .command(&["plan", "--detailed-exitcode"])
        .env("KUBESIM_ISTIOCTL_VERSION", "1.29.1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// An istioctl for real (not `--sandbox`) runs: the simulated one, through
/// a script that starts mesh's hidden command.
pub(crate) fn simulated_istioctl(dir: &Path) -> String {
    let path = dir.join("istioctl");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec '{}' __sandbox-istioctl \"$@\"\n",
            env!("CARGO_BIN_EXE_mesh")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// A remote whose API server is a loopback address (a kind context) gets
/// a remote secret a primary's istiod cannot use: a warning by default
/// (not only with -v), an error with --strict, none with `api_server`.
#[test]
fn a_loopback_api_server_others_read_is_a_warning_or_with_strict_an_error() {
    let w = World::new(SEED, CONTEXTS);
    let istioctl = simulated_istioctl(w.dir.path());
    let with_istioctl = |mesh: &str| format!("{mesh}\n[istioctl]\npath = \"{istioctl}\"\n");
    w.write_mesh(&with_istioctl(SEED));
    let kubeconfig = w.set().kubeconfig_path();
    let args = |extra: &[&'static str]| {
        let mut a = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
        a.extend_from_slice(extra);
        a
    };
    let o = mesh_in(w.dir.path(), &args(&["plan", "--detailed-exitcode"]), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = stderr(&o);
    let server = w.cluster("kind-cluster2").server();
    for want in [
        "warning: cluster `cluster2` (context `kind-cluster2`)",
        &format!("the remote secret in cluster1 will point at {server}"),
        "loopback",
        "Set `api_server` for `cluster2`",
    ] {
        assert!(err.contains(want), "lacks `{want}`:\n{err}");
    }
    let o = mesh_in(
        w.dir.path(),
        &args(&["plan", "--strict", "--detailed-exitcode"]),
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("(an error with --strict)"),
        "{}",
        text(&o)
    );
    let o = mesh_in(
        w.dir.path(),
        &args(&["apply", "--strict", "--auto-approve"]),
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(recorded_steps(&w.path("mesh.state.json")), 0, "no step ran");

    let routed = SEED.replace(
        "primary = \"cluster1\"",
        "primary = \"cluster1\"\napi_server = \"https://172.18.0.3:6443\"",
    );
    w.write_mesh(&with_istioctl(&routed));
    let o = mesh_in(
        w.dir.path(),
        &args(&["plan", "--strict", "--detailed-exitcode"]),
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!stderr(&o).contains("warning"), "{}", text(&o));
}

/// `--sandbox` on a fresh folder with the state in a simulated cluster:
/// the sandbox is served before the state backend connects.
#[test]
fn the_kubernetes_state_backend_works_on_a_fresh_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mesh.toml"),
        SEED.replacen(
            "[[cluster]]",
            "[state]\nbackend = \"kubernetes\"\n\n[[cluster]]",
            1,
        ),
    )
    .unwrap();
    let sandbox = |args: &[&str]| {
        let mut a = vec!["--sandbox", "sb"];
        a.extend_from_slice(args);
        mesh_in(dir.path(), &a, &[])
    };
    succeeded(&sandbox(&["apply", "--auto-approve"]));
    let o = sandbox(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let listed = succeeded(&sandbox(&["state", "list"]));
    assert!(listed.contains("cluster2/attach"), "{listed}");
    assert!(
        !dir.path().join("mesh.state.json").exists()
            && !dir.path().join("sb/mesh.state.json").exists(),
        "the state is in the simulated cluster, not a file"
    );
}

/// `mesh -f sub/x.toml ca init` prints the `[trust]` lines as the mesh file
/// in sub/ must say them; pasted there, they validate.
#[test]
fn ca_init_prints_paths_relative_to_the_mesh_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/x.toml"), SEED).unwrap();
    let o = mesh_in(dir.path(), &["-f", "sub/x.toml", "ca", "init"], &[]);
    let out = succeeded(&o);
    let block: String = out
        .lines()
        .skip_while(|l| *l != "[trust]")
        .take(3)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        block, "[trust]\nroot_cert = \"certs/root-cert.pem\"\nroot_key = \"certs/root-key.pem\"\n",
        "{out}"
    );
    std::fs::write(dir.path().join("sub/x.toml"), format!("{SEED}\n{block}")).unwrap();
    succeeded(&mesh_in(dir.path(), &["-f", "sub/x.toml", "validate"], &[]));
}

/// `mesh init --context X` refuses a context the kubeconfig lacks, listing
/// those it has, and writes nothing.
#[test]
fn init_refuses_a_context_the_kubeconfig_lacks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kubeconfig"), CLOSED_PORT_KUBECONFIG).unwrap();
    let o = mesh_in(
        dir.path(),
        &[
            "--kubeconfig",
            "kubeconfig",
            "init",
            "--context",
            "kind-cluster1",
            "--context",
            "kind-clsuter2",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("has no context `kind-clsuter2`")
            && err.contains("the contexts there are: kind-cluster1"),
        "{err}"
    );
    assert!(!dir.path().join("mesh.toml").exists());
}

/// A mesh file can be written ahead of the clusters (`--offline`, or in the
/// sandbox, which makes a cluster for every context), with no kubeconfig
/// and no folder left behind; a typo without `--offline` names the closest
/// context and the way out.
#[test]
fn init_writes_a_file_for_clusters_to_come() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let home = home.to_str().unwrap();
    let o = mesh_in(
        dir.path(),
        &[
            "init",
            "--offline",
            "--context",
            "prod-east",
            "--context",
            "prod-west",
        ],
        &[("HOME", home)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let toml = std::fs::read_to_string(dir.path().join("mesh.toml")).unwrap();
    assert!(
        toml.contains("context = \"prod-east\"") && toml.contains("context = \"prod-west\""),
        "{toml}"
    );
    assert!(
        stderr(&o).contains("no kubeconfig was read (--offline)"),
        "{}",
        text(&o)
    );
    // The sandbox: the same, and no sandbox folder made by init.
    let o = mesh_in(
        dir.path(),
        &[
            "-f",
            "sb.toml",
            "--sandbox",
            "sb",
            "init",
            "--context",
            "a",
            "--context",
            "b",
        ],
        &[("HOME", home)],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.path().join("sb.toml").exists());
    assert!(
        !dir.path().join("sb").exists(),
        "init made the sandbox folder"
    );
    // A typo with a kubeconfig: the closest context and --offline named.
    std::fs::write(dir.path().join("kubeconfig"), CLOSED_PORT_KUBECONFIG).unwrap();
    let o = mesh_in(
        dir.path(),
        &[
            "-f",
            "typo.toml",
            "--kubeconfig",
            "kubeconfig",
            "init",
            "--context",
            "kind-clsuter1",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.contains("did you mean `kind-cluster1` for `kind-clsuter1`?")
            && err.contains("--offline"),
        "{err}"
    );
}

/// A missing mesh file says how to make one, with no `mesh.toml:0:0`.
#[test]
fn a_missing_mesh_file_says_mesh_init() {
    let dir = tempfile::tempdir().unwrap();
    let o = mesh_in(dir.path(), &["plan"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: no mesh file at mesh.toml: create one with `mesh init` (or pass -f)\n\n"
    );
}
