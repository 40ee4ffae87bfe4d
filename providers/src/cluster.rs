//! Connections to clusters: one kube client per (kubeconfig, context),
//! reused by every step, and bounded retries for the errors worth retrying.
//!
//! The kubeconfig is, in order: the cluster's own `kubeconfig` key, the
//! global `--kubeconfig`, `$KUBECONFIG` (several paths, merged; missing
//! ones skipped, as kubectl does), or `~/.kube/config`: what kubectl would
//! use.

use crate::rendered::Target;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

/// A cluster could not be reached or used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "cannot read the kubeconfig for cluster `{cluster}` (context `{context}`): {problem}. \
         Check the path given by the cluster's `kubeconfig` key, --kubeconfig, $KUBECONFIG or ~/.kube/config"
    )]
    Kubeconfig {
        cluster: String,
        context: String,
        /// Names the file; worded here, not kube's (which prints a path
        /// with Debug quotes and repeats its cause).
        problem: KubeconfigProblem,
    },
    #[error(
        "the kubeconfig ({kubeconfig}) has no usable context `{context}` for cluster `{cluster}`: {reason}. \
         `kubectl config get-contexts` lists the contexts; fix `context` in the mesh file"
    )]
    Context {
        cluster: String,
        context: String,
        /// Which kubeconfig was read ([`kubeconfig_source`]).
        kubeconfig: String,
        reason: String,
    },
    /// A document mesh cannot send (from a damaged state record).
    #[error(
        "a recorded document cannot be used: {detail}. The state may be damaged: \
         restore it from its `.backup`"
    )]
    Document { detail: String },
    /// Not `#[source]`: the message already says what the cause is
    /// ([`reason`]), and kube's own chain (`ServiceError: client error
    /// (Connect)`) would only repeat it less clearly.
    #[error("cluster `{cluster}` (context `{context}`, {server}): {what} failed: {}", reason(.cause))]
    Api {
        cluster: String,
        context: String,
        /// The API server URL the context points at.
        server: String,
        what: String,
        /// Boxed: kube's error is large, and every step result carries this.
        /// (Not named `source`, which thiserror would chain.)
        cause: Box<kube::Error>,
    },
}

/// The most mesh reads of one answer from an API server, in MiB, unless
/// [`MAX_RESPONSE_ENV`] says otherwise. A hostile or broken server (or a
/// list nobody paged) could send gigabytes; mesh asks for what it needs by
/// label, name or page, and none of its own answers come near this.
pub const MAX_RESPONSE_MIB: usize = 256;

/// Overrides [`MAX_RESPONSE_MIB`] (whole MiB).
pub const MAX_RESPONSE_ENV: &str = "MESH_MAX_RESPONSE_MIB";

/// The cap in bytes, read once.
fn max_response_bytes() -> usize {
    static CAP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        std::env::var(MAX_RESPONSE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|mib| *mib > 0)
            .unwrap_or(MAX_RESPONSE_MIB)
            << 20
    })
}

/// An answer's body, cut off past [`max_response_bytes`] with an error
/// ([`reason`] names it) instead of read whole into memory.
fn capped<B>(response: http::Response<B>) -> http::Response<http_body_util::Limited<B>> {
    response.map(|body| http_body_util::Limited::new(body, max_response_bytes()))
}

/// Whether `e` is an answer cut off at [`max_response_bytes`].
fn too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A kube error as a phrase for the user. A failure to connect is named by
/// its innermost cause (`connection refused`, `timed out`, a TLS or DNS
/// error), not by kube's wrapper; an API answer by its message and code.
pub fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let message = crate::rendered::shown(&s.message);
            match (s.code, s.reason.is_empty()) {
                (0, _) => message,
                (code, true) => format!("{message} (HTTP {code})"),
                (code, false) => format!("{message} (HTTP {code} {})", s.reason),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) if too_large(e) => format!(
            "the answer is larger than the {} MiB mesh reads from one request ({MAX_RESPONSE_ENV} \
             raises it), so it was not read: a list this large, or a server sending without end",
            max_response_bytes() >> 20
        ),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            let mut io = None;
            let mut innermost: &(dyn std::error::Error + 'static) = e;
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(err) = cur {
                if let Some(i) = err.downcast_ref::<std::io::Error>() {
                    io = Some(i);
                }
                innermost = err;
                cur = err.source();
            }
            use std::io::ErrorKind as K;
            let phrase = match io.map(std::io::Error::kind) {
                Some(K::ConnectionRefused) => "connection refused".to_string(),
                Some(K::TimedOut) => "timed out".to_string(),
                Some(K::ConnectionReset) => "connection reset".to_string(),
                Some(K::ConnectionAborted) => "connection aborted".to_string(),
                Some(K::HostUnreachable) => "host unreachable".to_string(),
                Some(K::NetworkUnreachable) => "network unreachable".to_string(),
                Some(K::UnexpectedEof) => "the connection was closed".to_string(),
                _ => innermost.to_string(),
            };
            format!("cannot connect: {}", crate::rendered::shown(&phrase))
        }
        other => crate::rendered::shown(&other.to_string()),
    }
}

/// Why a kubeconfig could not be read, naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeconfigProblem {
    #[error("{path} does not exist")]
    Missing { path: String },
    #[error("$KUBECONFIG names {paths}, and none of them exists")]
    NoneOfKubeconfig { paths: String },
    #[error("no --kubeconfig, no $KUBECONFIG, and no home folder to find ~/.kube/config in")]
    NoHome,
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} is not a kubeconfig: {reason}")]
    Invalid { path: String, reason: String },
    /// The file's YAML is broken, or a key holds a value of the wrong type.
    /// Only where, never what: the YAML library's message quotes the lines
    /// around the mistake, and a kubeconfig holds tokens and keys.
    #[error("{}", not_yaml(.path, .at, .key))]
    NotYaml {
        path: String,
        /// Line and column (1-based), when the YAML library knows them.
        at: Option<(u64, u64)>,
        /// The kubeconfig key on that line, when it is one kubeconfig
        /// defines (a name from [`KUBECONFIG_KEYS`], never a value).
        key: Option<&'static str>,
    },
    #[error("the files of $KUBECONFIG cannot be merged: {reason}")]
    Merge { reason: String },
}

/// Reads one kubeconfig file.
fn read_file(path: &Path) -> Result<Kubeconfig, KubeconfigProblem> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KubeconfigProblem::Missing { path: shown });
        }
        Err(e) => {
            return Err(KubeconfigProblem::Unreadable {
                path: shown,
                reason: io_reason(&e),
            });
        }
        Ok(m) if m.is_dir() => {
            return Err(KubeconfigProblem::Unreadable {
                path: shown,
                reason: "it is a folder".into(),
            });
        }
        Ok(_) => {}
    }
    Kubeconfig::read_from(path).map_err(|e| match e {
        kube::config::KubeconfigError::ReadConfig(io, _) => KubeconfigProblem::Unreadable {
            path: shown,
            reason: io_reason(&io),
        },
        // Never the error's Display: it quotes the file around the mistake.
        kube::config::KubeconfigError::Parse(yaml) => {
            let at = yaml
                .location()
                .map(|l| (l.line(), l.column()))
                .filter(|&(line, _)| line > 0);
            let key = at.and_then(|(line, _)| {
                let text = std::fs::read_to_string(path).ok()?;
                key_on_line(&text, line)
            });
            KubeconfigProblem::NotYaml {
                path: shown,
                at,
                key,
            }
        }
        other => KubeconfigProblem::Invalid {
            path: shown,
            reason: other.to_string(),
        },
    })
}

/// [`KubeconfigProblem::NotYaml`]'s message: the file, line and column,
/// the key's name, and what to do.
fn not_yaml(path: &str, at: &Option<(u64, u64)>, key: &Option<&'static str>) -> String {
    let place = match *at {
        Some((line, column)) => format!("{path}:{line}:{column}"),
        None => path.to_string(),
    };
    let key = key.map_or(String::new(), |k| format!(" (at the key `{k}`)"));
    format!(
        "{place}{key} is not valid YAML for a kubeconfig (broken syntax, or a value of the \
         wrong type): fix the file at that place. Its content is not shown, since a kubeconfig \
         holds credentials"
    )
}

/// The keys a kubeconfig defines: the only words of a kubeconfig's line a
/// message may name.
pub const KUBECONFIG_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "preferences",
    "clusters",
    "contexts",
    "users",
    "current-context",
    "extensions",
    "extension",
    "name",
    "cluster",
    "context",
    "user",
    "server",
    "tls-server-name",
    "insecure-skip-tls-verify",
    "certificate-authority",
    "certificate-authority-data",
    "proxy-url",
    "disable-compression",
    "namespace",
    "client-certificate",
    "client-certificate-data",
    "client-key",
    "client-key-data",
    "token",
    "tokenFile",
    "as",
    "as-uid",
    "as-groups",
    "as-user-extra",
    "username",
    "password",
    "auth-provider",
    "config",
    "exec",
    "command",
    "args",
    "env",
    "value",
    "installHint",
    "provideClusterInfo",
    "interactiveMode",
];

/// The kubeconfig key (one of [`KUBECONFIG_KEYS`]) that line `line`
/// (1-based) of `text` starts with, if any: `    token: …` gives `token`.
/// Nothing else of the line is ever returned.
fn key_on_line(text: &str, line: u64) -> Option<&'static str> {
    let index = usize::try_from(line.checked_sub(1)?).ok()?;
    let l = text.lines().nth(index)?.trim_start();
    let l = l.strip_prefix('-').map_or(l, str::trim_start);
    let (word, _) = l.split_once(':')?;
    let word = word.trim_end().trim_matches(['"', '\'']);
    KUBECONFIG_KEYS.iter().copied().find(|k| *k == word)
}

/// An IO error without its `(os error N)` suffix, lower case.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => "no such file".into(),
        K::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The kubeconfig at `path`, else what kubectl would read: the files of
/// `$KUBECONFIG` (colon-separated, merged, the first to set a value wins;
/// missing files skipped, an error only when none exists), else
/// `~/.kube/config`.
pub fn read_kubeconfig(path: Option<&Path>) -> Result<Kubeconfig, KubeconfigProblem> {
    if let Some(p) = path {
        return read_file(p);
    }
    if let Some(value) = std::env::var_os("KUBECONFIG") {
        let paths: Vec<PathBuf> = std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            let present: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
            if present.is_empty() {
                return Err(KubeconfigProblem::NoneOfKubeconfig {
                    paths: paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            let mut merged = Kubeconfig::default();
            for p in present {
                merged = merged
                    .merge(read_file(p)?)
                    .map_err(|e| KubeconfigProblem::Merge {
                        reason: e.to_string(),
                    })?;
            }
            return Ok(merged);
        }
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(KubeconfigProblem::NoHome)?;
    read_file(&PathBuf::from(home).join(".kube").join("config"))
}

/// A connected cluster.
#[derive(Clone)]
pub struct Connection {
    pub client: kube::Client,
    /// The API server URL the context points at.
    pub server: String,
    pub cluster: String,
    pub context: String,
}

impl Connection {
    /// Wraps a kube error with the cluster, context and operation.
    pub fn error(&self, what: impl Into<String>, source: kube::Error) -> ClusterError {
        ClusterError::Api {
            cluster: self.cluster.clone(),
            context: self.context.clone(),
            server: self.server.clone(),
            what: what.into(),
            cause: Box::new(source),
        }
    }

    /// Runs `op` with retries; errors are wrapped with this cluster.
    pub async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        with_retries(op).await.map_err(|e| self.error(what, e))
    }

    /// Whether the API server answers: `GET /version`, tried
    /// [`PREFLIGHT_ATTEMPTS`] times (a preflight should fail fast, not
    /// retry as long as a step would). Returns the server's version.
    pub async fn ping(&self) -> Result<String, ClusterError> {
        with_attempts(PREFLIGHT_ATTEMPTS, || self.client.apiserver_version())
            .await
            .map(|v| v.git_version)
            .map_err(|e| self.error("reading the API server version (GET /version)", e))
    }
}

/// A connection is to a (kubeconfig path, context).
type ConnectionKey = (Option<PathBuf>, String);

/// The pool of connections, shared by all steps of a run.
///
/// A fleet's kubeconfig can hold a thousand contexts: each kubeconfig file
/// is parsed once per run, and each connection is made from a copy holding
/// only its own context, so connecting to N clusters costs O(N), not O(N²).
/// Connections to different clusters are made concurrently; two steps on
/// one cluster share the first one's connection.
pub struct Clusters {
    /// `--kubeconfig`, used by clusters without their own.
    default_kubeconfig: Option<PathBuf>,
    /// Parsed kubeconfigs by path (`None`: `$KUBECONFIG` or `~/.kube/config`).
    kubeconfigs: Mutex<HashMap<Option<PathBuf>, Arc<Kubeconfig>>>,
    connections: Mutex<HashMap<ConnectionKey, Arc<OnceCell<Connection>>>>,
}

impl Clusters {
    pub fn new(default_kubeconfig: Option<PathBuf>) -> Clusters {
        Clusters {
            default_kubeconfig,
            kubeconfigs: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// The connection for `target`, made on first use.
    pub async fn connect(&self, target: &Target) -> Result<Connection, ClusterError> {
        let path = target
            .kubeconfig
            .clone()
            .or_else(|| self.default_kubeconfig.clone());
        let cell = {
            let mut pool = self.connections.lock().await;
            pool.entry((path.clone(), target.context.clone()))
                .or_default()
                .clone()
        };
        cell.get_or_try_init(|| async {
            let kubeconfig = self.kubeconfig(path.as_deref(), target).await?;
            open(&kubeconfig, target, path.as_deref()).await
        })
        .await
        .cloned()
    }

    /// The kubeconfig at `path`, parsed on first use. The lock is held while
    /// parsing so that a thousand first connections parse it once.
    async fn kubeconfig(
        &self,
        path: Option<&Path>,
        target: &Target,
    ) -> Result<Arc<Kubeconfig>, ClusterError> {
        let mut parsed = self.kubeconfigs.lock().await;
        let key = path.map(Path::to_path_buf);
        if let Some(kubeconfig) = parsed.get(&key) {
            return Ok(kubeconfig.clone());
        }
        let kubeconfig = read_kubeconfig(path).map_err(|problem| ClusterError::Kubeconfig {
            cluster: target.cluster.clone(),
            context: target.context.clone(),
            problem,
        })?;
        let kubeconfig = Arc::new(kubeconfig);
        parsed.insert(key, kubeconfig.clone());
        Ok(kubeconfig)
    }
}

/// The context names of a kubeconfig (`path`, else `$KUBECONFIG` or
/// `~/.kube/config`), in file order: what `mesh init` offers.
pub fn context_names(path: Option<&Path>) -> Result<Vec<String>, KubeconfigProblem> {
    let kubeconfig = read_kubeconfig(path)?;
    Ok(kubeconfig.contexts.into_iter().map(|c| c.name).collect())
}

/// How many context names an error about a missing context lists.
pub const LISTED_CONTEXTS: usize = 20;

/// `names` for a message: at most [`LISTED_CONTEXTS`], then how many more.
pub fn listed(names: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(LISTED_CONTEXTS)
        .map(|n| crate::rendered::shown(n))
        .collect();
    match names.len().saturating_sub(LISTED_CONTEXTS) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The name of `names` closest to a misspelt `name`, if one is close.
pub fn closest<'a>(name: &str, names: &'a [String]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (strsim::jaro_winkler(name, n), n.as_str()))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

/// The kubeconfig a connection reads, for messages: the path, or where
/// kubectl would look.
pub fn kubeconfig_source(path: Option<&Path>) -> String {
    match (
        path,
        std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()),
    ) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(v)) => format!("$KUBECONFIG={}", v.to_string_lossy()),
        (None, None) => "~/.kube/config".to_string(),
    }
}

async fn open(
    kubeconfig: &Kubeconfig,
    target: &Target,
    path: Option<&Path>,
) -> Result<Connection, ClusterError> {
    let context_error = |reason: String| ClusterError::Context {
        cluster: target.cluster.clone(),
        context: target.context.clone(),
        kubeconfig: kubeconfig_source(path),
        reason,
    };
    let Some(kubeconfig) = only_context(kubeconfig, &target.context) else {
        let known: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
        let reason = if known.is_empty() {
            "the kubeconfig has no contexts".to_string()
        } else {
            let meant = closest(&target.context, &known)
                .map(|c| format!("did you mean `{}`? ", crate::rendered::shown(c)))
                .unwrap_or_default();
            format!("{meant}the contexts there are: {}", listed(&known))
        };
        return Err(context_error(reason));
    };
    let options = KubeConfigOptions {
        context: Some(target.context.clone()),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| context_error(unusable(&e)))?;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(60));
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| {
            context_error(match &e {
                // The client's key and certificate are decoded here.
                kube::Error::InferKubeconfig(k) => unusable(k),
                other => other.to_string(),
            })
        })?
        .with_layer(&tower::util::MapResponseLayer::new(capped))
        .build();
    Ok(Connection {
        client,
        server,
        cluster: target.cluster.clone(),
        context: target.context.clone(),
    })
}

/// Why a context's settings cannot be used, quoting nothing of its
/// credentials: kube's base64 error names a byte of the key it decodes.
fn unusable(e: &kube::config::KubeconfigError) -> String {
    use kube::config::{KubeconfigError as E, LoadDataError as D};
    let (what, data) = match e {
        E::LoadCertificateAuthority(d) => (
            "the cluster's certificate authority (`certificate-authority-data` or `certificate-authority`)",
            d,
        ),
        E::LoadClientCertificate(d) => (
            "the user's client certificate (`client-certificate-data` or `client-certificate`)",
            d,
        ),
        E::LoadClientKey(d) => (
            "the user's client key (`client-key-data` or `client-key`)",
            d,
        ),
        other => return other.to_string(),
    };
    match data {
        D::DecodeBase64(_) => format!("{what} is not valid base64"),
        other => format!("{what} cannot be loaded: {other}"),
    }
}

/// A copy of `kubeconfig` with only `context`, its cluster and its user
/// (and the file-wide settings), or `None` when it has no such context.
fn only_context(kubeconfig: &Kubeconfig, context: &str) -> Option<Kubeconfig> {
    let named = kubeconfig.contexts.iter().find(|c| c.name == context)?;
    let (cluster, user) = match &named.context {
        Some(c) => (Some(c.cluster.as_str()), c.user.as_deref()),
        None => (None, None),
    };
    Some(Kubeconfig {
        preferences: kubeconfig.preferences.clone(),
        clusters: kubeconfig
            .clusters
            .iter()
            .filter(|c| Some(c.name.as_str()) == cluster)
            .cloned()
            .collect(),
        auth_infos: kubeconfig
            .auth_infos
            .iter()
            .filter(|u| Some(u.name.as_str()) == user)
            .cloned()
            .collect(),
        contexts: vec![named.clone()],
        current_context: Some(context.to_string()),
        extensions: kubeconfig.extensions.clone(),
        kind: kubeconfig.kind.clone(),
        api_version: kubeconfig.api_version.clone(),
        other: kubeconfig.other.clone(),
    })
}

/// How many times a call is tried in all.
const ATTEMPTS: u32 = 6;
/// How many times a preflight's `GET /version` is tried in all.
const PREFLIGHT_ATTEMPTS: u32 = 3;

/// Whether an error is worth another try, and after how long at least:
/// 429 (with the server's retry-after), 5xx and failures to connect are;
/// any other 4xx is an answer, not a hiccup.
fn retry_after(err: &kube::Error) -> Option<Option<Duration>> {
    match err {
        kube::Error::Api(status) => {
            let code = status.code;
            if code == 429 || code >= 500 {
                let hint = status
                    .details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(u64::from(s)));
                Some(hint)
            } else {
                None
            }
        }
        // An answer too large is as large the next time.
        kube::Error::HyperError(_) | kube::Error::Service(_) if too_large(err) => None,
        kube::Error::HyperError(_) | kube::Error::Service(_) => Some(None),
        _ => None,
    }
}

/// Runs `op` up to [`ATTEMPTS`] times with exponential backoff (100 ms
/// doubling, at most 5 s; the server's retry-after when it gives one).
pub async fn with_retries<T, F, Fut>(op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    with_attempts(ATTEMPTS, op).await
}

/// [`with_retries`] with `attempts` tries in all.
async fn with_attempts<T, F, Fut>(attempts: u32, mut op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let Some(hint) = retry_after(&e) else {
                    return Err(e);
                };
                if attempt >= attempts {
                    return Err(e);
                }
                tokio::time::sleep(hint.unwrap_or(delay).min(Duration::from_secs(30))).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_context_names_the_closest() {
        let names = vec!["kind-cluster1".to_string(), "prod-east".to_string()];
        assert_eq!(closest("kind-clsuter1", &names), Some("kind-cluster1"));
        assert_eq!(closest("prod-est", &names), Some("prod-east"));
        assert_eq!(closest("staging", &names), None);
    }
    use kube::core::Status;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "X").with_code(code).boxed())
    }

    #[test]
    fn what_is_retried() {
        assert_eq!(retry_after(&api(429)), Some(None));
        assert_eq!(retry_after(&api(500)), Some(None));
        assert_eq!(retry_after(&api(503)), Some(None));
        assert_eq!(retry_after(&api(404)), None);
        assert_eq!(retry_after(&api(409)), None);
        let s: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 429, "reason": "TooManyRequests", "message": "slow down",
            "details": {"retryAfterSeconds": 3}
        }))
        .unwrap();
        assert_eq!(
            retry_after(&kube::Error::Api(s.boxed())),
            Some(Some(Duration::from_secs(3)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_retries_then_the_error() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retries(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(api(500))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retries(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(api(403))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "4xx is not retried");
        let calls = AtomicU32::new(0);
        let r = with_retries(|| async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(api(429))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
    }
}

#[cfg(test)]
mod reason_tests {
    use super::*;

    /// A closed port reads as "connection refused", not kube's
    /// `ServiceError: client error (Connect)`.
    #[tokio::test]
    async fn a_closed_port_is_named_by_its_cause() {
        let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let conn = Connection {
            client,
            server: "https://127.0.0.1:1".into(),
            cluster: "c1".into(),
            context: "kind-c1".into(),
        };
        let e = conn.ping().await.unwrap_err();
        let text = e.to_string();
        assert_eq!(
            text,
            "cluster `c1` (context `kind-c1`, https://127.0.0.1:1): reading the API server \
             version (GET /version) failed: cannot connect: connection refused"
        );
        assert!(
            std::error::Error::source(&e).is_none(),
            "the cause is said, not chained"
        );
    }
}

#[cfg(test)]
mod kubeconfig_tests {
    use super::*;

    const TOKEN: &str = "s3cret-bearer-token-0123456789";
    const KEY: &str = "c2VjcmV0LWNsaWVudC1rZXktZGF0YQ==";

    /// A kubeconfig whose YAML breaks right after its credentials.
    fn broken() -> String {
        format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: {TOKEN}\n    \
             client-key-data: {KEY}\n    oops: a: b\ncontexts: []\n"
        )
    }

    /// The YAML library's message quotes the lines around the mistake: the
    /// message names the file and the place, never the content.
    #[test]
    fn a_broken_kubeconfig_is_named_by_place_not_content() {
        let path = std::env::temp_dir().join(format!(
            "mesh-broken-kubeconfig-{}.yaml",
            std::process::id()
        ));
        std::fs::write(&path, broken()).unwrap();
        let problem = read_file(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        let text = problem.to_string();
        assert!(
            matches!(problem, KubeconfigProblem::NotYaml { .. }),
            "{problem:?}"
        );
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(text.contains("is not valid YAML"), "{text}");
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!text.contains(KEY), "{text}");
        assert!(!format!("{problem:?}").contains(TOKEN), "{problem:?}");
    }

    #[test]
    fn only_a_known_key_of_the_line_is_named() {
        let text = broken();
        assert_eq!(key_on_line(&text, 6), Some("token"));
        assert_eq!(key_on_line(&text, 7), Some("client-key-data"));
        assert_eq!(key_on_line(&text, 4), Some("name"));
        assert_eq!(key_on_line(&text, 8), None, "`oops` is no kubeconfig key");
        assert_eq!(key_on_line("s3cret: x\n", 1), None);
        assert_eq!(key_on_line(&text, 0), None);
        assert_eq!(key_on_line(&text, 99), None);
    }

    /// kube's base64 error names a byte of the key it could not decode:
    /// the message names the key instead.
    #[tokio::test]
    async fn a_client_key_that_is_not_base64_is_named_by_its_key() {
        let kc = Kubeconfig::from_yaml(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    \
             server: https://127.0.0.1:1\nusers:\n- name: u\n  user:\n    \
             client-certificate-data: \"~~~~\"\n    client-key-data: \"~~~~\"\ncontexts:\n\
             - name: x\n  context: {cluster: c, user: u}\n",
        )
        .unwrap();
        let target = Target {
            cluster: "c1".into(),
            context: "x".into(),
            kubeconfig: None,
        };
        let e = open(&kc, &target, Some(Path::new("test-kubeconfig")))
            .await
            .err()
            .expect("an identity that is not base64 is refused");
        let text = e.to_string();
        assert!(text.contains("is not valid base64"), "{text}");
        assert!(text.contains("`client-"), "{text}");
        assert!(
            !text.contains("Invalid symbol") && !text.contains("126"),
            "{text}"
        );
    }

    #[test]
    fn the_message_says_where_and_what_to_do() {
        assert_eq!(
            not_yaml("/k/config", &Some((8, 7)), &Some("token")),
            "/k/config:8:7 (at the key `token`) is not valid YAML for a kubeconfig (broken \
             syntax, or a value of the wrong type): fix the file at that place. Its content \
             is not shown, since a kubeconfig holds credentials"
        );
        assert!(not_yaml("/k/config", &None, &None).starts_with("/k/config is not valid YAML"));
    }
}
