//! The real-cluster harness: N real Kubernetes control planes on loopback,
//! each an etcd, a kube-apiserver, a kube-controller-manager (with the
//! service-account token controller), a kube-scheduler and kwok with one
//! fake node, built from the pinned Go modules by `tests/realk8s/build.sh`.
//!
//! Why this shape:
//! - Every test runs inside its own network namespace (`unshare --net`,
//!   only loopback up): the control planes, istioctl and pilot-discovery
//!   may try addresses that exist only in a real cluster (Service IPs,
//!   webhooks), and in the namespace those fail at once instead of leaving
//!   the machine.
//! - Each process is started with PR_SET_PDEATHSIG and in its own process
//!   group, and killed on drop, so a failing or killed test leaves no
//!   orphans.
//! - kwok makes Deployments Ready (fake pods), so `istioctl install`'s
//!   readiness wait passes; a kwok Stage gives `type: LoadBalancer`
//!   Services an `ingress[0].ip`, as a cloud would, from 192.0.2.0/24.
//!
//! What kwok does not model: no container runs, so there is no data plane,
//! no webhook server and no real istiod (pilot-discovery is run beside the
//! clusters as a plain process where a test needs it).
//!
//! A module of the `real` test binary (tests/real/main.rs, once for all of
//! its modules) and of benches/real_apply.rs, each with `#[path]`; the
//! benchmark uses only part of it.

#![allow(dead_code)]

use base64::Engine as _;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where build.sh put the tools (it builds what is missing).
pub fn tools_dir() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/realk8s/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--print")
        .output()
        .expect("running tests/realk8s/build.sh --print");
    assert!(out.status.success(), "build.sh --print failed");
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let missing: Vec<&str> = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "kwok",
        "istioctl",
        "pilot-discovery",
        "istio-old/istioctl",
        "istio-old/pilot-discovery",
        "kwok-stages.yaml",
    ]
    .into_iter()
    .filter(|t| !dir.join(t).exists())
    .collect();
    assert!(
        missing.is_empty(),
        "the real-cluster tier needs {missing:?} in {}: run `bash tests/realk8s/build.sh` \
         (bash .ci/run does); the real tier is never skipped",
        dir.display()
    );
    dir
}

// ---- the private network namespace ----

const INNER: &str = "MESH_REAL_INNER";

/// Runs the calling test, the test function `name`, again inside a new
/// network namespace and asserts it passed. Returns false in the outer
/// process (the caller returns), true inside (the caller runs the test).
pub fn in_private_network(name: &str) -> bool {
    if inside() {
        return true;
    }
    // libtest knows a test by its path in the test binary, module included
    // (`real_clusters::seed_procedure_on_real_clusters` in the `real`
    // binary), and names the test's thread after it. `--exact` with the
    // bare function name would select no test, and pass.
    let test = std::thread::current()
        .name()
        .filter(|t| *t == name || t.ends_with(&format!("::{name}")))
        .map(String::from)
        .unwrap_or_else(|| {
            panic!(
                "in_private_network({name:?}) called from the test {:?}: pass it the calling \
                 test function's name",
                std::thread::current().name()
            )
        });
    // One real test at a time: each starts several control planes, and the
    // machine has two cores. The lock is this module's, and the `real`
    // binary declares the module once (tests/real/main.rs), so it holds
    // for every test of the binary, real_clusters' and differential's.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .status()
        .expect(
            "running `unshare --net` (util-linux): the real tier runs in its own network namespace",
        );
    assert!(
        status.success(),
        "{test} failed inside its network namespace (output above)"
    );
    false
}

/// Inside the private namespace (loopback brought up on the first call)?
fn inside() -> bool {
    if std::env::var_os(INNER).is_none() {
        return false;
    }
    static UP: std::sync::Once = std::sync::Once::new();
    UP.call_once(|| {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("running `ip link set lo up` (iproute2)");
        assert!(
            up.success(),
            "could not bring up loopback in the private network namespace"
        );
        // kwok's fake nodes' address: the API servers reach kwok's kubelet
        // server there (port-forward), each cluster on its own port.
        let node = Command::new("ip")
            .args(["addr", "add", "10.240.0.1/32", "dev", "lo"])
            .status()
            .expect("running `ip addr add` (iproute2)");
        assert!(
            node.success(),
            "could not add the fake nodes' address to loopback"
        );
    });
    true
}

/// For a program that is not a test (a benchmark): runs this very program
/// again, with the same arguments, in a private network namespace, and
/// exits with its status. Returns only inside the namespace.
pub fn run_in_private_network() {
    if inside() {
        return;
    }
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env(INNER, "1")
        .status()
        .expect("running `unshare --net` (util-linux)");
    std::process::exit(status.code().unwrap_or(1));
}

// ---- processes ----

/// A running component: killed (its whole process group) on drop.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        Proc {
            name: name.into(),
            log,
            child,
        }
    }

    /// As [`Proc::start`], its output also appended to `cri` as a
    /// container's log in the CRI format (each line stamped when it
    /// arrived), which kwok serves as a pod's log.
    pub fn start_with_cri_log(
        name: &str,
        program: &Path,
        args: &[String],
        log: PathBuf,
        cri: &Path,
        env: &[(&str, &str)],
    ) -> Proc {
        use std::io::BufRead as _;
        let plain = std::fs::File::create(&log).unwrap();
        let cri = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(cri)
            .unwrap();
        let files = std::sync::Arc::new(std::sync::Mutex::new((plain, cri)));
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        let pipes: Vec<(Box<dyn std::io::Read + Send>, &str)> = vec![
            (Box::new(child.stdout.take().unwrap()), "stdout"),
            (Box::new(child.stderr.take().unwrap()), "stderr"),
        ];
        for (pipe, stream) in pipes {
            let files = files.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let at = k8s_openapi::jiff::Timestamp::now();
                    let mut f = files.lock().unwrap();
                    let _ = writeln!(f.0, "{line}");
                    let _ = writeln!(f.1, "{at} {stream} F {line}");
                }
            });
        }
        Proc {
            name: name.into(),
            log,
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its log, for a failure message.
    pub fn tail(&self, n: usize) -> String {
        tail_of(&self.log, n)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: signals to the process group this Proc started.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

pub fn tail_of(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A plain HTTP GET (no client crate): the body of a 200 answer.
pub fn http_get(host: &str, port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((host, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (head, rest) = body.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")).then(|| rest.to_string())
}

/// `n` distinct free ports (all bound at once, so none repeats), none of
/// them in `avoid`.
fn free_ports(n: usize, avoid: &[u16]) -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < n {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        if !avoid.contains(&l.local_addr().unwrap().port()) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand_byte())).collect()
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    b[0]
}

// ---- clusters ----

/// One real control plane.
pub struct RealCluster {
    pub name: String,
    /// The context name in the shared kubeconfig.
    pub context: String,
    pub dir: PathBuf,
    pub port: u16,
    pub ca_pem: String,
    pub token: String,
    /// A user with no RBAC bindings at all (`nobody`): to see mesh's
    /// permission errors.
    pub nobody_token: String,
    /// The load-balancer address kwok gives every LoadBalancer Service here.
    pub lb_ip: String,
    /// Where a port-forward to port 15014 of an istiod pod arrives (kwok's
    /// ClusterPortForward): a local pilot-discovery listens here.
    pub istiod_port: u16,
    /// The log kwok serves as the `discovery` container's of every pod in
    /// istio-system (kwok's ClusterLogs, CRI format): a local
    /// pilot-discovery's output lands here (`istiod_behind_its_pod`), so
    /// `kubectl logs` of an istiod pod reads the real istiod's log.
    pub istiod_log: PathBuf,
    /// Its own kubeconfig (only this cluster, as the current context).
    pub kubeconfig: PathBuf,
    procs: Vec<Proc>,
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        // Stop them all at once (each Proc's drop then only reaps), newest
        // first so nothing restarts what was just stopped.
        for p in self.procs.iter().rev() {
            // SAFETY: a signal to a process group this harness started.
            unsafe {
                libc::kill(-(p.pid() as i32), libc::SIGTERM);
            }
        }
        while let Some(p) = self.procs.pop() {
            drop(p);
        }
    }
}

impl RealCluster {
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Every component still running? Names the first that is not, with its log.
    pub fn check_alive(&mut self) {
        for p in &mut self.procs {
            assert!(
                p.alive(),
                "{} of {} exited:\n{}",
                p.name,
                self.name,
                p.tail(30)
            );
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Proc::pid).collect()
    }
}

/// N clusters and one kubeconfig with a context each (`real-<name>`).
pub struct RealClusters {
    pub tools: PathBuf,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub clusters: Vec<RealCluster>,
}

const STARTUP: Duration = Duration::from_secs(90);

impl RealClusters {
    pub fn start(dir: &Path, names: &[&str]) -> RealClusters {
        let tools = tools_dir();
        let mut clusters = Vec::new();
        for (i, name) in names.iter().enumerate() {
            clusters.push(start_one(&tools, dir, name, i));
        }
        let kubeconfig = dir.join("kubeconfig");
        let set = RealClusters {
            tools,
            dir: dir.to_path_buf(),
            kubeconfig,
            clusters,
        };
        set.write_kubeconfig();
        set
    }

    /// Adds one more cluster (a remote joining later).
    pub fn add(&mut self, name: &str) {
        let i = self.clusters.len();
        let c = start_one(&self.tools, &self.dir, name, i);
        self.clusters.push(c);
        self.write_kubeconfig();
    }

    pub fn cluster(&self, name: &str) -> &RealCluster {
        self.clusters.iter().find(|c| c.name == name).unwrap()
    }

    fn write_kubeconfig(&self) {
        let entries: Vec<&RealCluster> = self.clusters.iter().collect();
        std::fs::write(&self.kubeconfig, kubeconfig_yaml(&entries, None)).unwrap();
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        self.tools.join(name)
    }

    /// `kubectl --context real-<cluster> ARGS…` with the shared kubeconfig.
    pub fn kubectl(&self, cluster: &str, args: &[&str]) -> Output {
        Command::new(self.tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--context", &format!("real-{cluster}")])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, cluster: &str, args: &[&str]) -> String {
        let o = self.kubectl(cluster, args);
        assert!(
            o.status.success(),
            "kubectl {args:?} on {cluster} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Whether `kubectl get KIND NAME -n NS` finds it.
    pub fn exists(&self, cluster: &str, kind: &str, ns: Option<&str>, name: &str) -> bool {
        let mut args = vec!["get", kind, name, "-o", "name"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        self.kubectl(cluster, &args).status.success()
    }

    pub fn check_alive(&mut self) {
        for c in &mut self.clusters {
            c.check_alive();
        }
    }

    /// A real istiod behind the istiod pods of `cluster`: kwok's pods run
    /// nothing, but kwok forwards a port-forward to port 15014 of any pod
    /// in istio-system to `istiod_port` on loopback, where this starts a
    /// real pilot-discovery reading the cluster with its kubeconfig. A
    /// port-forward then reaches the real istiod exactly as
    /// `istioctl remote-clusters` and `mesh check` reach istiod in a cloud
    /// (from localhost, as the kubelet connects). Returns once it answers.
    pub fn istiod_behind_its_pod(&self, cluster: &str, revision: Option<&str>) -> Proc {
        let rev = revision.unwrap_or("default");
        let deadline = Instant::now() + STARTUP;
        let c = self.cluster(cluster);
        let work = self.dir.join(format!("istiod-{cluster}-{rev}"));
        std::fs::create_dir_all(&work).unwrap();
        // With a plugged CA (Secret cacerts), istiod signs with it and
        // publishes its root (ConfigMap istio-ca-root-cert), as in a pod
        // that mounts cacerts at /etc/cacerts.
        let ca_dir = work.join("cacerts");
        let with_ca = self.remount_cacerts(cluster, revision);
        let ca_dir = ca_dir.display().to_string();
        // What the installed Deployment gives istiod that matters here: a
        // root rotation's ISTIO_MULTIROOT_MESH, and ambient's settings.
        let env = self.kubectl(
            cluster,
            &[
                "-n",
                "istio-system",
                "get",
                "deployment",
                &if rev == "default" {
                    "istiod".to_string()
                } else {
                    format!("istiod-{rev}")
                },
                "-o",
                "jsonpath={.spec.template.spec.containers[0].env}",
            ],
        );
        let deployed: Vec<(String, String)> =
            serde_json::from_slice::<Vec<serde_json::Value>>(&env.stdout)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| {
                    Some((
                        e["name"].as_str()?.to_string(),
                        e["value"].as_str()?.to_string(),
                    ))
                })
                .filter(|(k, _)| {
                    [
                        "ISTIO_MULTIROOT_MESH",
                        "PILOT_ENABLE_AMBIENT",
                        "AMBIENT_ENABLE_MULTI_NETWORK",
                        "AMBIENT_ENABLE_BAGGAGE",
                        "CA_TRUSTED_NODE_ACCOUNTS",
                    ]
                    .contains(&k.as_str())
                })
                .collect();
        // Ambient's istiod deploys east-west gateways from its injector's
        // `waypoint` template: the injector stays on (it reads ConfigMap
        // istio-sidecar-injector and serves on --httpAddr; no webhook is
        // registered, the names below are empty).
        let ambient = deployed
            .iter()
            .any(|(k, v)| k == "PILOT_ENABLE_AMBIENT" && v == "true");
        let ports = free_ports(3, &[c.istiod_port]);
        let istiod = Proc::start_with_cri_log(
            "pilot-discovery",
            &self.tool("pilot-discovery"),
            &[
                "discovery".into(),
                "--kubeconfig".into(),
                c.kubeconfig.display().to_string(),
                "--clusterID".into(),
                cluster.into(),
                format!("--httpAddr=127.0.0.1:{}", ports[0]),
                format!("--grpcAddr=127.0.0.1:{}", ports[1]),
                format!("--monitoringAddr=127.0.0.1:{}", c.istiod_port),
                format!("--ctrlz_port={}", ports[2]),
                "--secureGRPCAddr=".into(),
                "--httpsAddr=".into(),
            ],
            work.join("pilot-discovery.log"),
            &c.istiod_log,
            &[
                ("POD_NAMESPACE", "istio-system"),
                ("POD_NAME", "mesh-test-istiod"),
                ("REVISION", rev),
                ("ENABLE_CA_SERVER", if with_ca { "true" } else { "false" }),
                ("ROOT_CA_DIR", ca_dir.as_str()),
                ("INJECTION_WEBHOOK_CONFIG_NAME", ""),
                ("VALIDATION_WEBHOOK_CONFIG_NAME", ""),
                ("INJECT_ENABLED", if ambient { "true" } else { "false" }),
                ("ENABLE_LEADER_ELECTION", "false"),
            ]
            .into_iter()
            .chain(deployed.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect::<Vec<_>>(),
        );
        while http_get("127.0.0.1", c.istiod_port, "/debug/clusterz").is_none() {
            assert!(
                Instant::now() < deadline,
                "pilot-discovery of {cluster} never answered on 127.0.0.1:{}. Its log:\n{}",
                c.istiod_port,
                istiod.tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        istiod
    }

    /// Secret `ns/name` of `cluster`, each data key decoded; None when it is
    /// not there (or has no data).
    pub fn secret_files(
        &self,
        cluster: &str,
        ns: &str,
        name: &str,
    ) -> Option<std::collections::BTreeMap<String, Vec<u8>>> {
        let out = self.kubectl(
            cluster,
            &["-n", ns, "get", "secret", name, "-o", "jsonpath={.data}"],
        );
        if !out.status.success() || out.stdout.is_empty() {
            return None;
        }
        let data: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap();
        Some(
            data.into_iter()
                .map(|(k, v)| {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str().unwrap_or_default())
                        .unwrap();
                    (k, bytes)
                })
                .collect(),
        )
    }

    /// Writes Secret `cacerts` of `cluster` where istiod (of `revision`)
    /// reads it, as the kubelet updates a mounted Secret: the files in a
    /// new folder, then the `..data` link swapped to it in one rename, so
    /// istiod's watch never sees half of a change. Whether there was one.
    pub fn remount_cacerts(&self, cluster: &str, revision: Option<&str>) -> bool {
        let rev = revision.unwrap_or("default");
        let dir = self
            .dir
            .join(format!("istiod-{cluster}-{rev}"))
            .join("cacerts");
        let Some(files) = self.secret_files(cluster, "istio-system", "cacerts") else {
            return false;
        };
        std::fs::create_dir_all(&dir).unwrap();
        let version = format!("..{}", random_hex(6));
        std::fs::create_dir_all(dir.join(&version)).unwrap();
        for (file, bytes) in &files {
            std::fs::write(dir.join(&version).join(file), bytes).unwrap();
        }
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        for file in files.keys() {
            let link = dir.join(file);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{file}"), &link).unwrap();
            }
        }
        true
    }

    pub fn pids(&self) -> Vec<u32> {
        self.clusters.iter().flat_map(RealCluster::pids).collect()
    }
}

/// A kubeconfig for `clusters`, with contexts `real-<name>`; `current` is
/// the current context if given.
pub fn kubeconfig_yaml(clusters: &[&RealCluster], current: Option<&str>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut s = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for c in clusters {
        s += &format!(
            "- name: {n}\n  cluster:\n    server: {srv}\n    certificate-authority-data: {ca}\n",
            n = c.name,
            srv = c.server(),
            ca = b64.encode(&c.ca_pem)
        );
    }
    s += "users:\n";
    for c in clusters {
        s += &format!(
            "- name: admin-{n}\n  user:\n    token: {t}\n",
            n = c.name,
            t = c.token
        );
    }
    s += "contexts:\n";
    for c in clusters {
        s += &format!(
            "- name: {ctx}\n  context:\n    cluster: {n}\n    user: admin-{n}\n",
            ctx = c.context,
            n = c.name
        );
    }
    if let Some(cur) = current {
        s += &format!("current-context: {cur}\n");
    }
    s
}

fn start_one(tools: &Path, root: &Path, name: &str, index: usize) -> RealCluster {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("pki")).unwrap();
    let etcd_client = free_port();
    let etcd_peer = free_port();
    let port = free_port();
    let token = random_hex(16);
    // TEST-NET-1 (RFC 5737): never routed, and unreachable anyway from the
    // test's network namespace. (Not loopback: EndpointSlices refuse it.)
    let lb_ip = format!("192.0.2.{}", index + 1);

    // Service-account keys: an EC key (the apiserver reads the public half
    // as `PUBLIC KEY`, the signer the PKCS#8 private key).
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("sa.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("sa.pub"), key.public_key_pem()).unwrap();
    let nobody_token = random_hex(16);
    std::fs::write(
        dir.join("tokens.csv"),
        format!("{token},admin,admin-uid,\"system:masters\"\n{nobody_token},nobody,nobody-uid\n"),
    )
    .unwrap();

    let s = |p: &Path| p.display().to_string();
    let mut procs = Vec::new();
    procs.push(Proc::start(
        "etcd",
        &tools.join("etcd"),
        &[
            "--name=m0".into(),
            format!("--data-dir={}", s(&dir.join("etcd"))),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=m0=http://127.0.0.1:{etcd_peer}"),
            "--initial-cluster-state=new".into(),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ],
        dir.join("etcd.log"),
        &[],
    ));
    procs.push(Proc::start(
        "kube-apiserver",
        &tools.join("kube-apiserver"),
        &[
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", s(&dir.join("pki"))),
            format!("--token-auth-file={}", s(&dir.join("tokens.csv"))),
            "--authorization-mode=Node,RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", s(&dir.join("sa.pub"))),
            format!(
                "--service-account-signing-key-file={}",
                s(&dir.join("sa.key"))
            ),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--endpoint-reconciler-type=none".into(),
            "--disable-admission-plugins=TaintNodesByCondition".into(),
        ],
        dir.join("kube-apiserver.log"),
        &[],
    ));

    // The apiserver writes its self-signed serving certificate: the leaf,
    // then the CA that signed it (whose key it throws away).
    let crt = dir.join("pki/apiserver.crt");
    let deadline = Instant::now() + STARTUP;
    let ca_pem = loop {
        if let Ok(text) = std::fs::read_to_string(&crt) {
            let blocks: Vec<&str> = text
                .split_inclusive("-----END CERTIFICATE-----\n")
                .filter(|b| b.contains("BEGIN CERTIFICATE"))
                .collect();
            if blocks.len() >= 2 {
                break blocks[1].to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "kube-apiserver of {name} wrote no certificate within {} s:\n{}",
            STARTUP.as_secs(),
            procs[1].tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::fs::write(dir.join("pki/ca.crt"), &ca_pem).unwrap();

    let mut cluster = RealCluster {
        name: name.into(),
        context: format!("real-{name}"),
        dir: dir.clone(),
        port,
        ca_pem,
        token,
        nobody_token,
        lb_ip: lb_ip.clone(),
        istiod_port: free_port(),
        istiod_log: dir.join("istiod.cri.log"),
        kubeconfig: dir.join("admin.kubeconfig"),
        procs,
    };
    std::fs::write(
        &cluster.kubeconfig,
        kubeconfig_yaml(&[&cluster], Some(&cluster.context)),
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        Command::new(tools.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    // Healthy: /readyz says ok.
    let deadline = Instant::now() + STARTUP;
    loop {
        let o = kubectl(&["get", "--raw=/readyz"]);
        if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok" {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "kube-apiserver of {name} was not ready within {} s. Its log:\n{}\netcd's log:\n{}",
                STARTUP.as_secs(),
                cluster.procs[1].tail(30),
                cluster.procs[0].tail(10)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let kc = s(&cluster.kubeconfig);
    cluster.procs.push(Proc::start(
        "kube-controller-manager",
        &tools.join("kube-controller-manager"),
        &[
            format!("--kubeconfig={kc}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            "--use-service-account-credentials=false".into(),
            format!("--service-account-private-key-file={}", s(&dir.join("sa.key"))),
            format!("--root-ca-file={}", s(&dir.join("pki/ca.crt"))),
            "--controllers=serviceaccount-token-controller,serviceaccount-controller,namespace-controller,\
             garbage-collector-controller,deployment-controller,replicaset-controller,\
             node-lifecycle-controller,endpointslice-controller,endpoints-controller,\
             root-ca-certificate-publisher-controller,clusterrole-aggregation-controller,\
             pod-garbage-collector-controller,service-cidr-controller,daemonset-controller"
                .into(),
        ],
        dir.join("kube-controller-manager.log"),
        &[],
    ));
    cluster.procs.push(Proc::start(
        "kube-scheduler",
        &tools.join("kube-scheduler"),
        &[
            format!("--kubeconfig={kc}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ],
        dir.join("kube-scheduler.log"),
        &[],
    ));

    // kwok: its default stages, and a LoadBalancer stage standing in for a
    // cloud's load balancer controller.
    let stages = std::fs::read_to_string(tools.join("kwok-stages.yaml")).unwrap();
    let lb_stage = format!(
        r#"---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: service-loadbalancer
spec:
  resourceRef:
    apiGroup: v1
    kind: Service
  selector:
    matchExpressions:
    - key: '.spec.type'
      operator: In
      values: ['LoadBalancer']
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.status.loadBalancer.ingress'
      operator: DoesNotExist
  steps:
  - patch:
      subresource: status
      root: status
      template: |
        loadBalancer:
          ingress:
          - ip: "{lb_ip}"
            ipMode: VIP
"#
    );
    // Port-forwards to istiod's debug port arrive at a local address, where
    // a real pilot-discovery may listen (`istiod_behind_its_pod`), as the
    // kubelet forwards into a pod in a cloud.
    let forward = format!(
        r#"---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata:
  name: istiod-debug
spec:
  selector:
    matchNamespaces: [istio-system]
  forwards:
  - ports: [15014]
    target:
      port: {}
      address: 127.0.0.1
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: istiod-logs
spec:
  selector:
    matchNamespaces: [istio-system]
  logs:
  - containers: [discovery]
    logsFile: {}
    follow: true
"#,
        cluster.istiod_port,
        cluster.istiod_log.display()
    );
    // No istiod yet: an empty log, as a pod's before it prints anything.
    std::fs::write(&cluster.istiod_log, "").unwrap();
    std::fs::write(
        dir.join("kwok-stages.yaml"),
        format!("{stages}\n{lb_stage}\n{forward}"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("kwokhome")).unwrap();
    let kwok_home = s(&dir.join("kwokhome"));
    cluster.procs.push(Proc::start(
        "kwok",
        &tools.join("kwok"),
        &[
            format!("--kubeconfig={kc}"),
            format!("--config={}", s(&dir.join("kwok-stages.yaml"))),
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
            "--node-lease-duration-seconds=40".into(),
            // Each cluster its own pod range: one network namespace holds
            // them all, and a pod's IP may be put on loopback to serve it.
            format!("--cidr=10.244.{index}.0/24"),
            "--node-ip=10.240.0.1".into(),
            // kwok's kubelet server (port-forward), on this cluster's port.
            format!("--node-port={}", free_port()),
        ],
        dir.join("kwok.log"),
        &[("KWOK_WORKDIR", kwok_home.as_str())],
    ));

    // One fake node.
    let node = format!(
        r#"apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
spec:
  podCIDR: 10.244.{index}.0/24
  podCIDRs: [10.244.{index}.0/24]
status:
  addresses: [{{type: InternalIP, address: 10.240.0.1}}]
  allocatable: {{cpu: "32", memory: 256Gi, pods: "110"}}
  capacity: {{cpu: "32", memory: 256Gi, pods: "110"}}
"#
    );
    let mut apply = Command::new(tools.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(node.as_bytes())
        .unwrap();
    let o = apply.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "creating the fake node of {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let deadline = Instant::now() + STARTUP;
    loop {
        let o = kubectl(&[
            "get",
            "node",
            "kwok-node-0",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        if String::from_utf8_lossy(&o.stdout).trim() == "True" {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "the fake node of {name} did not become Ready within {} s. kwok's log:\n{}",
                STARTUP.as_secs(),
                cluster.procs[4].tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The node's address, where the API server reaches kwok's kubelet
    // server (port-forward): kwok's stages leave none.
    let o = kubectl(&[
        "patch",
        "node",
        "kwok-node-0",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"10.240.0.1"}]}}"#,
    ]);
    assert!(
        o.status.success(),
        "giving the fake node of {name} its address: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    cluster
}
