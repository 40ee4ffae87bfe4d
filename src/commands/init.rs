//! `mesh init`: a first, commented mesh file for the user's kubeconfig
//! contexts, so nobody starts from a blank page. `mesh ca init`: a new root
//! of trust, its two files written together or not at all (a key without
//! its certificate would make the rerun refuse), in a folder only the user
//! can read.

use crate::cli::Cli;
use anyhow::{Context, Result, bail};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A DNS-1123 label made from a context name (`kind-cluster1` stays,
/// `gke_proj_zone_name` becomes `gke-proj-zone-name`), unique among `taken`.
fn cluster_name(context: &str, taken: &[String]) -> String {
    let mut name: String = context
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    // Collapse runs of `-`, trim them, keep at most 55 characters (room for a suffix).
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    let mut name = name.trim_matches('-').chars().take(55).collect::<String>();
    name = name.trim_end_matches('-').to_string();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name = format!("cluster{}", taken.len() + 1);
    }
    let base = name.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// The mesh file for `contexts`: the first is the primary, the rest its remotes.
pub fn render(contexts: &[String]) -> String {
    let mut names: Vec<String> = Vec::new();
    for c in contexts {
        let n = cluster_name(c, &names);
        names.push(n);
    }
    let toml_str = |s: &str| toml::Value::from(s).to_string();
    let mut out = String::from(
        "# A mesh description for `mesh` (docs/mesh-toml.md has every key).\n\
         # Check it with `mesh validate`, see what it would do with `mesh plan`.\n\n\
         [mesh]\n\
         id = \"mesh1\"                  # the Istio meshID\n\
         # revision = \"canary\"         # an Istio revision for every install\n\
         # istio_version = \"1.28\"      # refuse to run with another istioctl\n\n\
         # [istioctl]\n\
         # path = \"istioctl\"           # a name on PATH, or a path\n\
         # readiness_timeout = \"300s\"  # istioctl install --readiness-timeout\n",
    );
    // `key = value` with a comment aligned at column 31, as above.
    let line = |kv: String, comment: &str| {
        if comment.is_empty() {
            format!("{kv}\n")
        } else {
            format!("{kv:<29} # {comment}\n")
        }
    };
    for (i, (ctx, name)) in contexts.iter().zip(&names).enumerate() {
        out.push_str("\n[[cluster]]\n");
        let first = i == 0;
        out.push_str(&line(
            format!("name = {}", toml_str(name)),
            if first {
                "the Istio clusterName: it names Secrets"
            } else {
                ""
            },
        ));
        out.push_str(&line(
            format!("context = {}", toml_str(ctx)),
            if first { "its kubeconfig context" } else { "" },
        ));
        out.push_str(&line(
            "network = \"network1\"".into(),
            if first { "the Istio network" } else { "" },
        ));
        if first {
            out.push_str(&line(
                "role = \"primary\"".into(),
                "runs the control plane (istiod)",
            ));
        } else {
            out.push_str(&line(
                "role = \"remote\"".into(),
                "uses its primary's control plane",
            ));
            out.push_str(&line(format!("primary = {}", toml_str(&names[0])), ""));
            out.push_str(&line(
                "# api_server = \"https://172.18.0.3:6443\"".into(),
                "how the primary reaches this API server (kind needs it)",
            ));
        }
    }
    out
}

pub fn init(cli: &Cli, contexts: &[String], force: bool, offline: bool) -> Result<u8> {
    // The sandbox makes a simulated cluster for every context of the mesh
    // file: there is no kubeconfig to read its contexts from yet.
    let offline = offline || cli.sandbox.is_some();
    let contexts = if offline {
        if contexts.is_empty() {
            bail!(
                "name the clusters with --context CONTEXT (repeat it): with --offline or --sandbox no kubeconfig is read"
            );
        }
        contexts.to_vec()
    } else if contexts.is_empty() {
        let all = providers::cluster::context_names(cli.kubeconfig.as_deref()).context(
            "reading the kubeconfig's contexts (pass --kubeconfig, or name them with --context)",
        )?;
        if all.is_empty() {
            bail!(
                "the kubeconfig has no contexts: name the clusters with --context CONTEXT (repeat it)"
            );
        }
        all
    } else {
        check_contexts(cli, contexts)?;
        contexts.to_vec()
    };
    if cli.file.exists() && !force {
        bail!(
            "{} exists already: mesh init will not overwrite it (pass --force to replace it, or -f to write another file)",
            cli.file.display()
        );
    }
    let text = render(&contexts);
    // The generated file must be one mesh accepts.
    engine::config::parse(&text, &cli.file).map_err(|d| anyhow::anyhow!("{}", d.render(false)))?;
    std::fs::write(&cli.file, &text).with_context(|| format!("writing {}", cli.file.display()))?;
    crate::outln!(
        "Wrote {} with {} clusters: {} is the primary. Edit it, then run `mesh validate` and `mesh plan`.",
        cli.file.display(),
        contexts.len(),
        contexts[0]
    );
    if offline && cli.sandbox.is_none() {
        crate::errln!(
            "note: no kubeconfig was read (--offline): the contexts are as given; `mesh plan` checks \
             that your kubeconfig has them"
        );
    }
    Ok(0)
}

/// `mesh ca init [DIR]`: a new root CA for `[trust]`.
pub fn ca_init(cli: &Cli, dir: Option<&std::path::Path>) -> Result<u8> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => cli
            .file
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default()
            .join("certs"),
    };
    let cert_path = dir.join("root-cert.pem");
    let key_path = dir.join("root-key.pem");
    for p in [&cert_path, &key_path] {
        if std::fs::symlink_metadata(p).is_ok() {
            bail!(
                "{} exists already: mesh ca init never overwrites a root (the mesh's workloads trust it). \
                 Move it away first, or name another folder: mesh ca init DIR",
                p.display()
            );
        }
    }
    let existed = std::fs::symlink_metadata(&dir).is_ok();
    create_private_dir(&dir)?;
    let (cert, key) = providers::ca::new_root("mesh root CA")
        .map_err(|e| anyhow::anyhow!("making the root: {e}"))?;
    // A `.gitignore` beside the key, so `git add -A` of the repository
    // that holds the mesh file leaves the key out (unless the folder has
    // one of its own already).
    let ignore_path = dir.join(".gitignore");
    let ignore = std::fs::symlink_metadata(&ignore_path).is_err();
    let mut files = vec![
        NewFile {
            path: &key_path,
            content: key.expose().as_bytes(),
            mode: 0o600,
        },
        NewFile {
            path: &cert_path,
            content: cert.as_bytes(),
            mode: 0o644,
        },
    ];
    if ignore {
        files.insert(
            1,
            NewFile {
                path: &ignore_path,
                content: b"# the root's private key: never in version control\nroot-key.pem\n",
                mode: 0o644,
            },
        );
    }
    if let Err(e) = write_all_or_none(&dir, &files, |f, bytes| f.write_all(bytes)) {
        if !existed {
            // Only if empty: then nothing of this run is left.
            let _ = std::fs::remove_dir(&dir);
        }
        return Err(e);
    }
    let info = providers::ca::inspect(&cert).map_err(|e| anyhow::anyhow!(e))?;
    crate::outln!(
        "Wrote {} (sha256:{}, valid until {}) and its key {} (mode 0600).\n\
         Add to the mesh file:\n\n[trust]\nroot_cert = {}\nroot_key = {}\n\n\
         Keep the key out of version control{}.",
        cert_path.display(),
        &info.sha256[..16],
        providers::ca::date(info.not_after),
        key_path.display(),
        from_mesh_file(cli, &cert_path),
        from_mesh_file(cli, &key_path),
        if ignore {
            format!(" ({} lists it for git)", ignore_path.display())
        } else {
            String::new()
        }
    );
    Ok(0)
}

/// Every `--context` is one the kubeconfig has: a mesh file for a
/// misspelled context would fail at its first plan instead.
fn check_contexts(cli: &Cli, wanted: &[String]) -> Result<()> {
    let known = providers::cluster::context_names(cli.kubeconfig.as_deref()).context(
        "reading the kubeconfig to check the --context names (pass --kubeconfig to name it)",
    )?;
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| !known.contains(c))
        .map(|c| format!("`{}`", providers::rendered::shown(c)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let source = providers::cluster::kubeconfig_source(cli.kubeconfig.as_deref());
    let there = if known.is_empty() {
        "it has no contexts".to_string()
    } else {
        format!(
            "the contexts there are: {}",
            providers::cluster::listed(&known)
        )
    };
    let meant: Vec<String> = wanted
        .iter()
        .filter(|c| !known.contains(c))
        .filter_map(|c| {
            providers::cluster::closest(c, &known).map(|k| {
                format!(
                    "`{}` for `{}`",
                    providers::rendered::shown(k),
                    providers::rendered::shown(c)
                )
            })
        })
        .collect();
    let meant = if meant.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", meant.join(", "))
    };
    bail!(
        "the kubeconfig ({source}) has no context {}{meant}: {there}. \
         Name contexts `kubectl config get-contexts` lists, pass --kubeconfig, or write the file \
         for clusters you will add later with --offline",
        missing.join(", ")
    )
}

/// `path` as the mesh file's `[trust]` must say it: relative to the mesh
/// file's folder (where mesh resolves it), as a TOML string; absolute when
/// no relative path leads there.
fn from_mesh_file(cli: &Cli, path: &std::path::Path) -> String {
    use std::path::Path;
    let base = cli.file.parent().unwrap_or(Path::new(""));
    let absolute = |p: &Path| {
        if p.as_os_str().is_empty() {
            std::env::current_dir().ok()
        } else {
            p.canonicalize().ok()
        }
    };
    let shown = relative_path(path, base)
        .or_else(|| path.is_absolute().then(|| path.to_path_buf()))
        .or_else(|| relative_path(&absolute(path)?, &absolute(base)?))
        .or_else(|| absolute(path))
        .unwrap_or_else(|| path.to_path_buf());
    toml::Value::from(shown.to_string_lossy().as_ref()).to_string()
}

/// `to` relative to the folder `from`, when both are given the same way
/// (both relative to one folder, or both absolute) and neither has `..`.
fn relative_path(to: &std::path::Path, from: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let parts = |p: &std::path::Path| -> Option<Vec<std::ffi::OsString>> {
        let mut v = Vec::new();
        for c in p.components() {
            match c {
                Component::CurDir => {}
                Component::RootDir => v.push("/".into()),
                Component::Normal(n) => v.push(n.to_os_string()),
                _ => return None,
            }
        }
        Some(v)
    };
    let (to, from) = (parts(to)?, parts(from)?);
    let rooted = |v: &[std::ffi::OsString]| v.first().is_some_and(|f| f == "/");
    if rooted(&to) != rooted(&from) {
        return None;
    }
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut out: std::path::PathBuf = from[common..].iter().map(|_| "..").collect();
    out.extend(&to[common..]);
    Some(out)
}

/// Creates `dir` and its missing parents 0700 whatever the umask: the
/// folder holds the root key.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// A file [`write_all_or_none`] creates.
struct NewFile<'a> {
    path: &'a Path,
    content: &'a [u8],
    mode: u32,
}

/// Writes `files` (all in `dir`) all or none, never replacing a file: each
/// goes to a new temporary file in `dir`, written with `write` (a parameter
/// so that tests can fail it) and synced; then each is hard-linked to its
/// name, which fails if the name exists; then `dir` is synced. On any
/// failure, whatever this call wrote is removed.
fn write_all_or_none(
    dir: &Path,
    files: &[NewFile<'_>],
    write: impl Fn(&mut std::fs::File, &[u8]) -> std::io::Result<()>,
) -> Result<()> {
    let mut temps: Vec<PathBuf> = Vec::new();
    let mut linked: Vec<&Path> = Vec::new();
    let mut run = || -> Result<()> {
        for f in files {
            let tmp = temp_beside(f.path);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, f.mode);
            let mut file = options
                .open(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            temps.push(tmp);
            write(&mut file, f.content)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", f.path.display()))?;
        }
        for (f, tmp) in files.iter().zip(&temps) {
            std::fs::hard_link(tmp, f.path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    anyhow::anyhow!(
                        "{} exists already: mesh ca init never overwrites a root (the mesh's workloads trust it). \
                         Move it away first, or name another folder: mesh ca init DIR",
                        f.path.display()
                    )
                } else {
                    anyhow::Error::new(e).context(format!("creating {}", f.path.display()))
                }
            })?;
            linked.push(f.path);
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))
    };
    let result = run();
    for tmp in &temps {
        let _ = std::fs::remove_file(tmp);
    }
    if result.is_err() {
        for p in &linked {
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

/// `DIR/.NAME.PID.NANOS.tmp`: unique to this run, hidden, beside `path`
/// (a hard link cannot cross file systems).
fn temp_beside(path: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_and_unique() {
        assert_eq!(cluster_name("kind-cluster1", &[]), "kind-cluster1");
        assert_eq!(
            cluster_name("gke_proj_us-east1_prod", &[]),
            "gke-proj-us-east1-prod"
        );
        assert_eq!(
            cluster_name("arn:aws:eks:eu-west-1:123:cluster/Prod", &[]),
            "arn-aws-eks-eu-west-1-123-cluster-prod"
        );
        assert_eq!(cluster_name("a", &["a".into()]), "a-2");
        assert_eq!(cluster_name("___", &[]), "cluster1");
    }

    #[test]
    fn paths_relative_to_a_folder() {
        use std::path::{Path, PathBuf};
        let rel = |to: &str, from: &str| relative_path(Path::new(to), Path::new(from));
        assert_eq!(
            rel("sub/certs/root-cert.pem", "sub"),
            Some(PathBuf::from("certs/root-cert.pem"))
        );
        assert_eq!(
            rel("certs/root-cert.pem", ""),
            Some(PathBuf::from("certs/root-cert.pem"))
        );
        assert_eq!(
            rel("./keys/a.pem", "sub/deep"),
            Some(PathBuf::from("../../keys/a.pem"))
        );
        assert_eq!(
            rel("/etc/mesh/a.pem", "/etc/mesh"),
            Some(PathBuf::from("a.pem"))
        );
        assert_eq!(rel("/etc/a.pem", "sub"), None);
        assert_eq!(rel("../a.pem", "sub"), None);
    }

    #[test]
    fn the_generated_file_is_valid() {
        let text = render(&[
            "kind-cluster1".into(),
            "kind-cluster2".into(),
            "gke_x_y".into(),
        ]);
        let mesh = engine::config::parse(&text, std::path::Path::new("mesh.toml")).expect("valid");
        assert_eq!(mesh.clusters.len(), 3);
        assert_eq!(mesh.clusters[2].primary.as_deref(), Some("kind-cluster1"));
    }

    /// A write that fails (a full disk) after the first file leaves neither
    /// file nor temporary file, so the rerun succeeds.
    #[test]
    fn a_failed_second_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        let files = [
            NewFile {
                path: &a,
                content: b"first",
                mode: 0o600,
            },
            NewFile {
                path: &b,
                content: b"second",
                mode: 0o644,
            },
        ];
        let calls = std::cell::Cell::new(0);
        let full_after_one = |f: &mut std::fs::File, bytes: &[u8]| {
            calls.set(calls.get() + 1);
            if calls.get() == 2 {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            f.write_all(bytes)
        };
        let e = write_all_or_none(dir.path(), &files, full_after_one).unwrap_err();
        assert!(format!("{e:#}").contains("writing"), "{e:#}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_all_or_none(dir.path(), &files, |f, b| f.write_all(b)).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// A name taken while the files were written is not replaced, and the
    /// file already linked is taken back.
    #[test]
    fn an_existing_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        std::fs::write(&b, "theirs").unwrap();
        let files = [
            NewFile {
                path: &a,
                content: b"ours",
                mode: 0o600,
            },
            NewFile {
                path: &b,
                content: b"ours",
                mode: 0o644,
            },
        ];
        let e = write_all_or_none(dir.path(), &files, |f, b| f.write_all(b)).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e:#}");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "theirs");
        assert!(!a.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
