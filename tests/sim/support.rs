//! What the simulator-tier tests share: a World of simulated clusters
//! (kubesim, the project's Kubernetes API simulator) served by the test
//! itself, as `kubesim serve` would, so a test can look at and change every
//! object while the `mesh` binary runs against them with `--sandbox`; and
//! the golden-file comparison (tests/support/golden.rs, shared with the
//! pure tier).
//!
//! A module of the `sim` test binary: each test module says
//! `use crate::support::…`.

use kubesim::{ClusterSet, LbMode, Options};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub use crate::golden::golden;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The output of a run that must have succeeded.
pub fn succeeded(o: &Output) -> String {
    let t = text(o);
    assert!(o.status.success(), "mesh failed ({}):\n{t}", o.status);
    t
}

/// A folder with a mesh file and simulated clusters for `contexts`; the
/// sandbox (and so the state, `sandbox/mesh.state.json`) is `sandbox/`.
pub struct World {
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    set: Option<ClusterSet>,
}

impl World {
    pub fn new(mesh_toml: &str, contexts: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mesh.toml"), mesh_toml).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let set = rt
            .block_on(ClusterSet::open(
                &dir.path().join("sandbox"),
                contexts,
                Options {
                    lb_delay: Duration::from_millis(50),
                    lb_mode: LbMode::Ip,
                },
            ))
            .unwrap();
        World {
            dir,
            rt,
            set: Some(set),
        }
    }

    /// The test root of trust (tests/fixtures/trust) as `certs/`, key 0600.
    pub fn with_test_root(self) -> World {
        self.copy_root("trust", "certs");
        self
    }

    /// The test root `tests/fixtures/<fixture>` beside the mesh file as
    /// `<dir>/`, key 0600.
    pub fn copy_root(&self, fixture: &str, dir: &str) {
        std::fs::create_dir_all(self.path(dir)).unwrap();
        for f in ["root-cert.pem", "root-key.pem"] {
            let to = self.path(dir).join(f);
            std::fs::copy(repo().join("tests/fixtures").join(fixture).join(f), &to).unwrap();
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
    }

    /// Runs mesh with `args` and kills it (SIGKILL) as soon as `hit` says
    /// so, or lets it finish; whether it was killed. Fails a run that hangs.
    pub fn run_killed_when(&self, args: &[&str], hit: impl Fn() -> bool) -> bool {
        let mut child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let killed = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            if hit() {
                child.kill().unwrap();
                break true;
            }
            assert!(std::time::Instant::now() < deadline, "mesh {args:?} hangs");
            std::thread::yield_now();
        };
        child.wait().unwrap();
        killed
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn mesh_toml(&self) -> String {
        std::fs::read_to_string(self.path("mesh.toml")).unwrap()
    }

    pub fn write_mesh(&self, toml: &str) {
        std::fs::write(self.path("mesh.toml"), toml).unwrap();
    }

    /// Serves the cluster of `context` under the context `alias` too.
    pub fn alias(&mut self, alias: &str, context: &str) {
        self.set
            .as_mut()
            .unwrap()
            .add_alias(alias, context)
            .unwrap();
    }

    pub fn set(&self) -> &ClusterSet {
        self.set.as_ref().unwrap()
    }

    pub fn cluster(&self, context: &str) -> Arc<kubesim::Cluster> {
        self.set().cluster(context).unwrap()
    }

    /// A kube client for one simulated cluster.
    pub fn client(&self, context: &str) -> kube::Client {
        let path = self.set().kubeconfig_path();
        self.rt.block_on(async move {
            let kc = kube::config::Kubeconfig::read_from(path).unwrap();
            let opts = kube::config::KubeConfigOptions {
                context: Some(context.into()),
                ..Default::default()
            };
            kube::Client::try_from(
                kube::Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .unwrap(),
            )
            .unwrap()
        })
    }

    /// `mesh --sandbox sandbox ARGS…`, not yet run: the simulated istioctl
    /// is instant and logs to `istioctl.log`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mesh"));
        c.current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("KUBESIM_ISTIOCTL_LOG", self.path("istioctl.log"))
            .env("KUBESIM_ISTIOCTL_DELAY_MS", "0")
            .env_remove("KUBECONFIG")
            .env_remove("MESH_FILE")
            .env_remove("MESH_STATE")
            .env_remove("MESH_SANDBOX")
            .args(["--sandbox", "sandbox"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn mesh(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs mesh, which must succeed; its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.mesh(args);
        let t = text(&o);
        assert!(o.status.success(), "mesh {args:?} failed:\n{t}");
        t
    }

    /// `plan --detailed-exitcode` exits 0: the clusters match.
    pub fn assert_clean(&self) {
        let o = self.mesh(&["plan", "--detailed-exitcode"]);
        assert_eq!(o.status.code(), Some(0), "plan is not clean:\n{}", text(&o));
    }

    /// An object as the simulator stores it.
    pub fn get(
        &self,
        context: &str,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
    ) -> Option<Value> {
        self.cluster(context)
            .store()
            .get_raw(group, plural, ns, name)
            .cloned()
    }

    pub fn exists(&self, context: &str, group: &str, plural: &str, ns: &str, name: &str) -> bool {
        self.get(context, group, plural, ns, name).is_some()
    }

    /// Every run of the simulated istioctl: argv, stdin, exit code.
    pub fn istioctl_log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("istioctl.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The state file, as JSON.
    pub fn state_json(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.state_path()).unwrap()).unwrap()
    }

    pub fn state_path(&self) -> PathBuf {
        self.path("sandbox/mesh.state.json")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(set) = self.set.take() {
            self.rt.block_on(set.shutdown());
        }
    }
}
