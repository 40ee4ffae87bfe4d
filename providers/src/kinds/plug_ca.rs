//! `P/plug-ca`: the primary's own intermediate CA, signed by the mesh's
//! root, as Istio's plug-in CA Secret `cacerts` in istio-system, written
//! before the control plane is installed (istiod reads it when it starts).
//!
//! The intermediate and its key are made at apply time, so the plan shows
//! only what they will be (the root's fingerprint, the validity); the state
//! records the intermediate's fingerprint and expiry, never a key.

use crate::rendered::Rendered;
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The primary (the intermediate's `L=`).
    pub cluster: String,
    /// The root certificate (PEM, public).
    pub root_cert_pem: String,
    /// sha256 of the root certificate (DER).
    pub root_sha256: String,
    /// Where the root key is: read at apply time only.
    pub root_key: PathBuf,
    /// Validity of the intermediate.
    pub days: u32,
}

pub const SECRET: &str = "cacerts";
/// The root the Secret's intermediate was signed by, as mesh wrote it.
pub const ROOT_ANNOTATION: &str = "mesh/root-sha256";
/// The output with the sha256 of each file of `cacerts` as mesh wrote it.
pub const FILES_SHA256: &str = "files_sha256";
/// An intermediate closer to its expiry than this is rotated.
pub const ROTATE_WITHIN_DAYS: i64 = 30;

/// The Secret as it will be, its contents described: the keys exist only
/// once apply makes them.
pub fn render(input: &Input) -> Rendered {
    let root = &input.root_sha256[..16.min(input.root_sha256.len())];
    Rendered {
        documents: vec![json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": SECRET,
                "namespace": "istio-system",
                "annotations": {ROOT_ANNOTATION: input.root_sha256},
            },
            "type": "Opaque",
            "stringData": {
                "ca-cert.pem": format!(
                    "(a new intermediate CA for {}, valid {} days, signed by root sha256:{root}…, made at apply time)",
                    input.cluster, input.days
                ),
                "ca-key.pem": "(sensitive: the intermediate's private key, made at apply time)",
                "root-cert.pem": format!("(the root certificate, sha256:{root}…)"),
                "cert-chain.pem": "(the intermediate, then the root)",
            }
        })],
        unknown: false,
    }
}

// ---- against a cluster ----

use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::kind::{Adoption, Kind, OutputLookup};
use crate::observe::Observation;
use crate::rendered::Sensitive;
use base64::Engine as _;
use std::collections::BTreeMap;

fn secret_doc() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": "istio-system"}})
}

/// A data key of a live Secret, decoded as text.
fn data(live: &kube::api::DynamicObject, key: &str) -> Option<String> {
    String::from_utf8(crate::k8s::secret_data(live, key)?).ok()
}

/// The kind.
pub struct PlugCa;

impl Kind for PlugCa {
    const NAME: &'static str = "plug-ca";
    /// A `cacerts` already there is replaced: the plan says so.
    const PREVIEWS: bool = true;
    type Input = Input;

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn removes(cluster: &str, _: Option<&str>, _: &[Value]) -> String {
        format!(
            "Secret istio-system/cacerts in {cluster}: its intermediate CA \
             (istiod falls back to a self-signed root when it restarts)"
        )
    }

    /// Makes a new intermediate and writes `cacerts`. A `cacerts` mesh did not
    /// write (another root, made by hand) is replaced, and the log says so; a
    /// running istiod is restarted so that it loads the new CA (as `kubectl
    /// rollout restart` does).
    async fn apply(
        cx: Ctx<'_>,
        input: &Input,
        rendered: &Rendered,
        _previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        // Only a regular file, and only up to 1 MiB, as when it was loaded.
        let key = state::local::read_regular_file(&input.root_key, 1 << 20, "root key")
            .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
            .map_err(|e| {
                StepError::Failed(format!(
                    "cannot read the root key {}: {e}. It is read at apply time only: \
                     check [trust] root_key",
                    input.root_key.display()
                ))
            })?;
        let key = Sensitive::new(key);
        crate::ca::check_root(&input.root_cert_pem, Some(&key), crate::ca::now(), input.days)
            .map_err(|p| StepError::Failed(format!("{p}: check [trust] in the mesh file")))?;
        cx.say("making an intermediate CA…");
        let ca = crate::ca::intermediate(&input.root_cert_pem, &key, &input.cluster, input.days)
            .map_err(StepError::Failed)?;
        drop(key);
        let conn = cx.connect().await?;
        let mut log = String::new();
        let before = crate::k8s::get(&conn, &secret_doc()).await?;
        if let Some(live) = &before {
            let ours = live
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ROOT_ANNOTATION));
            let their_root = data(live, "root-cert.pem")
                .and_then(|p| crate::ca::inspect(&p).ok())
                .map_or("unreadable".to_string(), |i| {
                    format!("sha256:{}", &i.sha256[..16])
                });
            if !ours {
                log.push_str(&format!(
                    "replaced a cacerts Secret mesh did not write (its root: {their_root})\n"
                ));
            }
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let files: [(&str, &[u8]); 4] = [
            ("ca-cert.pem", ca.cert_pem.as_bytes()),
            ("ca-key.pem", ca.key_pem.expose().as_bytes()),
            ("root-cert.pem", ca.root_pem.as_bytes()),
            ("cert-chain.pem", ca.chain_pem.as_bytes()),
        ];
        let mut secret = rendered.documents.first().cloned().unwrap_or_default();
        if let Some(obj) = secret.as_object_mut() {
            obj.remove("stringData");
            let data: serde_json::Map<String, Value> = files
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(b64.encode(v))))
                .collect();
            obj.insert("data".into(), Value::Object(data));
        }
        // Each file's fingerprint (the key's too: a fingerprint, never the
        // key), so a refresh finds any byte changed: a rogue CA appended to
        // root-cert.pem, a certificate added to the chain, a swapped key.
        let fingerprints: serde_json::Map<String, Value> = files
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(crate::rendered::sha256_hex(v))))
            .collect();
        cx.say("writing Secret istio-system/cacerts…");
        crate::k8s::apply(&conn, &secret).await?;
        log.push_str(&format!(
        "wrote Secret istio-system/cacerts: intermediate sha256:{} for {}, valid until {}, key {}\n",
        &ca.info.sha256[..16],
        input.cluster,
        crate::ca::date(ca.info.not_after),
        ca.key_pem
    ));
        // A new intermediate under the same root: istiod watches its
        // mounted cacerts and reloads it by itself (Istio's istio_ca.go), so
        // nothing restarts. Another root (or a root added to a running
        // mesh) is only read when istiod starts: a running one is restarted.
        // On a first install there is none yet: the control plane is
        // installed after this step.
        let same_root = before
            .as_ref()
            .and_then(|live| data(live, "root-cert.pem"))
            .and_then(|p| crate::ca::inspect(&p).ok())
            .is_some_and(|root| root.sha256 == input.root_sha256);
        if same_root {
            log.push_str("same root: istiod reloads cacerts by itself, nothing restarted\n");
        } else {
            let restarted = restart_istiod(&conn).await?;
            if !restarted.is_empty() {
                log.push_str(&format!(
                    "restarted {} to load the new CA\n",
                    restarted.join(", ")
                ));
            }
        }
        Ok(Applied {
            outputs: BTreeMap::from([
                (FILES_SHA256.to_string(), Value::Object(fingerprints)),
                (
                    "intermediate_sha256".to_string(),
                    Value::from(ca.info.sha256.clone()),
                ),
                (
                    "intermediate_expires".to_string(),
                    Value::from(crate::ca::date(ca.info.not_after)),
                ),
                (
                    "root_sha256".to_string(),
                    Value::from(input.root_sha256.clone()),
                ),
            ]),
            log,
        })
    }

    /// Drift: the Secret missing, made from another root, not the intermediate
    /// mesh wrote, or expiring within 30 days (the plan then shows a rotation).
    async fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        _input: Option<&Input>,
    ) -> Result<Observation, StepError> {
        let conn = cx.connect().await?;
        let mut obs = Observation::in_sync(recorded.outputs.clone());
        let want_root = recorded
            .documents()?
            .first()
            .and_then(|d| {
                d.pointer(&format!(
                    "/metadata/annotations/{}",
                    ROOT_ANNOTATION.replace('/', "~1")
                ))
            })
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(live) = crate::k8s::get(&conn, &secret_doc()).await? else {
            obs.drift.push("Secret istio-system/cacerts missing".into());
            return Ok(obs);
        };
        let root = data(&live, "root-cert.pem").and_then(|p| crate::ca::inspect(&p).ok());
        match root {
        None => obs.drift.push("Secret istio-system/cacerts has no readable root-cert.pem".into()),
        Some(r) if r.sha256 != want_root => obs.drift.push(format!(
            "Secret istio-system/cacerts was made from another root (sha256:{}…, the mesh's is sha256:{}…)",
            &r.sha256[..16],
            &want_root[..16.min(want_root.len())]
        )),
        Some(_) => {}
    }
        match data(&live, "ca-cert.pem").and_then(|p| crate::ca::inspect(&p).ok()) {
            None => obs
                .drift
                .push("Secret istio-system/cacerts has no readable ca-cert.pem".into()),
            Some(ca) => {
                if Some(ca.sha256.as_str()) != recorded.output_str("intermediate_sha256") {
                    obs.drift.push(format!(
                    "Secret istio-system/cacerts holds another intermediate (sha256:{}…) than mesh wrote",
                    &ca.sha256[..16]
                ));
                }
                if ca.not_after - crate::ca::now() < ROTATE_WITHIN_DAYS * 86400 {
                    obs.drift.push(format!(
                    "the intermediate CA expires on {} (within {ROTATE_WITHIN_DAYS} days): it will be rotated",
                    crate::ca::date(ca.not_after)
                ));
                }
            }
        }
        if let Some(files) = recorded.outputs.get(FILES_SHA256).and_then(Value::as_object) {
            for (file, want) in files {
                let live = crate::k8s::secret_data(&live, file).map(|b| crate::rendered::sha256_hex(&b));
                if live.as_deref() != want.as_str() {
                    obs.drift.push(format!(
                        "Secret istio-system/cacerts: {file} is not what mesh wrote ({})",
                        live.map_or("missing".into(), |s| format!("sha256:{}… there", &s[..12]))
                    ));
                }
            }
        }
        Ok(obs)
    }

    /// Before the first apply: a `cacerts` already there (made by hand, or by
    /// another tool) will be replaced; the plan says so, and from which root it
    /// was made.
    async fn preview(cx: Ctx<'_>, _input: &Input) -> Result<Vec<String>, StepError> {
        let conn = cx.connect().await?;
        let Some(live) = crate::k8s::get(&conn, &secret_doc()).await? else {
            return Ok(Vec::new());
        };
        let root = data(&live, "root-cert.pem")
            .and_then(|p| crate::ca::inspect(&p).ok())
            .map_or("an unreadable root".to_string(), |i| {
                format!("root sha256:{}…", &i.sha256[..16])
            });
        Ok(vec![format!(
            "a cacerts Secret mesh did not write is there ({root}): it will be replaced"
        )])
    }

    /// For `mesh import`: a `cacerts` made from the mesh's root, with a
    /// readable intermediate that is not about to expire, is adopted.
    async fn adopt(cx: Ctx<'_>, input: &Input, _text: &str) -> Result<Adoption, StepError> {
        let conn = cx.connect().await?;
        let Some(live) = crate::k8s::get(&conn, &secret_doc()).await? else {
            return Ok(Adoption::Differs(vec![
                "Secret istio-system/cacerts missing".into(),
            ]));
        };
        let root = data(&live, "root-cert.pem").and_then(|p| crate::ca::inspect(&p).ok());
        let ca = data(&live, "ca-cert.pem").and_then(|p| crate::ca::inspect(&p).ok());
        match (root, ca) {
            (Some(r), Some(c))
                if r.sha256 == input.root_sha256
                    && c.not_after - crate::ca::now() >= ROTATE_WITHIN_DAYS * 86400 =>
            {
                Ok(Adoption::Adopted(BTreeMap::from([
                    ("intermediate_sha256".to_string(), Value::from(c.sha256)),
                    (
                        "intermediate_expires".to_string(),
                        Value::from(crate::ca::date(c.not_after)),
                    ),
                    ("root_sha256".to_string(), Value::from(r.sha256)),
                ])))
            }
            (Some(r), Some(_)) if r.sha256 != input.root_sha256 => {
                Ok(Adoption::Differs(vec![format!(
                    "Secret istio-system/cacerts was made from another root (sha256:{}…)",
                    &r.sha256[..16]
                )]))
            }
            (Some(_), Some(_)) => Ok(Adoption::Differs(vec![
                "its intermediate expires within 30 days".into(),
            ])),
            _ => Ok(Adoption::Differs(vec![
                "Secret istio-system/cacerts is not a readable plug-in CA".into(),
            ])),
        }
    }

    /// Deletes the Secret.
    async fn destroy(cx: Ctx<'_>, _recorded: &Recorded<'_>) -> Result<String, StepError> {
        let conn = cx.connect().await?;
        crate::k8s::delete(&conn, &secret_doc()).await?;
        Ok("deleted Secret istio-system/cacerts\n".into())
    }
}

/// istiod reads its CA when it starts: restart the Deployments of every
/// revision (`kubectl rollout restart`: a pod-template annotation).
async fn restart_istiod(conn: &crate::cluster::Connection) -> Result<Vec<String>, StepError> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, ListParams, Patch, PatchParams};
    let deployments: Api<Deployment> = Api::namespaced(conn.client.clone(), "istio-system");
    let lp = ListParams::default();
    let list = conn
        .call("listing istiod Deployments", || deployments.list(&lp))
        .await?;
    let mut restarted = Vec::new();
    let stamp = crate::ca::date(crate::ca::now());
    // istiod, or istiod-<revision>: every revision's control plane.
    for d in list.items {
        let name = d.metadata.name.unwrap_or_default();
        if name != "istiod" && !name.starts_with("istiod-") {
            continue;
        }
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": format!("{stamp} (mesh: new CA)")}}}}});
        let pp = PatchParams::default();
        let p = Patch::Merge(&patch);
        conn.call(&format!("restarting Deployment {name}"), || {
            deployments.patch(&name, &pp, &p)
        })
        .await?;
        restarted.push(format!("Deployment istio-system/{name}"));
    }
    Ok(restarted)
}
