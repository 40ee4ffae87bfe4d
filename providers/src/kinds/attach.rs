//! `R/attach`: what `istioctl create-remote-secret --name R | kubectl apply`
//! in the primary does, done natively.

use crate::istiod_clients;
use crate::k8s::MANAGED_BY;
use crate::remote_secret::{self, SA_ANNOTATION, TOKEN_TYPE, TokenSecret, token_secrets};
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

pub use crate::remote_secret::{LINK_LABEL, Reader, link_token_names};

/// The Secret the primary will hold, as `istioctl create-remote-secret`
/// prints it, with its one data key described rather than shown: the
/// kubeconfig (and its token) is made at apply time and never rendered.
pub fn render(input: &Input) -> Rendered {
    let server = match &input.api_server {
        Some(s) => s.clone(),
        None => format!("(the server of context {})", input.remote_context),
    };
    let token = &link_token_names(&input.primary)[0];
    let mut data = Map::new();
    data.insert(
        input.remote.clone(),
        Value::from(format!(
            "(sensitive: kubeconfig for {server} with the token of {}/{} in {}, made at apply time \
             in the link's own token Secret, the next document, which lives in {})",
            input.reader.namespace, input.reader.name, input.remote, input.remote
        )),
    );
    Rendered {
        documents: vec![json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": remote_secret::secret_name(&input.remote),
                "namespace": crate::istio::NAMESPACE,
                "labels": {crate::istio::MULTICLUSTER_LABEL: "true"},
                "annotations": {crate::istio::CLUSTER_ANNOTATION: input.remote},
            },
            "stringData": data,
        }), token_document(input, token)],
        unknown: false,
    }
}

/// The link's token Secret in the remote, named `name`: a
/// service-account token of the reader, which the token controller fills.
fn token_document(input: &Input, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": input.reader.namespace,
            "labels": {MANAGED_BY: crate::k8s::MESH, LINK_LABEL: input.primary},
            "annotations": {SA_ANNOTATION: input.reader.name},
        },
        "type": TOKEN_TYPE,
    })
}

// ---- against a cluster ----

use crate::cluster::Connection;
use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::access::{self, Access, Need};
use crate::kind::{Adoption, Kind, OutputLookup};
use crate::observe::Observation;
use crate::rendered::{Sensitive, Target};
use base64::Engine as _;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use std::collections::BTreeMap;
use std::time::Duration;

const NS: &str = crate::istio::NAMESPACE;

/// The reader ServiceAccount must exist: Istio's remote profile makes the
/// default one, the user a named one.
async fn ensure_reader(remote: &Connection, reader: &Reader) -> Result<(), StepError> {
    let sas: Api<ServiceAccount> = Api::namespaced(remote.client.clone(), &reader.namespace);
    if remote
        .call("reading the reader ServiceAccount", || {
            sas.get_opt(&reader.name)
        })
        .await?
        .is_some()
    {
        return Ok(());
    }
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
    Err(StepError::Failed(format!(
        "cluster `{}` has no ServiceAccount {}/{}: {hint}",
        remote.cluster, reader.namespace, reader.name
    )))
}

/// A reference to Secret `namespace/name`, for the object helpers.
fn secret_ref(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}})
}

/// Creates the link's token Secret `doc` and waits for the token
/// controller to fill it: its token and CA.
async fn new_token(
    cx: Ctx<'_>,
    remote: &Connection,
    doc: &Value,
) -> Result<(Sensitive, Vec<u8>), StepError> {
    let ns = doc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(NS);
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if !crate::k8s::create(remote, doc).await? {
        return Err(StepError::Failed(format!(
            "Secret {ns}/{name} in cluster `{}` appeared while mesh was making it: \
             is another apply running? Run the command again",
            remote.cluster
        )));
    }
    cx.say(&format!(
        "waiting for the token of {ns}/{name} in {}…",
        remote.cluster
    ));
    let ar = crate::k8s::resource_of(doc).expect("known kind");
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
    match crate::k8s::wait_for(remote, &ar, Some(ns), name, wait, filled).await {
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

/// Why the token Secret `shared`, which the remote secret in `input.primary`
/// held before it got a token of its own, must stay: another control plane
/// of the mesh still holds its token, or mesh cannot tell. None: no remote
/// secret of the mesh holds it any more.
async fn shared_still_needed(
    cx: Ctx<'_>,
    input: &Input,
    shared: &Sensitive,
) -> Option<String> {
    let holders = cx.env.fleet.holders.get(&input.remote)?;
    for holder in holders.iter().filter(|t| t.cluster != input.primary) {
        let held = match cx.env.clusters.connect(holder).await {
            Ok(conn) => remote_secret::held_token(&conn, &input.remote).await,
            Err(e) => Err(e),
        };
        match held {
            Ok(Some(t)) if t.sha256() == shared.sha256() => {
                return Some(format!(
                    "the remote secret in `{}` still holds it; the apply that gives that link its own token deletes it",
                    holder.cluster
                ));
            }
            // It holds another token now: its istiods must have taken that.
            Ok(Some(_)) => {
                if let Some(why) = holder_not_synced(cx, holder, &input.remote).await {
                    return Some(why);
                }
            }
            Ok(None) => {}
            Err(e) => {
                return Some(format!(
                    "`{}`'s remote secret could not be read ({e}); the next apply looks again",
                    holder.cluster
                ));
            }
        }
    }
    None
}

/// Why `holder`, whose remote secret of `remote` no longer holds the
/// shared token, may still use it: one of its istiods has not taken the
/// secret since it was last written (within `[credentials] sync_timeout`),
/// or mesh cannot tell. None: every istiod there took it.
async fn holder_not_synced(cx: Ctx<'_>, holder: &Target, remote: &str) -> Option<String> {
    let h = &holder.cluster;
    let conn = match cx.env.clusters.connect(holder).await {
        Ok(c) => c,
        Err(e) => return Some(format!("`{h}` could not be reached ({e}); the next apply looks again")),
    };
    let since = match crate::k8s::get(&conn, &remote_secret::secret_ref(remote)).await {
        Ok(Some(s)) => {
            let sha = kubeconfig_sha(&s, remote);
            if istiod_clients::known_taken(&s.metadata, &sha) {
                return None;
            }
            istiod_clients::since_written(&s.metadata, &sha)
        }
        // No remote secret there: its istiods hold no client of the remote.
        Ok(None) => return None,
        Err(e) => return Some(format!("`{h}`'s remote secret could not be read ({e}); the next apply looks again")),
    };
    match istiod_clients::wait_taken(&conn, remote, &since, cx.env.sync_timeout).await {
        Ok(Ok(_)) => None,
        Ok(Err(outstanding)) => Some(format!(
            "`{h}`'s istiod may still use it: {}; the next apply looks again",
            istiod_clients::describe(&outstanding)
        )),
        Err(e) => Some(format!("`{h}`'s istiod pods could not be listed ({e}); the next apply looks again")),
    }
}

/// Revokes the token Secret `shared` all links to the remote shared, once
/// no other control plane of the mesh holds its token; else says why it
/// stays. Only the reader's token Secret under istioctl's name
/// ([`Reader::legacy_token_secret`]) or labelled mesh's is revoked: a
/// remote secret edited to hold another token (another ServiceAccount's,
/// or one the user made for the reader) never makes mesh delete its
/// Secret; the log says it was kept, and why.
async fn revoke_shared(
    cx: Ctx<'_>,
    remote: &Connection,
    input: &Input,
    shared: &TokenSecret,
    log: &mut String,
) -> Result<(), StepError> {
    let Some(t) = &shared.token else {
        return Ok(());
    };
    let ns = input.reader.namespace.as_str();
    match shared_verdict(remote, input, shared).await? {
        Shared::Gone => return Ok(()),
        Shared::Kept(why) => {
            log.push_str(&format!(
                "kept token Secret {ns}/{} in `{}`: {why}; mesh revokes only the reader token the \
                 links shared, never another token Secret\n",
                shared.name, input.remote
            ));
            return Ok(());
        }
        Shared::Revocable => {}
    }
    match shared_still_needed(cx, input, t).await {
        None if !cx.env.fleet.holders.is_empty() => {
            crate::k8s::delete(remote, &secret_ref(ns, &shared.name)).await?;
            log.push_str(&format!(
                "revoked the reader token the links shared: deleted Secret {ns}/{} in `{}` \
                 (no remote secret of the mesh holds it any more)\n",
                shared.name, input.remote
            ));
        }
        None => log.push_str(&format!(
            "kept the shared token Secret {ns}/{} in `{}`: this command does not know the \
             mesh's other control planes\n",
            shared.name, input.remote
        )),
        Some(why) => log.push_str(&format!(
            "kept the shared token Secret {ns}/{} in `{}`: {why}\n",
            shared.name, input.remote
        )),
    }
    Ok(())
}

/// Whether a token Secret a link held before its own is the reader token
/// the links shared, which mesh may revoke.
enum Shared {
    Revocable,
    /// Not that token: why.
    Kept(String),
    /// No longer there: nothing to revoke.
    Gone,
}

/// Whether `shared` is the reader token the links shared: a token of the
/// reader, under istioctl's name or labelled mesh's (read live).
async fn shared_verdict(
    remote: &Connection,
    input: &Input,
    shared: &TokenSecret,
) -> Result<Shared, StepError> {
    let reader = input.reader.name.as_str();
    match shared.sa.as_deref() {
        Some(sa) if sa == reader => {}
        Some(sa) => {
            return Ok(Shared::Kept(format!(
                "it is a token of ServiceAccount `{sa}`, not of the reader `{reader}`"
            )));
        }
        None => {
            return Ok(Shared::Kept(format!(
                "it names no ServiceAccount ({SA_ANNOTATION}), not the reader `{reader}`"
            )));
        }
    }
    let legacy = input.reader.legacy_token_secret();
    if shared.name == legacy {
        return Ok(Shared::Revocable);
    }
    let doc = secret_ref(&input.reader.namespace, &shared.name);
    Ok(match crate::k8s::get(remote, &doc).await? {
        None => Shared::Gone,
        Some(live) if crate::k8s::managed_by_mesh(&live.metadata) => Shared::Revocable,
        Some(_) => Shared::Kept(format!(
            "it is neither istioctl's token Secret of the reader ({legacy}) nor labelled \
             {MANAGED_BY}: {}",
            crate::k8s::MESH
        )),
    })
}

/// Why a live token Secret (its metadata `meta`) is not one mesh made for
/// the link held in control plane `holder` (None: it is): it must be
/// labelled mesh's, with `holder` as its [`LINK_LABEL`], and, when `reader`
/// is given, be a token of that ServiceAccount (pure).
fn not_link_token(
    meta: &kube::api::ObjectMeta,
    holder: &str,
    reader: Option<&str>,
) -> Option<String> {
    let mut why = Vec::new();
    if !crate::k8s::managed_by_mesh(meta) {
        why.push(format!("it is not labelled {MANAGED_BY}: {}", crate::k8s::MESH));
    }
    let link = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LINK_LABEL))
        .map(String::as_str);
    match link {
        Some(q) if q == holder => {}
        Some(q) => why.push(format!(
            "its {LINK_LABEL} label is `{q}`, not `{holder}` (another link's)"
        )),
        None => why.push(format!("it has no {LINK_LABEL} label")),
    }
    let sa = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(SA_ANNOTATION))
        .map(String::as_str);
    match (reader, sa) {
        (Some(r), Some(s)) if r != s => why.push(format!(
            "it is a token of ServiceAccount `{s}`, not of the reader `{r}`"
        )),
        (Some(r), None) => why.push(format!(
            "it names no ServiceAccount ({SA_ANNOTATION}), not the reader `{r}`"
        )),
        _ => {}
    }
    (!why.is_empty()).then(|| why.join(", and "))
}

/// Clears `name`, the name the link's new token takes, in the reader's
/// namespace of the remote. A Secret there is not what the remote secret
/// holds (it holds the other name), so nothing of the link uses it: mesh
/// deletes it when it made it for this link (an interrupted apply left
/// it). Anything else is in the way, and the step fails without deleting
/// it, saying what makes it not mesh's and what to do.
async fn clear_new_name(
    cx: Ctx<'_>,
    primary: &Connection,
    remote: &Connection,
    input: &Input,
    name: &str,
    log: &mut String,
) -> Result<(), StepError> {
    let ns = input.reader.namespace.as_str();
    let stale = secret_ref(ns, name);
    let Some(live) = crate::k8s::get(remote, &stale).await? else {
        return Ok(());
    };
    let reader = Some(input.reader.name.as_str());
    if let Some(why) = not_link_token(&live.metadata, &input.primary, reader) {
        return Err(StepError::Failed(format!(
            "Secret {ns}/{name} in cluster `{}` is in the way of the link's new token (mesh makes \
             it under that name), and it is not mesh's: {why}. mesh deletes only the token Secrets \
             it made for this link, so it was left as it is. If nothing needs it, remove it by hand \
             (`kubectl --context {} -n {ns} delete secret {name}`), or re-create what needs it under \
             another name; then run the command again",
            input.remote, remote.context
        )));
    }
    // Made before the remote secret was last written: the secret may have
    // held it until then (an earlier apply wrote the secret and stopped
    // before revoking it), so istiod's old client may still use it. With
    // no remote secret, istiod holds no client of the remote at all.
    let secret = crate::k8s::get(primary, &remote_secret::secret_ref(&input.remote)).await?;
    let sha = secret
        .as_ref()
        .map(|s| kubeconfig_sha(s, &input.remote))
        .unwrap_or_default();
    let since = secret
        .as_ref()
        .map(|s| istiod_clients::since_written(&s.metadata, &sha))
        .unwrap_or_default();
    let known = secret
        .as_ref()
        .is_some_and(|s| istiod_clients::known_taken(&s.metadata, &sha));
    let made = live.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let maybe_held = match (&secret, since.written, made) {
        (None, _, _) => false,
        (Some(_), Some(w), Some(m)) => m <= w,
        (Some(_), _, _) => true,
    };
    if maybe_held && !known {
        log.push_str(&until_taken(cx, primary, input, &since, &sha, Some(name)).await?);
    }
    if let Err(e) = crate::k8s::delete_and_wait(remote, &stale, cx.env.wait_timeout).await? {
        return Err(StepError::Failed(e));
    }
    let why = if maybe_held {
        "the link's token before an earlier apply wrote the remote secret and stopped"
    } else {
        "left by an interrupted apply"
    };
    log.push_str(&format!(
        "deleted the unused token Secret {ns}/{name} in `{}` ({why})\n",
        input.remote
    ));
    Ok(())
}

/// The recorded outputs of a link whose remote secret holds `config`, with
/// the token of `name` (fingerprints only).
fn link_outputs(
    input: &Input,
    config: &Sensitive,
    name: &str,
    token: &Sensitive,
) -> BTreeMap<String, Value> {
    let ns = &input.reader.namespace;
    BTreeMap::from([
        ("kubeconfig_sha256".to_string(), Value::from(config.sha256())),
        ("token_secret".to_string(), Value::from(format!("{ns}/{name}"))),
        ("token_sha256".to_string(), Value::from(token.sha256())),
        ("token_cluster".to_string(), Value::from(input.remote.clone())),
        ("token_context".to_string(), Value::from(input.remote_context.clone())),
    ])
}

/// Revokes what the link held before the remote secret got the token of
/// `name`: its other token Secret, and the token all links shared once no
/// remote secret holds it (the one this link held, `held_by`, or, when an
/// interrupted apply wrote the link's own token but did not get this far,
/// the one istioctl names).
async fn revoke_held_before(
    cx: Ctx<'_>,
    remote: &Connection,
    input: &Input,
    secrets: &[TokenSecret],
    held_by: Option<TokenSecret>,
    name: &str,
    log: &mut String,
) -> Result<(), StepError> {
    revoke_previous(remote, input, secrets, name, log).await?;
    let shared = held_by.filter(|s| s.link.is_none()).or_else(|| {
        let istioctl = input.reader.legacy_token_secret();
        secrets
            .iter()
            .find(|s| s.name == istioctl && s.link.is_none())
            .cloned()
    });
    if let Some(shared) = shared {
        revoke_shared(cx, remote, input, &shared, log).await?;
    }
    Ok(())
}

/// What an apply finds of the link before it writes anything.
#[derive(Clone, Copy)]
struct Earlier<'a> {
    primary: &'a Connection,
    remote: &'a Connection,
    secrets: &'a [TokenSecret],
    /// The token Secret whose token the remote secret holds.
    held_by: Option<&'a TokenSecret>,
    /// The link's other token name: the one this apply would make.
    previous: &'a str,
}

/// An earlier apply wrote the remote secret with the link's new token and
/// stopped before revoking the previous one (it was killed, or istiod had
/// not taken the secret within `[credentials] sync_timeout`): the remote
/// secret holds one of the link's tokens and the other is still there,
/// made before the secret was written. When the secret is what this apply
/// would write (server and CA), the apply finishes that one rather than
/// rotating again: it waits for every istiod to take the secret, revokes
/// the previous token and records the held one. None: nothing to finish.
async fn finish_earlier(
    cx: Ctx<'_>,
    input: &Input,
    e: Earlier<'_>,
    log: &mut String,
) -> Result<Option<Applied>, StepError> {
    let mine = |s: &TokenSecret| s.link.as_deref() == Some(input.primary.as_str());
    let Some(held) = e.held_by.filter(|s| mine(s)) else {
        return Ok(None);
    };
    let Some(previous) = e.secrets.iter().find(|s| s.name == e.previous && mine(s)) else {
        return Ok(None);
    };
    let Some(live) = crate::k8s::get(e.primary, &remote_secret::secret_ref(&input.remote)).await?
    else {
        return Ok(None);
    };
    let raw = crate::k8s::secret_data(&live, &input.remote).unwrap_or_default();
    let kc = remote_secret::Kubeconfig::parse(&raw).unwrap_or_default();
    let server = input.api_server.clone().unwrap_or_else(|| e.remote.server.clone());
    let sha = crate::sha256_hex(&raw);
    let since = istiod_clients::since_written(&live.metadata, &sha);
    let known = istiod_clients::known_taken(&live.metadata, &sha);
    let made_before = match (previous.created_unix, since.written) {
        (Some(m), Some(w)) => m <= w.as_second(),
        _ => false,
    };
    let (Some(token), Ok(text)) = (&held.token, String::from_utf8(raw)) else {
        return Ok(None);
    };
    if kc.server.as_deref() != Some(server.as_str()) || kc.ca != held.ca || !made_before {
        return Ok(None);
    }
    let ns = &input.reader.namespace;
    log.push_str(&format!(
        "finishing what an earlier apply began: the remote secret in `{}` holds the link's new \
         token ({ns}/{} in `{}`) and the previous one ({ns}/{}) is still there\n",
        input.primary, held.name, input.remote, previous.name
    ));
    if !known {
        log.push_str(&until_taken(cx, e.primary, input, &since, &sha, Some(&previous.name)).await?);
    }
    revoke_held_before(cx, e.remote, input, e.secrets, None, &held.name, log).await?;
    let config = Sensitive::new(text);
    Ok(Some(Applied {
        outputs: link_outputs(input, &config, &held.name, token),
        log: std::mem::take(log),
    }))
}

/// The fingerprint of the kubeconfig a live remote secret of `remote` holds.
fn kubeconfig_sha(secret: &kube::api::DynamicObject, remote: &str) -> String {
    crate::sha256_hex(&crate::k8s::secret_data(secret, remote).unwrap_or_default())
}

/// Waits (at most `[credentials] sync_timeout`) until every istiod pod of
/// the primary has taken the remote secret written at `since`; the log
/// line saying how each showed it, or the step's failure, which keeps the
/// token the secret held before (`old`, in the remote) and says what to do.
async fn until_taken(
    cx: Ctx<'_>,
    primary: &Connection,
    input: &Input,
    since: &istiod_clients::Since,
    kubeconfig: &str,
    old: Option<&str>,
) -> Result<String, StepError> {
    let (p, r) = (&input.primary, &input.remote);
    cx.say(&format!("waiting for every istiod in {p} to take the new remote secret of {r}…"));
    let timeout = cx.env.sync_timeout;
    let waited = istiod_clients::wait_taken(primary, r, since, timeout).await?;
    if waited.is_ok() {
        // Known from now on, without a log (logs rotate).
        let took = json!({"metadata": {"annotations": {istiod_clients::TOOK_ANNOTATION: kubeconfig}}});
        crate::k8s::merge_patch(primary, &remote_secret::secret_ref(r), &took).await?;
    }
    match waited {
        Ok(taken) if taken.is_empty() => Ok(format!(
            "no istiod pod runs in `{p}`: none holds a client of the previous token\n"
        )),
        Ok(taken) => Ok(format!(
            "every istiod in `{p}` took the new remote secret of `{r}`: {}\n",
            istiod_clients::describe(&taken)
        )),
        Err(outstanding) => {
            let kept = match old {
                Some(n) => format!("The previous token ({}/{n} in `{r}`) is kept", input.reader.namespace),
                None => "The previous token is kept".to_string(),
            };
            Err(StepError::Failed(format!(
                "the remote secret istio-system/{} in `{p}` holds the link's new token, but not every \
                 istiod there took it within {} s: {}. {kept}, so the client istiod may still be \
                 using keeps working. istiod logs \"{}\" once its new client has synced; if it never does \
                 (istio/istio#60612), restart it (`kubectl --context {} -n istio-system rollout \
                 restart deployment -l app=istiod`) and run `mesh apply` again, which revokes the \
                 previous token once every istiod has the new one ([credentials] sync_timeout sets \
                 how long it waits)",
                remote_secret::secret_name(r),
                timeout.as_secs(),
                istiod_clients::describe(&outstanding),
                istiod_clients::swap_line(r),
                primary.context,
            )))
        }
    }
}

/// Revokes the link's previous token: its token Secrets other than `name`
/// (the one the remote secret now holds), under one of
/// [`link_token_names`] and live mesh's for this link. One labelled for the
/// link that is not is kept, and the log says why.
async fn revoke_previous(
    remote: &Connection,
    input: &Input,
    secrets: &[TokenSecret],
    name: &str,
    log: &mut String,
) -> Result<(), StepError> {
    let ns = input.reader.namespace.as_str();
    let names = link_token_names(&input.primary);
    let labelled = secrets
        .iter()
        .filter(|s| s.link.as_deref() == Some(input.primary.as_str()) && s.name != name);
    for old in labelled {
        let doc = secret_ref(ns, &old.name);
        let why = if names.contains(&old.name) {
            match crate::k8s::get(remote, &doc).await? {
                None => continue,
                Some(live) => not_link_token(&live.metadata, &input.primary, None),
            }
        } else {
            Some(format!(
                "it is not named as mesh names this link's tokens ({})",
                names.join(" or ")
            ))
        };
        if let Some(why) = why {
            log.push_str(&format!(
                "kept token Secret {ns}/{} in `{}`, labelled {LINK_LABEL}: {}: {why}\n",
                old.name, input.remote, input.primary
            ));
            continue;
        }
        crate::k8s::delete(remote, &doc).await?;
        log.push_str(&format!(
            "revoked the link's previous token: deleted Secret {ns}/{} in `{}`\n",
            old.name, input.remote
        ));
    }
    Ok(())
}

/// How much older than `rotate_after` a token made at `created` (RFC 3339)
/// is at `now` (Unix seconds): None while it is younger.
pub fn overdue(created: &str, now: i64, rotate_after: Duration) -> Option<Duration> {
    let made = time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
        .ok()?
        .unix_timestamp();
    let age = u64::try_from(now - made).ok()?;
    (age >= rotate_after.as_secs()).then(|| Duration::from_secs(age))
}

/// A duration in whole days, hours or minutes, for drift messages.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 => format!("{} d", s / 86_400),
        s if s >= 3_600 => format!("{} h", s / 3_600),
        s => format!("{} min", s / 60),
    }
}

/// The remote's side of the link: where the reader token is.
pub fn remote_target(input: &Input) -> Target {
    Target {
        cluster: input.remote.clone(),
        context: input.remote_context.clone(),
        kubeconfig: input.remote_kubeconfig.clone(),
    }
}

/// The remote of a recorded link, for destroy: the mesh file's target of
/// that cluster when it still has it, else the recorded context with the
/// default kubeconfig.
fn recorded_remote_target(cx: Ctx<'_>, recorded: &Recorded<'_>) -> Option<Target> {
    let cluster = recorded.output_str("token_cluster")?;
    let context = recorded.output_str("token_context")?;
    Some(
        cx.env
            .fleet
            .targets
            .get(cluster)
            .filter(|t| t.context == context)
            .cloned()
            .unwrap_or_else(|| Target {
                cluster: cluster.to_string(),
                context: context.to_string(),
                kubeconfig: None,
            }),
    )
}

/// `namespace/name` of a recorded `token_secret`.
fn split_ref(r: &str) -> (&str, &str) {
    r.split_once('/').unwrap_or((NS, r))
}

/// The kind.
pub struct Attach;

impl Kind for Attach {
    const NAME: &'static str = "attach";
    type Input = Input;

    /// The remote secret in the primary; the link's token made in the
    /// remote, its previous one (or the token the links shared) deleted
    /// there.
    fn apply_access(input: &Input, _update: bool) -> Vec<Need> {
        let remote = remote_target(input);
        let reader_ns = Some(input.reader.namespace.as_str());
        let mut needs = access::here(access::applied("", &["secrets"], false));
        // Whether every istiod took the rewritten secret: its pods' logs.
        needs.extend(access::here(access::in_istio(&["list"], "", "pods")));
        needs.extend(access::here(access::in_istio(&["get"], "", "pods/log")));
        for (verb, resource) in [
            ("get", "serviceaccounts"),
            ("get", "secrets"),
            ("list", "secrets"),
            ("watch", "secrets"),
            ("create", "secrets"),
            ("delete", "secrets"),
        ] {
            needs.push(Need {
                remote: Some(remote.clone()),
                access: Access::new(verb, "", resource, reader_ns),
            });
        }
        needs
    }

    /// The remote secret in the primary, read (is it mesh's?) then
    /// deleted. (The link's token Secret in the remote: engine's preflight
    /// adds its delete there.)
    fn destroy_access() -> Vec<Access> {
        access::in_istio(&["get", "delete"], "", "secrets")
    }

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    /// A record from before links had their own token (one document):
    /// the update gives it one, and the shared token goes once no link
    /// holds it.
    fn leftovers(old: &[Value], new: &Rendered) -> Vec<String> {
        if old.len() != 1 || new.documents.len() < 2 {
            return Vec::new();
        }
        let remote = new.documents[0]
            .pointer("/metadata/annotations/networking.istio.io~1cluster")
            .and_then(Value::as_str)
            .unwrap_or("the remote");
        let token = &new.documents[1];
        let name = token.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let ns = token.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(NS);
        vec![format!(
            "its own token: Secret {ns}/{name} in {remote}, instead of the reader token the links to \
             {remote} share (that token Secret is deleted once no remote secret of the mesh holds it)"
        )]
    }

    fn removes(cluster: &str, holder: Option<&str>, recorded: &[Value]) -> String {
        let holder = holder.unwrap_or("its primary");
        let token = recorded
            .get(1)
            .and_then(|d| d.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .map(|n| format!("; the link's token ({n} in {cluster}) is revoked"))
            .unwrap_or_default();
        format!(
            "Secret istio-system/istio-remote-secret-{cluster} in {holder}: \
             {holder}'s istiod stops seeing {cluster}'s services{token}"
        )
    }

    /// Makes the link a new token of its own in the remote (under the name
    /// the remote secret does not hold), writes Secret
    /// `istio-remote-secret-<R>` in the primary with it, in place, and only
    /// then revokes the token it held before: the link's previous token,
    /// or the reader token all links shared, once no other control plane
    /// of the mesh holds it. The token goes nowhere else. Only Secrets
    /// mesh made are deleted, checked live: a Secret of someone else under
    /// the new token's name fails the step (`clear_new_name`), and a
    /// token the remote secret held that is not mesh's or istioctl's
    /// reader token is kept (`revoke_shared`).
    async fn apply(
        cx: Ctx<'_>,
        input: &Input,
        rendered: &Rendered,
        _previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        let remote = cx.env.clusters.connect(&remote_target(input)).await?;
        ensure_reader(&remote, &input.reader).await?;
        let primary = cx.connect().await?;
        let ns = input.reader.namespace.as_str();
        let held = remote_secret::held_token(&primary, &input.remote).await?;
        let secrets = token_secrets(&remote, ns).await?;
        let held_by = held
            .as_ref()
            .and_then(|t| secrets.iter().find(|s| s.holds(t)))
            .cloned();
        let [first, second] = link_token_names(&input.primary);
        let name = if held_by.as_ref().is_some_and(|s| s.name == first) {
            second
        } else {
            first
        };
        let mut log = String::new();
        let earlier = Earlier {
            primary: &primary,
            remote: &remote,
            secrets: &secrets,
            held_by: held_by.as_ref(),
            previous: &name,
        };
        if let Some(done) = finish_earlier(cx, input, earlier, &mut log).await? {
            return Ok(done);
        }
        clear_new_name(cx, &primary, &remote, input, &name, &mut log).await?;
        let doc = token_document(input, &name);
        let (token, ca) = new_token(cx, &remote, &doc).await?;
        let server = input
            .api_server
            .clone()
            .unwrap_or_else(|| remote.server.clone());
        if server.contains("127.0.0.1") || server.contains("localhost") {
            log.push_str(&format!(
            "warning: the API server address of `{}` is {server}, which is likely unreachable from inside \
             cluster `{}`; set `api_server` for this cluster in the mesh file (kind: the node's address)\n",
            input.remote, input.primary
        ));
        }
        let config = remote_secret::kubeconfig(&input.remote, &server, &ca, &token);
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
        // istiod's pods as they are before the write: what counts as
        // evidence that they took it (only needed when a token is held,
        // whose client must not lose its token before that).
        let marks = match held {
            Some(_) => Some(istiod_clients::mark(&primary).await?),
            None => None,
        };
        // With no client before (no token held), every istiod that reads
        // the secret uses this kubeconfig from the start.
        let sha = crate::sha256_hex(config.expose().as_bytes());
        if let Some(meta) = secret.pointer_mut("/metadata") {
            let (key, value) = match &marks {
                Some(m) => (istiod_clients::MARKS_ANNOTATION, istiod_clients::marks_annotation(&sha, m)),
                None => (istiod_clients::TOOK_ANNOTATION, sha.clone()),
            };
            meta["annotations"][key] = Value::from(value);
        }
        cx.say(&format!(
            "writing Secret istio-system/{} in {}…",
            remote_secret::secret_name(&input.remote), input.primary
        ));
        let written = crate::k8s::applied(&primary, &secret).await?;
        log.push_str(&format!(
            "wrote Secret istio-system/istio-remote-secret-{} in `{}` with a kubeconfig for {server} {config}, \
             the token of {ns}/{name} in `{}` {token}\n",
            input.remote, input.primary, input.remote
        ));
        if let Some(marks) = marks {
            let since = istiod_clients::Since {
                written: istiod_clients::written_at(&written.metadata),
                before: Some(marks),
            };
            let old = held_by.as_ref().map(|s| s.name.as_str());
            log.push_str(&until_taken(cx, &primary, input, &since, &sha, old).await?);
        }
        revoke_held_before(cx, &remote, input, &secrets, held_by, &name, &mut log).await?;
        Ok(Applied {
            outputs: link_outputs(input, &config, &name, &token),
            log,
        })
    }

    async fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        input: Option<&Input>,
    ) -> Result<Observation, StepError> {
        read_link(cx, recorded, input, false).await
    }

    /// For `mesh import`: the remote secret in the primary matches when it is
    /// there with mesh's label and annotation, a kubeconfig for the remote's
    /// API server, and a token that is one of the remote's current reader
    /// tokens (what `istioctl create-remote-secret` made); its fingerprint
    /// becomes the recorded output. That token is shared by every link made
    /// that way: the next plan's refresh says so and its apply gives the
    /// link a token of its own.
    async fn adopt(cx: Ctx<'_>, input: &Input, text: &str) -> Result<Adoption, StepError> {
        let conn = cx.connect().await?;
        let name = remote_secret::secret_name(&input.remote);
        let doc = secret_ref(NS, &name);
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
        // The same checks as a refresh, with the live fingerprint as recorded,
        // and the link's own token Secret when the token is one (a mesh
        // whose state was lost): then the record names it, as apply's does.
        let mut outputs = BTreeMap::from([("kubeconfig_sha256".to_string(), Value::from(sha))]);
        if let Some(token) = remote_secret::held_token(&conn, &input.remote).await? {
            let remote = cx.env.clusters.connect(&remote_target(input)).await?;
            let ns = input.reader.namespace.as_str();
            if let Some(own) = token_secrets(&remote, ns).await?.into_iter().find(|s| {
                s.holds(&token) && s.link.as_deref() == Some(input.primary.as_str())
            }) {
                for (k, v) in [
                    ("token_secret", format!("{ns}/{}", own.name)),
                    ("token_sha256", token.sha256()),
                    ("token_cluster", input.remote.clone()),
                    ("token_context", input.remote_context.clone()),
                ] {
                    outputs.insert(k.to_string(), Value::from(v));
                }
            }
        }
        let recorded = Recorded {
            input: text,
            outputs: &outputs,
        };
        let obs = read_link(cx, &recorded, Some(input), true).await?;
        Ok(if obs.drift.is_empty() {
            Adoption::Adopted(outputs)
        } else {
            Adoption::Differs(obs.drift)
        })
    }

    /// Deletes the remote secret in the primary, then the link's token
    /// Secret in the remote: that token, and no other link's, is revoked.
    /// Each only under the name mesh gives it and only when the live
    /// Secret is mesh's (`destroy_remote_secret`, `destroy_token`): a
    /// record edited to name another Secret deletes nothing else, and the
    /// log says what was left and why.
    async fn destroy(cx: Ctx<'_>, recorded: &Recorded<'_>) -> Result<String, StepError> {
        let docs = recorded.documents()?;
        let Some(first) = docs.first() else {
            return Ok(String::new());
        };
        let remote = step_cluster(cx.step);
        let holder = docs.get(1).and_then(link_of);
        let conn = cx.connect().await?;
        let mut log = destroy_remote_secret(&conn, remote, holder, first).await?;
        if let Some(token) = recorded.output_str("token_secret") {
            log.push_str(&destroy_token(cx, recorded, &docs, remote, token).await?);
        }
        Ok(log)
    }
}

/// The cluster of a step ID (`R/attach`, `R/attach@Q`): the link's remote.
fn step_cluster(step: &str) -> &str {
    step.split_once('/').map_or(step, |(c, _)| c)
}

/// The control plane a token document is for: its [`LINK_LABEL`].
fn link_of(doc: &Value) -> Option<&str> {
    doc.pointer("/metadata/labels")
        .and_then(|l| l.get(LINK_LABEL))
        .and_then(Value::as_str)
}

/// Deletes the remote secret of `remote` in the primary (`conn`, named
/// `holder` when the record says) when it is mesh's: Secret
/// `istio-system/istio-remote-secret-<remote>`, whatever the record
/// `recorded` names, labelled `istio/multiCluster` and annotated with
/// `remote`. Else leaves it. Its log lines.
async fn destroy_remote_secret(
    conn: &Connection,
    remote: &str,
    holder: Option<&str>,
    recorded: &Value,
) -> Result<String, StepError> {
    let name = remote_secret::secret_name(remote);
    let doc = remote_secret::secret_ref(remote);
    let mut log = String::new();
    if !crate::k8s::same_object(recorded, &doc) {
        log.push_str(&format!(
            "the record names {}, not Secret {NS}/{name}: mesh deletes only the latter\n",
            crate::k8s::describe(recorded)
        ));
    }
    let Some(live) = crate::k8s::get(conn, &doc).await? else {
        log.push_str(&format!("Secret {NS}/{name} was already gone\n"));
        return Ok(log);
    };
    if let Some(why) = not_remote_secret(&live.metadata, remote) {
        let primary = holder.map_or_else(
            || format!("the cluster of context `{}`", conn.context),
            |h| format!("`{h}`"),
        );
        log.push_str(&format!(
            "left Secret {NS}/{name} in {primary}: {why}, so it is not mesh's remote secret \
             (remove it by hand if nothing needs it)\n"
        ));
        return Ok(log);
    }
    crate::k8s::delete(conn, &doc).await?;
    log.push_str(&format!("deleted Secret {NS}/{name}\n"));
    Ok(log)
}

/// Why a live Secret (its metadata `meta`) is not the remote secret of
/// `remote` mesh writes (None: it is): label `istio/multiCluster: "true"`,
/// annotation `networking.istio.io/cluster: <remote>` (pure).
fn not_remote_secret(meta: &kube::api::ObjectMeta, remote: &str) -> Option<String> {
    let label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(crate::istio::MULTICLUSTER_LABEL))
        .map(String::as_str);
    let annotation = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::istio::CLUSTER_ANNOTATION))
        .map(String::as_str);
    let mut why = Vec::new();
    if label != Some("true") {
        why.push(format!(
            "it is not labelled {}: \"true\"",
            crate::istio::MULTICLUSTER_LABEL
        ));
    }
    if annotation != Some(remote) {
        why.push(format!(
            "it is not annotated {}: {remote}",
            crate::istio::CLUSTER_ANNOTATION
        ));
    }
    (!why.is_empty()).then(|| why.join(", and "))
}

/// Revokes the link's token Secret `token` (`namespace/name`) that the
/// record names, in `remote`, when it is one mesh made for this link: as
/// [`recorded_token`] checks it against the record, reached as the record
/// says where that is no other cluster of the mesh file, and live labelled
/// mesh's for the control plane that held the remote secret. Anything else
/// is left, and the log line says why.
async fn destroy_token(
    cx: Ctx<'_>,
    recorded: &Recorded<'_>,
    docs: &[Value],
    remote: &str,
    token: &str,
) -> Result<String, StepError> {
    let (ns, name) = split_ref(token);
    let left = |why: String| -> Result<String, StepError> {
        Ok(format!(
            "left Secret {ns}/{name} in `{remote}`, which the record names as the link's token: \
             {why}; mesh deletes only the token Secrets it made for the link (remove it by hand \
             if nothing needs it)\n"
        ))
    };
    let token_doc = docs.get(1);
    let token_cluster = recorded.output_str("token_cluster");
    let holder = match recorded_token(cx.step, remote, token_doc, token_cluster, ns, name) {
        Ok(holder) => holder,
        Err(why) => return left(why),
    };
    if let Some(why) = holder_elsewhere(cx, holder) {
        return left(why);
    }
    let Some(target) = recorded_remote_target(cx, recorded) else {
        return left("the record does not say how to reach that cluster (`token_context`)".into());
    };
    if let Some(why) = context_of_another(cx, &target) {
        return left(why);
    }
    let conn = cx.env.clusters.connect(&target).await?;
    let doc = secret_ref(ns, name);
    let reader = token_doc
        .and_then(|d| d.pointer("/metadata/annotations"))
        .and_then(|a| a.get(SA_ANNOTATION))
        .and_then(Value::as_str);
    let mut log = match crate::k8s::get(&conn, &doc).await? {
        // Gone already: the other name below may still hold a token.
        None => format!("the link's token Secret {ns}/{name} in `{remote}` was already gone\n"),
        Some(live) => {
            if let Some(why) = not_link_token(&live.metadata, holder, reader) {
                return left(why);
            }
            crate::k8s::delete(&conn, &doc).await?;
            format!("revoked the link's token: deleted Secret {ns}/{name} in `{remote}`\n")
        }
    };
    // The link's other name: a token an apply made and the state never
    // recorded (it failed waiting for istiod, or was killed), mesh's for
    // this link.
    for other in link_token_names(holder).iter().filter(|n| *n != name) {
        let doc = secret_ref(ns, other);
        if let Some(live) = crate::k8s::get(&conn, &doc).await?
            && not_link_token(&live.metadata, holder, reader).is_none()
        {
            crate::k8s::delete(&conn, &doc).await?;
            log.push_str(&format!(
                "revoked the link's unrecorded token: deleted Secret {ns}/{other} in `{remote}`\n"
            ));
        }
    }
    Ok(log)
}

/// The control plane whose link's token Secret `ns/name` the record
/// names, when it is one mesh would have made for the link of step `step`
/// into `remote` (pure): the record's `token_cluster` is `remote`; and
/// `ns/name` is in the namespace of the recorded token document `doc`
/// (the reader's), under one of [`link_token_names`] of the control plane
/// that document is labelled for, which is the step ID's too when it
/// names one (`R/attach@Q`). Err: why it is not.
fn recorded_token<'a>(
    step: &str,
    remote: &str,
    doc: Option<&'a Value>,
    token_cluster: Option<&str>,
    ns: &str,
    name: &str,
) -> Result<&'a str, String> {
    if token_cluster != Some(remote) {
        return Err(format!(
            "the record says it is in `{}`, but the link reads `{remote}`",
            token_cluster.unwrap_or("(no cluster)")
        ));
    }
    let Some(doc) = doc else {
        return Err("the record has no token document to check it against".into());
    };
    let Some(holder) = link_of(doc) else {
        return Err(format!(
            "the record's token document has no {LINK_LABEL} label"
        ));
    };
    if let Some((_, q)) = step.split_once('@')
        && q != holder
    {
        return Err(format!(
            "the record's token document is labelled for `{holder}`, but {step} is `{q}`'s link"
        ));
    }
    let reader_ns = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(NS);
    if ns != reader_ns {
        return Err(format!(
            "it is not in {reader_ns}, the reader's namespace"
        ));
    }
    let names = link_token_names(holder);
    if !names.iter().any(|n| n.as_str() == name) {
        return Err(format!(
            "it is not named as mesh names the link's token ({})",
            names.join(" or ")
        ));
    }
    Ok(holder)
}

/// Why `holder`, the control plane the record's token document is for, is
/// not the cluster the step's remote secret is in (None: it is, or the
/// mesh file has no cluster of the step's context any more).
fn holder_elsewhere(cx: Ctx<'_>, holder: &str) -> Option<String> {
    let here: Vec<&str> = cx
        .env
        .fleet
        .targets
        .values()
        .filter(|t| t.context == cx.target.context)
        .map(|t| t.cluster.as_str())
        .collect();
    (!here.is_empty() && !here.contains(&holder)).then(|| {
        format!(
            "the record's token document is labelled for `{holder}`, but the step's remote secret \
             is in `{}` (context `{}`)",
            here.join("`, `"),
            cx.target.context
        )
    })
}

/// Why the recorded way to the link's cluster (`target`) leads to another
/// cluster of the mesh file: its context (and kubeconfig) is that
/// cluster's. None: it does not.
fn context_of_another(cx: Ctx<'_>, target: &Target) -> Option<String> {
    cx.env
        .fleet
        .targets
        .values()
        .find(|t| {
            t.cluster != target.cluster
                && t.context == target.context
                && t.kubeconfig == target.kubeconfig
        })
        .map(|t| {
            format!(
                "the record reaches it through context `{}`, which is cluster `{}`'s",
                t.context, t.cluster
            )
        })
}

/// Refresh (and, `adopting`, import) of a link. Drift: the Secret
/// missing, its label or annotation gone, other contents; and, when the
/// mesh file still has the step, what [`link_drift`] finds.
async fn read_link(
    cx: Ctx<'_>,
    recorded: &Recorded<'_>,
    input: Option<&Input>,
    adopting: bool,
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
    obs.drift.extend(metadata_drift(&doc, &live, &name));
    let key = doc
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(crate::istio::CLUSTER_ANNOTATION))
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
            .and_then(remote_secret::Kubeconfig::parse)
            .unwrap_or_default();
        let remote = cx.env.clusters.connect(&remote_target(input)).await?;
        let all = token_secrets(&remote, &input.reader.namespace).await?;
        let found = LinkFound {
            name: &name,
            kubeconfig: &kc,
            server: input.api_server.as_deref().unwrap_or(&remote.server),
            token_secrets: &all,
            own: recorded.output_str("token_secret"),
        };
        obs.drift
            .extend(link_drift(input, &found, adopting, cx.env.rotate_after, now()));
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

/// The remote secret's label or annotation changed or removed (pure).
fn metadata_drift(doc: &Value, live: &kube::api::DynamicObject, name: &str) -> Vec<String> {
    let want = |k: &str| doc.pointer(&format!("/metadata/{k}")).cloned().unwrap_or_default();
    let live_meta = serde_json::to_value(&live.metadata).unwrap_or_default();
    let kept = |k: &str| crate::k8s::contains(live_meta.get(k).unwrap_or(&Value::Null), &want(k));
    let mut drift = Vec::new();
    if !kept("labels") {
        drift.push(format!(
            "Secret istio-system/{name}: label istio/multiCluster changed or removed"
        ));
    }
    if !kept("annotations") {
        drift.push(format!(
            "Secret istio-system/{name}: annotation networking.istio.io/cluster changed or removed"
        ));
    }
    drift
}

/// What a link's refresh found live, for [`link_drift`].
struct LinkFound<'a> {
    /// The remote secret's name.
    name: &'a str,
    /// Its kubeconfig.
    kubeconfig: &'a remote_secret::Kubeconfig,
    /// The remote's API server, as the kubeconfig should name it.
    server: &'a str,
    /// The remote's token Secrets in the reader's namespace.
    token_secrets: &'a [TokenSecret],
    /// The record's `token_secret` (`namespace/name`), None for a record
    /// from before links had their own token.
    own: Option<&'a str>,
}

/// The drift of a remote secret whose contents are what mesh recorded
/// (pure): a kubeconfig that does not reach the remote (its server, its
/// CA), a token that is no longer one of the remote's reader tokens (a
/// re-created reader ServiceAccount), the link's own token Secret gone
/// (revoked) or not the one the remote secret holds, a link that still
/// shares the reader token with the others (a record from before links had
/// their own; not for an import, whose next plan says it), and a token older
/// than `rotate_after` at `now`.
fn link_drift(
    input: &Input,
    found: &LinkFound<'_>,
    adopting: bool,
    rotate_after: Option<Duration>,
    now: i64,
) -> Vec<String> {
    let name = found.name;
    let kc = found.kubeconfig;
    let token = kc.token.as_ref();
    let current: Vec<&TokenSecret> = found
        .token_secrets
        .iter()
        .filter(|s| s.sa.as_deref() == Some(input.reader.name.as_str()))
        .filter(|s| s.token.is_some() && s.ca.is_some())
        .collect();
    let mut drift = Vec::new();
    // The kubeconfig must reach this cluster: its server and CA.
    let server = found.server;
    if kc.server.as_deref() != Some(server) {
        drift.push(format!(
            "Secret istio-system/{name} points at {}, not at `{}`'s API server {server}",
            kc.server
                .as_deref()
                .map_or("no server".into(), crate::rendered::shown),
            input.remote
        ));
    }
    if !current.is_empty() && !current.iter().any(|s| s.ca.as_deref() == kc.ca.as_deref()) {
        drift.push(format!(
            "Secret istio-system/{name} trusts another CA than `{}`'s",
            input.remote
        ));
    }
    let ns = input.reader.namespace.as_str();
    let Some(own) = found.own else {
        // A record from before links had their own token.
        let still_valid = token.is_some_and(|t| current.iter().any(|s| s.holds(t)));
        if !still_valid {
            drift.push(format!(
                "Secret istio-system/{name} holds a token that is no longer one of {ns}/{}'s in `{}` \
                 (the ServiceAccount was re-created?)",
                input.reader.name, input.remote
            ));
        } else if !adopting {
            drift.push(format!(
                "Secret istio-system/{name} holds the reader token the links to `{}` share: \
                 apply gives it its own token",
                input.remote
            ));
        }
        return drift;
    };
    let (own_ns, own_name) = split_ref(own);
    match found
        .token_secrets
        .iter()
        .find(|s| s.name == own_name && own_ns == ns)
    {
        None => drift.push(format!(
            "the link's token Secret {own} in `{}` is gone (its token is revoked)",
            input.remote
        )),
        Some(s) if s.sa.as_deref() != Some(input.reader.name.as_str()) => drift.push(format!(
            "the link's token Secret {own} in `{}` is not {ns}/{}'s",
            input.remote, input.reader.name
        )),
        Some(s) if !token.is_some_and(|t| s.holds(t)) => drift.push(format!(
            "Secret istio-system/{name} does not hold the token of the link's token Secret {own} in `{}`",
            input.remote
        )),
        Some(s) => {
            if let (Some(after), Some(created)) = (rotate_after, &s.created)
                && let Some(age) = overdue(created, now, after)
            {
                drift.push(format!(
                    "the link's token {own} in `{}` is {} old (rotate_after {}): apply replaces it",
                    input.remote,
                    human(age),
                    human(after)
                ));
            }
        }
    }
    drift
}

/// Now, in Unix seconds.
fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn secret_doc(recorded: &Recorded<'_>) -> Result<Option<Value>, StepError> {
    Ok(recorded.documents()?.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_overdue_once_older_than_rotate_after() {
        let day = Duration::from_secs(86_400);
        let made = "2026-01-01T00:00:00Z";
        let t0 = 1_767_225_600; // 2026-01-01T00:00:00Z
        assert_eq!(overdue(made, t0 + 89 * 86_400, 90 * day), None);
        assert_eq!(
            overdue(made, t0 + 91 * 86_400, 90 * day),
            Some(91 * day)
        );
        assert_eq!(human(91 * day), "91 d");
        assert_eq!(overdue("not a time", t0, day), None);
    }

    #[test]
    fn each_link_renders_its_own_token_secret_named_for_its_control_plane() {
        let input = Input {
            remote: "cluster2".into(),
            remote_context: "kind-cluster2".into(),
            primary: "cluster1".into(),
            api_server: None,
            remote_kubeconfig: None,
            reader: Reader::default(),
        };
        let r = render(&input);
        assert_eq!(r.documents.len(), 2);
        let t = &r.documents[1];
        assert_eq!(t["metadata"]["name"], "istio-reader-token-cluster1");
        assert_eq!(t["metadata"]["labels"][LINK_LABEL], "cluster1");
        assert_eq!(t["metadata"]["labels"][MANAGED_BY], "mesh");
        assert_eq!(t["type"], TOKEN_TYPE);
        assert_eq!(
            t["metadata"]["annotations"][SA_ANNOTATION],
            "istio-reader-service-account"
        );
        // The longest cluster name (a 63-character label) still fits a Secret name.
        let [a, b] = link_token_names(&"c".repeat(63));
        assert!(a.len() <= 253 && b.len() <= 253 && a != b);
        // An old record (one document) is told why it updates.
        let why = Attach::leftovers(&r.documents[..1], &r);
        assert!(why[0].starts_with("its own token: Secret istio-system/istio-reader-token-cluster1 in cluster2"), "{why:?}");
        assert!(Attach::leftovers(&r.documents, &r).is_empty());
    }

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> kube::api::ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<String, String>>(),
            )
        };
        kube::api::ObjectMeta {
            labels: map(labels),
            annotations: map(annotations),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_token_secret_mesh_made_for_the_link_is_the_links() {
        let reader = "istio-reader-service-account";
        let mesh = (MANAGED_BY, crate::k8s::MESH);
        let sa = (SA_ANNOTATION, reader);
        let ours = meta(&[mesh, (LINK_LABEL, "cluster1")], &[sa]);
        assert_eq!(not_link_token(&ours, "cluster1", Some(reader)), None);
        assert_eq!(not_link_token(&ours, "cluster1", None), None);
        // Another link's.
        let why = not_link_token(&ours, "cluster3", Some(reader)).unwrap();
        assert!(why.contains("label is `cluster1`, not `cluster3`"), "{why}");
        // Someone else's: every reason is named.
        let foreign = meta(&[], &[(SA_ANNOTATION, "other-app")]);
        let why = not_link_token(&foreign, "cluster1", Some(reader)).unwrap();
        for want in [
            "it is not labelled app.kubernetes.io/managed-by: mesh",
            "it has no mesh/remote-secret-in label",
            "it is a token of ServiceAccount `other-app`, not of the reader `istio-reader-service-account`",
        ] {
            assert!(why.contains(want), "{why}");
        }
        // Mesh's labels, another ServiceAccount: not the link's new token.
        let other_sa = meta(&[mesh, (LINK_LABEL, "cluster1")], &[(SA_ANNOTATION, "x")]);
        assert!(not_link_token(&other_sa, "cluster1", Some(reader)).is_some());
        assert!(not_link_token(&other_sa, "cluster1", None).is_none());
    }

    #[test]
    fn only_a_secret_labelled_and_annotated_as_mesh_writes_it_is_the_remote_secret() {
        let label = (crate::istio::MULTICLUSTER_LABEL, "true");
        let annotation = (crate::istio::CLUSTER_ANNOTATION, "cluster2");
        assert_eq!(not_remote_secret(&meta(&[label], &[annotation]), "cluster2"), None);
        let why = not_remote_secret(&meta(&[], &[annotation]), "cluster2").unwrap();
        assert!(why.contains("it is not labelled istio/multiCluster"), "{why}");
        let why = not_remote_secret(&meta(&[label], &[]), "cluster2").unwrap();
        assert!(why.contains("it is not annotated networking.istio.io/cluster: cluster2"), "{why}");
        assert!(not_remote_secret(&meta(&[label], &[annotation]), "cluster3").is_some());
    }

    #[test]
    fn destroy_revokes_only_a_token_secret_named_as_mesh_names_the_links() {
        let input = Input {
            remote: "cluster2".into(),
            remote_context: "kind-cluster2".into(),
            primary: "cluster1".into(),
            api_server: None,
            remote_kubeconfig: None,
            reader: Reader::default(),
        };
        let doc = token_document(&input, "istio-reader-token-cluster1");
        let step = "cluster2/attach";
        let c2 = Some("cluster2");
        let ok = |s: &str, n: &str| recorded_token(step, "cluster2", Some(&doc), c2, s, n);
        assert_eq!(ok(NS, "istio-reader-token-cluster1"), Ok("cluster1"));
        assert_eq!(ok(NS, "istio-reader-token-cluster1-2"), Ok("cluster1"));
        // Another namespace, another name, another link's name.
        let why = ok("kube-system", "some-secret").unwrap_err();
        assert!(why.contains("not in istio-system, the reader's namespace"), "{why}");
        let why = ok(NS, "some-secret").unwrap_err();
        assert!(why.contains("istio-reader-token-cluster1 or istio-reader-token-cluster1-2"), "{why}");
        assert!(ok(NS, "istio-reader-token-cluster3").is_err());
        // The record's remote is another cluster; the step is another
        // control plane's link; no token document to check against.
        let c3 = Some("cluster3");
        let tok = "istio-reader-token-cluster1";
        assert!(recorded_token(step, "cluster2", Some(&doc), c3, NS, tok).is_err());
        assert!(recorded_token(step, "cluster2", Some(&doc), None, NS, tok).is_err());
        let cross = "cluster2/attach@cluster3";
        assert!(recorded_token(cross, "cluster2", Some(&doc), c2, NS, tok).is_err());
        assert!(recorded_token(step, "cluster2", None, c2, NS, tok).is_err());
        assert_eq!(step_cluster(cross), "cluster2");
    }
}
