//! Connections to clusters: one kube client per (kubeconfig, context),
//! reused by every step, and bounded retries for the errors worth retrying.
//!
//! The kubeconfig is, in order: the cluster's own `kubeconfig` key, the
//! global `--kubeconfig`, `$KUBECONFIG` (several paths, merged), or
//! `~/.kube/config`: what kubectl would use.

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
        "cannot read the kubeconfig for cluster `{cluster}` (context `{context}`): {source}. \
         Check the path given by the cluster's `kubeconfig` key, --kubeconfig, $KUBECONFIG or ~/.kube/config"
    )]
    Kubeconfig {
        cluster: String,
        context: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "the kubeconfig has no usable context `{context}` for cluster `{cluster}`: {reason}. \
         `kubectl config get-contexts` lists the contexts; fix `context` in the mesh file"
    )]
    Context {
        cluster: String,
        context: String,
        reason: String,
    },
    /// A document mesh cannot send (from a damaged state record).
    #[error(
        "a recorded document cannot be used: {detail}. The state may be damaged: \
         restore it from its `.backup`"
    )]
    Document { detail: String },
    #[error("cluster `{cluster}` (context `{context}`): {what} failed: {source}")]
    Api {
        cluster: String,
        context: String,
        what: String,
        /// Boxed: kube's error is large, and every step result carries this.
        #[source]
        source: Box<kube::Error>,
    },
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
            what: what.into(),
            source: Box::new(source),
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
            open(&kubeconfig, target).await
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
        let kubeconfig = match path {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        }
        .map_err(|source| ClusterError::Kubeconfig {
            cluster: target.cluster.clone(),
            context: target.context.clone(),
            source,
        })?;
        let kubeconfig = Arc::new(kubeconfig);
        parsed.insert(key, kubeconfig.clone());
        Ok(kubeconfig)
    }
}

/// The context names of a kubeconfig (`path`, else `$KUBECONFIG` or
/// `~/.kube/config`), in file order: what `mesh init` offers.
pub fn context_names(path: Option<&Path>) -> Result<Vec<String>, kube::config::KubeconfigError> {
    let kubeconfig = match path {
        Some(p) => Kubeconfig::read_from(p)?,
        None => Kubeconfig::read()?,
    };
    Ok(kubeconfig.contexts.into_iter().map(|c| c.name).collect())
}

/// How many context names an error about a missing context lists.
const LISTED_CONTEXTS: usize = 20;

async fn open(kubeconfig: &Kubeconfig, target: &Target) -> Result<Connection, ClusterError> {
    let Some(kubeconfig) = only_context(kubeconfig, &target.context) else {
        let known: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .take(LISTED_CONTEXTS)
            .map(|c| c.name.as_str())
            .collect();
        let more = kubeconfig.contexts.len().saturating_sub(LISTED_CONTEXTS);
        let reason = match (known.is_empty(), more) {
            (true, _) => "the kubeconfig has no contexts".to_string(),
            (false, 0) => format!("the contexts there are: {}", known.join(", ")),
            (false, more) => format!(
                "the contexts there are: {} and {more} more",
                known.join(", ")
            ),
        };
        return Err(ClusterError::Context {
            cluster: target.cluster.clone(),
            context: target.context.clone(),
            reason,
        });
    };
    let options = KubeConfigOptions {
        context: Some(target.context.clone()),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| ClusterError::Context {
            cluster: target.cluster.clone(),
            context: target.context.clone(),
            reason: e.to_string(),
        })?;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(60));
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = kube::Client::try_from(config).map_err(|e| ClusterError::Context {
        cluster: target.cluster.clone(),
        context: target.context.clone(),
        reason: e.to_string(),
    })?;
    Ok(Connection {
        client,
        server,
        cluster: target.cluster.clone(),
        context: target.context.clone(),
    })
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
        kube::Error::HyperError(_) | kube::Error::Service(_) => Some(None),
        _ => None,
    }
}

/// Runs `op` up to [`ATTEMPTS`] times with exponential backoff (100 ms
/// doubling, at most 5 s; the server's retry-after when it gives one).
pub async fn with_retries<T, F, Fut>(mut op: F) -> Result<T, kube::Error>
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
                if attempt >= ATTEMPTS {
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
