//! Remote secrets: what a control plane holds to read another cluster
//! (`istio-remote-secret-<C>`, a kubeconfig with a reader's token), and
//! the token Secrets in that cluster the tokens come from.
//!
//! One writer and one parser of the kubeconfig, one listing of the token
//! Secrets: `R/attach` writes and revokes with them, its refresh reads with
//! them, and `mesh check` proves with them, so the three never disagree
//! about what a link holds. The token travels as [`Sensitive`] and is never
//! printed.

use crate::cluster::{ClusterError, Connection};
use crate::rendered::Sensitive;
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde_json::{Map, Value};

/// The label on a link's token Secret in the remote cluster: the control
/// plane whose remote secret holds the token.
pub const LINK_LABEL: &str = "mesh/remote-secret-in";
/// A service-account token Secret.
pub const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
/// The ServiceAccount a token Secret is for.
pub const SA_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// Istio's reader ServiceAccount, made by its remote profile.
const DEFAULT_READER: &str = "istio-reader-service-account";

/// The remote secret of cluster `remote`, in istio-system of a control plane.
pub fn secret_name(remote: &str) -> String {
    format!("istio-remote-secret-{remote}")
}

/// A ServiceAccount in the remote: `(namespace, name)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reader {
    pub namespace: String,
    pub name: String,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            namespace: crate::istio::NAMESPACE.into(),
            name: DEFAULT_READER.into(),
        }
    }
}

impl Reader {
    /// The reader a remote's `[cluster.values]` asks for.
    pub fn from_values(values: &Map<String, Value>) -> Reader {
        let get = |k: &str| {
            values
                .get("global")
                .and_then(|g| g.get("readerServiceAccount"))
                .and_then(|r| r.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let d = Reader::default();
        Reader {
            namespace: get("namespace").unwrap_or(d.namespace),
            name: get("name").unwrap_or(d.name),
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Reader::default()
    }

    /// The user its tokens authenticate as.
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The token Secret `istioctl create-remote-secret` makes for it, which
    /// every link into the cluster shared before each had its own.
    pub fn legacy_token_secret(&self) -> String {
        format!("{}-istio-remote-secret-token", self.name)
    }
}

/// The two names a link's token Secret alternates between, in the remote:
/// `istio-reader-token-<Q>` and `istio-reader-token-<Q>-2`, Q the control
/// plane that holds the remote secret. An apply makes the token under the
/// name the remote secret does not hold, so the new token exists before
/// the old one is revoked. At most 19 + 63 + 2 characters (a cluster name
/// is a DNS-1123 label): a Secret name may have 253.
pub fn link_token_names(primary: &str) -> [String; 2] {
    let base = format!("istio-reader-token-{primary}");
    [base.clone(), format!("{base}-2")]
}

/// The kubeconfig `istioctl create-remote-secret` would write.
pub fn kubeconfig(remote: &str, server: &str, ca: &[u8], token: &Sensitive) -> Sensitive {
    let b64 = base64::engine::general_purpose::STANDARD;
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": remote, "cluster": {"certificate-authority-data": b64.encode(ca), "server": server}}],
        "contexts": [{"name": remote, "context": {"cluster": remote, "user": remote}}],
        "current-context": remote,
        "preferences": {},
        "users": [{"name": remote, "user": {"token": token.expose()}}],
    });
    Sensitive::new(serde_saphyr::to_string(&doc).expect("a JSON value serialises as YAML"))
}

/// What a remote secret's kubeconfig says: its server, CA and token.
#[derive(Debug, Clone, Default)]
pub struct Kubeconfig {
    pub server: Option<String>,
    pub ca: Option<Vec<u8>>,
    pub token: Option<Sensitive>,
}

impl Kubeconfig {
    /// The first cluster's server and CA and the first user's token, as
    /// istiod reads them; None for what is not YAML.
    pub fn parse(bytes: &[u8]) -> Option<Kubeconfig> {
        let kc: Value = serde_saphyr::from_slice(bytes).ok()?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Some(Kubeconfig {
            server: kc
                .pointer("/clusters/0/cluster/server")
                .and_then(Value::as_str)
                .map(String::from),
            ca: kc
                .pointer("/clusters/0/cluster/certificate-authority-data")
                .and_then(Value::as_str)
                .and_then(|d| b64.decode(d).ok()),
            token: kc
                .pointer("/users/0/user/token")
                .and_then(Value::as_str)
                .map(|t| Sensitive::new(t.to_string())),
        })
    }
}

/// The remote secret of `remote` in control plane `holder`, as a reference.
pub fn secret_ref(remote: &str) -> Value {
    crate::k8s::object(
        "v1",
        "Secret",
        Some(crate::istio::NAMESPACE),
        &secret_name(remote),
    )
}

/// The kubeconfig in the remote secret of `remote` that `holder` has
/// (None: no such Secret, or no kubeconfig under the key `remote`).
pub async fn held(holder: &Connection, remote: &str) -> Result<Option<Kubeconfig>, ClusterError> {
    let Some(live) = crate::k8s::get(holder, &secret_ref(remote)).await? else {
        return Ok(None);
    };
    Ok(crate::k8s::secret_data(&live, remote).and_then(|b| Kubeconfig::parse(&b)))
}

/// The token in the remote secret of `remote` that `holder` has, if any.
pub async fn held_token(
    holder: &Connection,
    remote: &str,
) -> Result<Option<Sensitive>, ClusterError> {
    Ok(held(holder, remote).await?.and_then(|kc| kc.token))
}

/// A service-account token Secret of the remote, as listed.
#[derive(Debug, Clone)]
pub struct TokenSecret {
    pub name: String,
    /// The ServiceAccount it names.
    pub sa: Option<String>,
    /// Its [`LINK_LABEL`]: the control plane whose link it is, if mesh made it.
    pub link: Option<String>,
    pub token: Option<Sensitive>,
    pub ca: Option<Vec<u8>>,
    /// `metadata.creationTimestamp`, RFC 3339.
    pub created: Option<String>,
    /// The same, in Unix seconds.
    pub created_unix: Option<i64>,
}

impl TokenSecret {
    fn of(s: Secret) -> TokenSecret {
        let data = s.data.unwrap_or_default();
        let field = |k: &str| data.get(k).map(|b| b.0.clone()).filter(|b| !b.is_empty());
        let meta = s.metadata;
        TokenSecret {
            name: meta.name.unwrap_or_default(),
            sa: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(SA_ANNOTATION))
                .cloned(),
            link: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(LINK_LABEL))
                .cloned(),
            token: field("token")
                .and_then(|t| String::from_utf8(t).ok())
                .map(Sensitive::new),
            ca: field("ca.crt"),
            created: serde_json::to_value(&meta.creation_timestamp)
                .ok()
                .and_then(|v| v.as_str().map(String::from)),
            created_unix: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        }
    }

    /// Whether it holds `token` (compared by fingerprint).
    pub fn holds(&self, token: &Sensitive) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| t.sha256() == token.sha256())
    }
}

/// The service-account token Secrets in `namespace` of `conn`.
pub async fn token_secrets(
    conn: &Connection,
    namespace: &str,
) -> Result<Vec<TokenSecret>, ClusterError> {
    let secrets: Api<Secret> = Api::namespaced(conn.client.clone(), namespace);
    let lp = ListParams::default().fields(&format!("type={TOKEN_TYPE}"));
    let listed = conn
        .call("listing token Secrets", || secrets.list(&lp))
        .await?;
    Ok(listed
        .items
        .into_iter()
        .filter(|s| s.type_.as_deref() == Some(TOKEN_TYPE))
        .map(TokenSecret::of)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_written_is_the_kubeconfig_read() {
        let token = Sensitive::new("t0ken".to_string());
        let kc = kubeconfig("cluster2", "https://10.0.0.2:6443", b"CA PEM", &token);
        let read = Kubeconfig::parse(kc.expose().as_bytes()).unwrap();
        assert_eq!(read.server.as_deref(), Some("https://10.0.0.2:6443"));
        assert_eq!(read.ca.as_deref(), Some(&b"CA PEM"[..]));
        assert_eq!(read.token.unwrap().sha256(), token.sha256());
        assert!(Kubeconfig::parse(b"{not yaml").is_none());
        // The secret shows as its fingerprint only.
        assert!(!format!("{kc}").contains("t0ken"));
    }

    #[test]
    fn link_token_names_alternate_and_fit() {
        let [a, b] = link_token_names(&"c".repeat(63));
        assert!(a.len() <= 253 && b.len() <= 253 && a != b);
        assert_eq!(link_token_names("q")[0], "istio-reader-token-q");
        assert_eq!(
            Reader::default().legacy_token_secret(),
            "istio-reader-service-account-istio-remote-secret-token"
        );
        assert_eq!(
            Reader::default().user(),
            "system:serviceaccount:istio-system:istio-reader-service-account"
        );
    }
}
