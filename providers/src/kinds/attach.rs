//! `R/attach`: what `istioctl create-remote-secret --name R | kubectl apply`
//! in the primary does, done natively.

use crate::rendered::Rendered;
use serde_json::{Map, Value, json};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The remote cluster's name (the Secret's name, annotation and data key).
    pub remote: String,
    /// The remote's kubeconfig context (its server is the default API URL).
    pub remote_context: String,
    /// The primary, where the Secret is written.
    pub primary: String,
    /// `api_server` from the mesh file, if set.
    pub api_server: Option<String>,
    /// The remote's own kubeconfig (its `kubeconfig` key), if set.
    pub remote_kubeconfig: Option<PathBuf>,
    /// The reader ServiceAccount whose token the primary uses:
    /// `values.global.readerServiceAccount` of the remote (Istio's chart
    /// then expects the user to create it), else Istio's default.
    pub reader: Reader,
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
            namespace: "istio-system".into(),
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
}

/// The Secret the primary will hold, as `istioctl create-remote-secret`
/// prints it, with its one data key described rather than shown: the
/// kubeconfig (and its token) is made at apply time and never rendered.
pub fn render(input: &Input) -> Rendered {
    let server = match &input.api_server {
        Some(s) => s.clone(),
        None => format!("(the server of context {})", input.remote_context),
    };
    let mut data = Map::new();
    data.insert(
        input.remote.clone(),
        Value::from(format!(
            "(sensitive: kubeconfig for {server} with the token of {}/{} in {}, made at apply time)",
            input.reader.namespace, input.reader.name, input.remote
        )),
    );
    Rendered {
        documents: vec![json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": format!("istio-remote-secret-{}", input.remote),
                "namespace": "istio-system",
                "labels": {"istio/multiCluster": "true"},
                "annotations": {"networking.istio.io/cluster": input.remote},
            },
            "stringData": data,
        })],
        unknown: false,
    }
}

// ---- against a cluster ----

use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::kind::{Adoption, Kind, OutputLookup};
use crate::observe::Observation;
use crate::rendered::{Sensitive, Target};
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use std::collections::BTreeMap;

const DEFAULT_READER: &str = "istio-reader-service-account";
const SA_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// The token Secret `istioctl create-remote-secret` makes for a reader.
fn token_secret_name(reader: &Reader) -> String {
    format!("{}-istio-remote-secret-token", reader.name)
}

/// The remote's filled token Secrets of `reader`: `(name, token, ca.crt)`.
async fn reader_tokens(
    remote: &crate::cluster::Connection,
    reader: &Reader,
) -> Result<Vec<(String, Sensitive, Vec<u8>)>, StepError> {
    let secrets: Api<Secret> = Api::namespaced(remote.client.clone(), &reader.namespace);
    let lp = ListParams::default().fields("type=kubernetes.io/service-account-token");
    let listed = remote
        .call("listing token Secrets", || secrets.list(&lp))
        .await?;
    Ok(listed
        .items
        .into_iter()
        .filter(|s| s.type_.as_deref() == Some("kubernetes.io/service-account-token"))
        .filter(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SA_ANNOTATION))
                .map(String::as_str)
                == Some(reader.name.as_str())
        })
        .filter_map(|s| {
            let data = s.data.as_ref()?;
            let token = String::from_utf8(data.get("token")?.0.clone()).ok()?;
            let ca = data.get("ca.crt")?.0.clone();
            (!token.is_empty() && !ca.is_empty()).then(|| {
                (
                    s.metadata.name.clone().unwrap_or_default(),
                    Sensitive::new(token),
                    ca,
                )
            })
        })
        .collect())
}

/// The reader token and CA of the remote, found or made as
/// `istioctl create-remote-secret` does.
async fn reader_credentials(
    cx: Ctx<'_>,
    remote: &crate::cluster::Connection,
    reader: &Reader,
) -> Result<(Sensitive, Vec<u8>), StepError> {
    let ns = reader.namespace.as_str();
    let reader_name = reader.name.as_str();
    let token_secret = token_secret_name(reader);
    let sas: Api<ServiceAccount> = Api::namespaced(remote.client.clone(), ns);
    if remote
        .call("reading the reader ServiceAccount", || {
            sas.get_opt(reader_name)
        })
        .await?
        .is_none()
    {
        let hint = if reader.is_default() {
            format!(
                "install Istio's remote profile there first (the `{}/install-remote` step does)",
                remote.cluster
            )
        } else {
            "values.global.readerServiceAccount names it, so Istio does not create it: create it \
             (with the reader's ClusterRole bound) before applying"
                .to_string()
        };
        return Err(StepError::Failed(format!(
            "cluster `{}` has no ServiceAccount {ns}/{reader_name}: {hint}",
            remote.cluster
        )));
    }
    let secrets: Api<Secret> = Api::namespaced(remote.client.clone(), ns);
    let lp = ListParams::default().fields("type=kubernetes.io/service-account-token");
    let listed = remote
        .call("listing token Secrets", || secrets.list(&lp))
        .await?;
    let mut name = listed
        .items
        .iter()
        .filter(|s| s.type_.as_deref() == Some("kubernetes.io/service-account-token"))
        .find(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SA_ANNOTATION))
                .map(String::as_str)
                == Some(reader_name)
        })
        .and_then(|s| s.metadata.name.clone());
    if name.is_none() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": token_secret, "namespace": ns, "annotations": {SA_ANNOTATION: reader_name}}
        })).expect("a valid Secret");
        let created = remote
            .call("creating the reader token Secret", || async {
                match secrets.create(&PostParams::default(), &secret).await {
                    Err(kube::Error::Api(s)) if s.code == 409 => secrets.get(&token_secret).await,
                    other => other,
                }
            })
            .await?;
        name = created.metadata.name;
    }
    let name = name.unwrap_or_else(|| token_secret.clone());
    cx.say(&format!(
        "waiting for the token of {ns}/{name} in {}…",
        remote.cluster
    ));
    let ar = crate::k8s::resource_of(&serde_json::json!({"apiVersion": "v1", "kind": "Secret"}))
        .expect("known kind");
    let filled = |obj: &kube::api::DynamicObject| {
        let data = obj.data.get("data")?;
        let token = data.get("token")?.as_str()?;
        let ca = data.get("ca.crt")?.as_str()?;
        let b64 = base64::engine::general_purpose::STANDARD;
        match (b64.decode(token), b64.decode(ca)) {
            (Ok(t), Ok(c)) if !t.is_empty() && !c.is_empty() => Some(Ok((
                Sensitive::new(String::from_utf8_lossy(&t).into_owned()),
                c,
            ))),
            _ => None,
        }
    };
    let wait = cx.env.wait_timeout;
    match crate::k8s::wait_for(remote, &ar, Some(ns), &name, wait, filled).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StepError::Failed(e)),
        Err(_) => Err(StepError::Failed(format!(
            "the token Secret {ns}/{name} in cluster `{}` got no token within {} s: \
             is the token controller running (kube-controller-manager)?",
            remote.cluster,
            wait.as_secs()
        ))),
    }
}

/// The kubeconfig `istioctl create-remote-secret` would write.
fn kubeconfig(remote: &str, server: &str, ca: &[u8], token: &Sensitive) -> Sensitive {
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

/// The remote's side of the link: where the reader token is.
pub fn remote_target(input: &Input) -> Target {
    Target {
        cluster: input.remote.clone(),
        context: input.remote_context.clone(),
        kubeconfig: input.remote_kubeconfig.clone(),
    }
}

/// The kind.
pub struct Attach;

impl Kind for Attach {
    const NAME: &'static str = "attach";
    type Input = Input;

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn removes(cluster: &str, holder: Option<&str>, _: &[Value]) -> String {
        let holder = holder.unwrap_or("its primary");
        format!(
            "Secret istio-system/istio-remote-secret-{cluster} in {holder}: \
             {holder}'s istiod stops seeing {cluster}'s services"
        )
    }

    /// Reads the reader token in the remote and writes Secret
    /// `istio-remote-secret-<R>` in the primary. The token goes nowhere else.
    async fn apply(
        cx: Ctx<'_>,
        input: &Input,
        rendered: &Rendered,
        _previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        let remote = cx.env.clusters.connect(&remote_target(input)).await?;
        let (token, ca) = reader_credentials(cx, &remote, &input.reader).await?;
        let server = input
            .api_server
            .clone()
            .unwrap_or_else(|| remote.server.clone());
        let mut log = String::new();
        if server.contains("127.0.0.1") || server.contains("localhost") {
            log.push_str(&format!(
            "warning: the API server address of `{}` is {server}, which is likely unreachable from inside \
             cluster `{}`; set `api_server` for this cluster in the mesh file (kind: the node's address)\n",
            input.remote, input.primary
        ));
        }
        let config = kubeconfig(&input.remote, &server, &ca, &token);
        let mut secret = rendered
            .documents
            .first()
            .cloned()
            .expect("attach renders its Secret");
        if let Some(obj) = secret.as_object_mut() {
            obj.remove("stringData");
            let b64 = base64::engine::general_purpose::STANDARD;
            obj.insert(
                "data".into(),
                serde_json::json!({ input.remote.clone(): b64.encode(config.expose()) }),
            );
        }
        let primary = cx.connect().await?;
        cx.say(&format!(
            "writing Secret istio-system/istio-remote-secret-{} in {}…",
            input.remote, input.primary
        ));
        crate::k8s::apply(&primary, &secret).await?;
        log.push_str(&format!(
        "wrote Secret istio-system/istio-remote-secret-{} in `{}` with a kubeconfig for {server} {config}\n",
        input.remote, input.primary
    ));
        Ok(Applied {
            outputs: BTreeMap::from([(
                "kubeconfig_sha256".to_string(),
                Value::from(config.sha256()),
            )]),
            log,
        })
    }

    /// Drift: the Secret missing, its label or annotation gone, other contents,
    /// or (when the mesh file still has the step) a token that is no longer one
    /// of the remote's reader tokens: a re-created reader ServiceAccount gets a
    /// new token and the old one stops working, although the Secret is as mesh
    /// wrote it.
    async fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        input: Option<&Input>,
    ) -> Result<Observation, StepError> {
        let conn = cx.connect().await?;
        let mut obs = Observation::in_sync(recorded.outputs.clone());
        let Some(doc) = secret_doc(recorded)? else {
            return Ok(obs);
        };
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(live) = crate::k8s::get(&conn, &doc).await? else {
            obs.drift
                .push(format!("Secret istio-system/{name} missing"));
            return Ok(obs);
        };
        let labels = doc.pointer("/metadata/labels").cloned().unwrap_or_default();
        let annotations = doc
            .pointer("/metadata/annotations")
            .cloned()
            .unwrap_or_default();
        let live_meta = serde_json::to_value(&live.metadata).unwrap_or_default();
        if !crate::k8s::contains(live_meta.get("labels").unwrap_or(&Value::Null), &labels) {
            obs.drift.push(format!(
                "Secret istio-system/{name}: label istio/multiCluster changed or removed"
            ));
        }
        if !crate::k8s::contains(
            live_meta.get("annotations").unwrap_or(&Value::Null),
            &annotations,
        ) {
            obs.drift.push(format!(
            "Secret istio-system/{name}: annotation networking.istio.io/cluster changed or removed"
        ));
        }
        let key = annotations
            .get("networking.istio.io/cluster")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let live_kubeconfig = crate::k8s::secret_data(&live, key);
        let live_sha = live_kubeconfig.as_deref().map(crate::rendered::sha256_hex);
        let want = recorded.output_str("kubeconfig_sha256");
        if let (Some(input), Some(live_sha)) = (input, &live_sha)
            && want == Some(live_sha.as_str())
        {
            let kc = live_kubeconfig
                .as_deref()
                .and_then(|bytes| serde_saphyr::from_slice::<Value>(bytes).ok());
            let token = kc.as_ref().and_then(|kc| {
                kc.pointer("/users/0/user/token")
                    .and_then(Value::as_str)
                    .map(|t| Sensitive::new(t.to_string()))
            });
            let remote = cx.env.clusters.connect(&remote_target(input)).await?;
            let current = reader_tokens(&remote, &input.reader).await?;
            // The kubeconfig must reach this cluster: its server and CA.
            let server = input.api_server.as_deref().unwrap_or(&remote.server);
            let live_server = kc
                .as_ref()
                .and_then(|kc| kc.pointer("/clusters/0/cluster/server"))
                .and_then(Value::as_str);
            if live_server != Some(server) {
                obs.drift.push(format!(
                    "Secret istio-system/{name} points at {}, not at `{}`'s API server {server}",
                    live_server.map_or("no server".into(), crate::rendered::shown),
                    input.remote
                ));
            }
            let b64 = base64::engine::general_purpose::STANDARD;
            let live_ca = kc
                .as_ref()
                .and_then(|kc| kc.pointer("/clusters/0/cluster/certificate-authority-data"))
                .and_then(Value::as_str)
                .and_then(|d| b64.decode(d).ok());
            if !current.is_empty()
                && !current
                    .iter()
                    .any(|(_, _, ca)| Some(ca.as_slice()) == live_ca.as_deref())
            {
                obs.drift.push(format!(
                    "Secret istio-system/{name} trusts another CA than `{}`'s",
                    input.remote
                ));
            }
            let still_valid = token
                .as_ref()
                .is_some_and(|t| current.iter().any(|(_, c, _)| c.sha256() == t.sha256()));
            if !still_valid {
                obs.drift.push(format!(
                "Secret istio-system/{name} holds a token that is no longer one of {}/{}'s in `{}` \
                 (the ServiceAccount was re-created?)",
                input.reader.namespace, input.reader.name, input.remote
            ));
            }
        }
        if live_sha.as_deref() != want {
            obs.drift.push(format!(
                "Secret istio-system/{name} has other contents (sha256:{} instead of sha256:{})",
                live_sha
                    .as_deref()
                    .map_or("none", |s| &s[..12.min(s.len())]),
                want.map_or("none", |s| &s[..12.min(s.len())]),
            ));
        }
        Ok(obs)
    }

    /// For `mesh import`: the remote secret in the primary matches when it is
    /// there with mesh's label and annotation, a kubeconfig for the remote's
    /// API server, and a token that is one of the remote's current reader
    /// tokens (what `istioctl create-remote-secret` made); its fingerprint
    /// becomes the recorded output.
    async fn adopt(cx: Ctx<'_>, input: &Input, text: &str) -> Result<Adoption, StepError> {
        let conn = cx.connect().await?;
        let name = format!("istio-remote-secret-{}", input.remote);
        let doc = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "istio-system"}});
        let Some(live) = crate::k8s::get(&conn, &doc).await? else {
            return Ok(Adoption::Differs(vec![format!(
                "Secret istio-system/{name} missing"
            )]));
        };
        let sha = crate::k8s::secret_data(&live, &input.remote)
            .map(|bytes| crate::rendered::sha256_hex(&bytes));
        let Some(sha) = sha else {
            return Ok(Adoption::Differs(vec![format!(
                "Secret istio-system/{name} has no kubeconfig under key `{}`",
                input.remote
            )]));
        };
        // The same checks as a refresh, with the live fingerprint as recorded.
        let outputs = BTreeMap::from([("kubeconfig_sha256".to_string(), Value::from(sha))]);
        let recorded = Recorded {
            input: text,
            outputs: &outputs,
        };
        let obs = Self::read(cx, &recorded, Some(input)).await?;
        Ok(if obs.drift.is_empty() {
            Adoption::Adopted(outputs)
        } else {
            Adoption::Differs(obs.drift)
        })
    }

    /// Deletes the Secret in the primary.
    async fn destroy(cx: Ctx<'_>, recorded: &Recorded<'_>) -> Result<String, StepError> {
        let conn = cx.connect().await?;
        let Some(doc) = secret_doc(recorded)? else {
            return Ok(String::new());
        };
        crate::k8s::delete(&conn, &doc).await?;
        Ok(format!(
            "deleted Secret istio-system/{}\n",
            doc.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ))
    }
}

fn secret_doc(recorded: &Recorded<'_>) -> Result<Option<Value>, StepError> {
    Ok(recorded.documents()?.into_iter().next())
}
