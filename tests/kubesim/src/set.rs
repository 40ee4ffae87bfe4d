//! A set of simulated clusters kept in a folder: started (or restarted
//! with the same ports, certificates and objects) from it, written back to
//! it as they change, and locked so that one process serves them at a time.

use crate::cluster::{Cluster, LbMode, Saved};
use crate::kubeconfig;
use crate::store::Data;
use crate::tls::Certs;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the simulated clusters behave.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a LoadBalancer Service waits for its address.
    pub lb_delay: Duration,
    pub lb_mode: LbMode,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lb_delay: Duration::from_millis(200),
            lb_mode: LbMode::Ip,
        }
    }
}

/// Who serves a folder's clusters, as its lock file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Running {
    pub pid: u32,
    /// The contexts (cluster names) it serves.
    pub contexts: Vec<String>,
}

/// Simulated clusters, served on 127.0.0.1 until [`ClusterSet::shutdown`].
pub struct ClusterSet {
    dir: PathBuf,
    clusters: BTreeMap<String, Arc<Cluster>>,
    /// More context names for a cluster (`alias` → its name): the same API
    /// server reached through another context, as a kubeconfig renamed by
    /// hand or merged from another file has.
    aliases: BTreeMap<String, String>,
    tasks: Vec<JoinHandle<()>>,
    lock: File,
    flusher: Flusher,
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("kubesim.lock")
}

/// `DIR/clusters/<name>.json`. A context name can hold anything (`../x`,
/// `/`, control characters), so it becomes a file name only percent-encoded:
/// every byte outside `[A-Za-z0-9._-]` is `%XX`, and a name that would be
/// `.` or `..` cannot occur since the `.json` suffix follows it.
pub fn cluster_file(dir: &Path, name: &str) -> PathBuf {
    dir.join("clusters")
        .join(format!("{}.json", file_name_of(name)))
}

/// The safe file-name form of a context name (see [`cluster_file`]).
pub fn file_name_of(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// Creates `dir` and its missing parents 0700 whatever the umask: the
/// folder holds admin tokens and CA keys.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_private(path, bytes, true)
}

/// Writes `bytes` to a temporary file of mode 0600 (synced if `sync`) and
/// renames it over `path`.
fn write_private(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    if sync {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

impl ClusterSet {
    /// Whether `dir` holds simulated clusters (a `--sandbox` folder).
    pub fn is_sandbox(dir: &Path) -> bool {
        lock_path(dir).is_file() && dir.join("clusters").is_dir()
    }

    /// Who holds `dir`, if a live process serves it.
    pub fn running_in(dir: &Path) -> Option<Running> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(lock_path(dir))
            .ok()?;
        match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
                None
            }
            Err(_) => {
                let mut s = String::new();
                f.read_to_string(&mut s).ok()?;
                serde_json::from_str(&s).ok()
            }
        }
    }

    /// Starts the clusters named `names` (and any others saved in `dir`),
    /// creating those that are new. Refused when another process serves `dir`.
    pub async fn open(dir: &Path, names: &[&str], options: Options) -> Result<ClusterSet> {
        create_private_dir(&dir.join("clusters"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path(dir))
            .with_context(|| format!("opening {}", lock_path(dir).display()))?;
        if lock.try_lock().is_err() {
            let holder = Self::running_in(dir);
            bail!(
                "the simulated clusters in {} are already served by another process{}: \
                 stop it first, or use them through {}",
                dir.display(),
                holder
                    .map(|h| format!(" (pid {}, clusters {})", h.pid, h.contexts.join(", ")))
                    .unwrap_or_default(),
                dir.join("kubeconfig").display()
            );
        }
        // Saved clusters first, in their original order, then new ones.
        let mut saved: Vec<Saved> = Vec::new();
        for entry in std::fs::read_dir(dir.join("clusters"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let s: Saved = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a kubesim cluster file", path.display()))?;
                saved.push(s);
            }
        }
        saved.sort_by_key(|s| s.index);
        let mut set = ClusterSet {
            dir: dir.to_path_buf(),
            clusters: BTreeMap::new(),
            aliases: BTreeMap::new(),
            tasks: Vec::new(),
            lock,
            flusher: Flusher::default(),
        };
        let mut next_index = saved.iter().map(|s| s.index + 1).max().unwrap_or(0);
        let mut listeners = Vec::new();
        for s in saved {
            let listener = TcpListener::bind(("127.0.0.1", s.port))
                .await
                .with_context(|| {
                    format!("port {} of simulated cluster {} is taken", s.port, s.name)
                })?;
            listeners.push((s, listener));
        }
        for name in names {
            if listeners.iter().any(|(s, _)| s.name == *name) {
                continue;
            }
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let port = listener.local_addr()?.port();
            let token = {
                let b: [u8; 24] = rand::random();
                format!(
                    "kubesim-admin.{}",
                    b.iter().map(|x| format!("{x:02x}")).collect::<String>()
                )
            };
            let s = Saved {
                name: name.to_string(),
                port,
                token,
                certs: Certs::generate(name)?,
                index: next_index,
                lb_next: 0,
                data: Data::default(),
            };
            next_index += 1;
            listeners.push((s, listener));
        }
        for (s, listener) in listeners {
            let cluster = Cluster::new(s, options.lb_delay, options.lb_mode);
            set.tasks.push(tokio::spawn(crate::server::serve(
                cluster.clone(),
                listener,
            )));
            set.tasks
                .push(tokio::spawn(cluster.clone().run_controllers()));
            set.clusters.insert(cluster.name.clone(), cluster);
        }
        set.save_all()?;
        set.write_kubeconfig()?;
        set.write_lock_info()?;
        // Write-through: save what changed every 200 ms (and on `flush`).
        let flusher = Flusher {
            dir: set.dir.clone(),
            clusters: set.clusters.values().cloned().collect(),
            saving: set.flusher.saving.clone(),
        };
        set.flusher = flusher.clone();
        set.tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = flusher.flush();
            }
        }));
        Ok(set)
    }

    fn write_lock_info(&mut self) -> Result<()> {
        let info = Running {
            pid: std::process::id(),
            contexts: self
                .clusters
                .keys()
                .chain(self.aliases.keys())
                .cloned()
                .collect(),
        };
        self.lock.set_len(0)?;
        self.lock.seek(SeekFrom::Start(0))?;
        self.lock
            .write_all(serde_json::to_string(&info)?.as_bytes())?;
        self.lock.sync_all()?;
        Ok(())
    }

    /// Serves the cluster `target` under the context `alias` too (in the
    /// kubeconfig, its one-context file and the lock's list).
    pub fn add_alias(&mut self, alias: &str, target: &str) -> Result<()> {
        if !self.clusters.contains_key(target) || self.clusters.contains_key(alias) {
            bail!("no cluster {target}, or {alias} is a cluster's own name");
        }
        self.aliases.insert(alias.to_string(), target.to_string());
        self.write_kubeconfig()?;
        self.write_lock_info()
    }

    fn write_kubeconfig(&self) -> Result<()> {
        fn entry<'a>(context: &'a str, c: &'a Cluster) -> kubeconfig::Entry<'a> {
            kubeconfig::Entry {
                context,
                port: c.port,
                ca_pem: &c.certs.ca_pem,
                token: &c.token,
            }
        }
        let entries: Vec<kubeconfig::Entry<'_>> = self
            .clusters
            .values()
            .map(|c| entry(&c.name, c))
            .chain(
                self.aliases
                    .iter()
                    .map(|(alias, name)| entry(alias, &self.clusters[name])),
            )
            .collect();
        let path = self.kubeconfig_path();
        write_atomic(&path, kubeconfig::render(&entries).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        // One file per context too, for the simulated istioctl (see
        // `kubeconfig::context_file`). They are derived and rewritten at
        // every start, so they are not synced; the old ones go first.
        let dir = kubeconfig::contexts_dir(&path);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for e in &entries {
            let one = kubeconfig::context_file(&path, e.context);
            write_private(
                &one,
                kubeconfig::render(std::slice::from_ref(e)).as_bytes(),
                false,
            )
            .with_context(|| format!("writing {}", one.display()))?;
        }
        Ok(())
    }

    /// `DIR/kubeconfig`: one context per cluster.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub fn cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.clusters.get(name).cloned()
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.clusters.values()
    }

    /// Saves every cluster changed since its last save, now. A caller about
    /// to record that some change happened (mesh, before each state write)
    /// calls this first, so a kill never leaves the clusters behind what the
    /// record says.
    pub fn flush(&self) -> Result<()> {
        self.flusher.flush()
    }

    /// A handle that saves the set's changed clusters ([`ClusterSet::flush`])
    /// from wherever the set itself is kept.
    pub fn flusher(&self) -> Flusher {
        self.flusher.clone()
    }

    /// Writes every cluster to the folder now.
    pub fn save_all(&self) -> Result<()> {
        for c in self.clusters.values() {
            save(&self.dir, c)?;
        }
        Ok(())
    }

    /// Stops serving, after saving everything.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.clusters.values().try_for_each(|c| save(&self.dir, c));
        let _ = self.lock.set_len(0);
        let _ = self.lock.unlock();
    }
}

/// Saves the clusters of a set that changed; one save at a time, so the
/// background flush and an explicit one never write one file together.
#[derive(Clone, Default)]
pub struct Flusher {
    dir: PathBuf,
    clusters: Vec<Arc<Cluster>>,
    saving: Arc<std::sync::Mutex<()>>,
}

impl Flusher {
    pub fn flush(&self) -> Result<()> {
        let _one = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        for c in &self.clusters {
            if c.dirty.swap(false, Ordering::SeqCst)
                && let Err(e) = save(&self.dir, c)
            {
                c.dirty.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    }
}

fn save(dir: &Path, c: &Cluster) -> Result<()> {
    let saved = c.saved();
    let bytes = serde_json::to_vec(&saved)?;
    write_atomic(&cluster_file(dir, &c.name), &bytes)
        .with_context(|| format!("saving simulated cluster {}", c.name))
}
