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
    /// The root certificate (PEM, public): the mesh file's `[trust]` root.
    pub root_cert_pem: String,
    /// sha256 of the root certificate (DER).
    pub root_sha256: String,
    /// Where the root key is: read at apply time only.
    pub root_key: PathBuf,
    /// Validity of the intermediate.
    pub days: u32,
    /// Where a root rotation stands: [`Stage::Plain`] unless the mesh
    /// file's root is not yet the only root this primary trusts.
    pub stage: Stage,
}

/// One phase of a root rotation, as this primary's `cacerts` holds it
/// (docs/credentials.md, "Root rotation"). Which one the next apply takes
/// is decided from the state by `engine::trust`, one phase per apply.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Stage {
    /// An intermediate of the root, which `root-cert.pem` holds alone:
    /// every mesh that is not rotating, and phase 3 (the old root dropped).
    #[default]
    Plain,
    /// Phase 1: the intermediate in place (signed by the old root) is
    /// kept, and `root-cert.pem` trusts the old root and the new one.
    TrustBoth { old: OldRoot },
    /// Phase 2: a new intermediate signed by the new root; `root-cert.pem`
    /// still trusts both, the new root first (changed bytes, so istiod
    /// pushes the bundle to the proxies).
    NewIntermediate { old: OldRoot },
}

impl Stage {
    /// The rotation phase this stage is (1 or 2), or None for `Plain`.
    pub fn phase(&self) -> Option<u8> {
        match self {
            Stage::Plain => None,
            Stage::TrustBoth { .. } => Some(1),
            Stage::NewIntermediate { .. } => Some(2),
        }
    }
}

/// The root a rotation moves away from.
#[derive(Debug, Clone, PartialEq)]
pub enum OldRoot {
    /// A root mesh recorded (its sha256).
    Recorded(String),
    /// What istiod signs with now, in a mesh that ran without `[trust]`: a
    /// `cacerts` plugged by hand if there is one, else istiod's own
    /// self-signed CA (Secret `istio-ca-secret`).
    Live,
}

impl OldRoot {
    fn shown(&self) -> String {
        match self {
            OldRoot::Recorded(sha) => format!("the old root sha256:{}…", short(sha)),
            OldRoot::Live => {
                "the root istiod signs with now (a cacerts made by hand, else its self-signed istio-ca-secret)".into()
            }
        }
    }
    fn annotation(&self) -> &str {
        match self {
            OldRoot::Recorded(sha) => sha,
            OldRoot::Live => "in-place",
        }
    }
}

fn short(sha: &str) -> &str {
    &sha[..16.min(sha.len())]
}

pub const SECRET: &str = "cacerts";
/// The root the Secret's intermediate was signed by, as mesh wrote it.
pub const ROOT_ANNOTATION: &str = "mesh/root-sha256";
/// During a root rotation: the roots `root-cert.pem` trusts, by sha256.
pub const TRUSTED_ANNOTATION: &str = "mesh/trusted-roots";
/// The output with the sha256 of each file of `cacerts` as mesh wrote it.
pub const FILES_SHA256: &str = "files_sha256";
/// The output with the roots `root-cert.pem` trusts (sha256 each), in order.
pub const TRUSTED_ROOTS: &str = "trusted_roots";

/// A record's [`TRUSTED_ROOTS`]: None when it has none (the one root it
/// was signed by is then what it trusts), else a non-empty list of sha256
/// fingerprints (64 lowercase hex digits each), or why it is not one (a
/// hand-edited or damaged state). The reason names no value.
pub fn trusted_roots(
    outputs: &std::collections::BTreeMap<String, Value>,
) -> Result<Option<Vec<String>>, String> {
    let Some(v) = outputs.get(TRUSTED_ROOTS) else {
        return Ok(None);
    };
    let what = match v {
        Value::Array(list) if list.is_empty() => "an empty list".to_string(),
        Value::Array(list) => match list.iter().position(|r| !r.as_str().is_some_and(is_sha256)) {
            None => {
                return Ok(Some(
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect(),
                ));
            }
            Some(i) => {
                let item = match &list[i] {
                    Value::String(_) => "a string that is not 64 lowercase hex digits",
                    other => json_kind(other),
                };
                format!("a list whose item {} is {item}", i + 1)
            }
        },
        other => json_kind(other).to_string(),
    };
    Err(format!(
        "`{TRUSTED_ROOTS}` is {what}, not a non-empty list of sha256 fingerprints (64 lowercase \
         hex digits each)"
    ))
}

/// Whether `s` is a sha256 as mesh writes it: 64 lowercase hex digits.
fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a JSON value is, without its value.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// An intermediate closer to its expiry than this is rotated.
pub use crate::ca::ROTATE_WITHIN_DAYS;
/// Istio's setting that lets a running istiod take a `root-cert.pem` that
/// adds or drops a root, without a restart (Istio's `istio_ca.go`).
pub const MULTI_ROOT_ENV: &str = "ISTIO_MULTIROOT_MESH";

/// The Secret as it will be, its contents described: the keys exist only
/// once apply makes them.
pub fn render(input: &Input) -> Rendered {
    let root = short(&input.root_sha256);
    let fresh = |by: &str| {
        format!(
            "(a new intermediate CA for {}, valid {} days, signed by {by}root sha256:{root}…, made at apply time)",
            input.cluster, input.days
        )
    };
    let (annotations, files) = match &input.stage {
        Stage::Plain => (
            json!({ROOT_ANNOTATION: input.root_sha256}),
            json!({
                "ca-cert.pem": fresh(""),
                "ca-key.pem": "(sensitive: the intermediate's private key, made at apply time)",
                "root-cert.pem": format!("(the root certificate, sha256:{root}…)"),
                "cert-chain.pem": "(the intermediate, then the root)",
            }),
        ),
        Stage::TrustBoth { old } => (
            json!({
                ROOT_ANNOTATION: old.annotation(),
                TRUSTED_ANNOTATION: format!("{},{}", old.annotation(), input.root_sha256),
            }),
            json!({
                "ca-cert.pem": format!("(kept: the intermediate in place, signed by {})", old.shown()),
                "ca-key.pem": "(sensitive: kept, the key in place)",
                "root-cert.pem": format!(
                    "(root rotation phase 1 of 3: a bundle trusting {} and the new root sha256:{root}…)",
                    old.shown()
                ),
                "cert-chain.pem": "(kept: the chain in place)",
            }),
        ),
        Stage::NewIntermediate { old } => (
            json!({
                ROOT_ANNOTATION: input.root_sha256,
                TRUSTED_ANNOTATION: format!("{},{}", old.annotation(), input.root_sha256),
            }),
            json!({
                "ca-cert.pem": fresh("the new "),
                "ca-key.pem": "(sensitive: the intermediate's private key, made at apply time)",
                "root-cert.pem": format!(
                    "(root rotation phase 2 of 3: kept, the bundle trusting {} and the new root sha256:{root}…)",
                    old.shown()
                ),
                "cert-chain.pem": "(the intermediate, then the new root)",
            }),
        ),
    };
    Rendered {
        documents: vec![json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": SECRET,
                "namespace": "istio-system",
                "annotations": annotations,
            },
            "type": "Opaque",
            "stringData": files,
        })],
        unknown: false,
    }
}

// ---- against a cluster ----

use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::access::{self, Access, Need};
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

    /// Secret `cacerts`, and istiod restarted to read its new CA.
    fn apply_access(_: &Input, _update: bool) -> Vec<Need> {
        let mut access = access::in_istio(&["get", "create", "patch"], "", "secrets");
        access.extend(access::in_istio(&["list", "patch"], "apps", "deployments"));
        access::here(access)
    }

    fn destroy_access() -> Vec<Access> {
        access::in_istio(&["delete"], "", "secrets")
    }

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn removes(cluster: &str, _: Option<&str>, _: &[Value]) -> String {
        format!(
            "Secret istio-system/cacerts in {cluster}: its intermediate CA \
             (istiod falls back to a self-signed root when it restarts)"
        )
    }

    /// Writes `cacerts` for the input's stage: a new intermediate of the
    /// root (plain, and phase 2), or the intermediate in place kept beside
    /// a bundle of both roots (phase 1). A `cacerts` mesh did not write is
    /// replaced, and the log says so. istiod is restarted (as `kubectl
    /// rollout restart` does) only when it cannot take the new files by
    /// itself (Istio's `istio_ca.go`): a new intermediate under the same
    /// roots it reloads; a root added or dropped it reloads only with
    /// `ISTIO_MULTIROOT_MESH`; anything else it reads when it starts.
    async fn apply(
        cx: Ctx<'_>,
        input: &Input,
        rendered: &Rendered,
        _previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        let conn = cx.connect().await?;
        let mut log = String::new();
        let before = crate::k8s::get(&conn, &secret_doc()).await?;
        if let Some(note) = before.as_ref().and_then(foreign_cacerts) {
            log.push_str(&note);
        }
        // What istiod has loaded, read before the write: the file a killed
        // run wrote may be one istiod never took.
        let loaded = published_roots(&conn).await?;
        let files = stage_files(cx, &conn, input, before.as_ref(), &mut log).await?;
        let named: [(&str, &[u8]); 4] = [
            ("ca-cert.pem", files.cert.as_bytes()),
            ("ca-key.pem", files.key.expose().as_bytes()),
            ("root-cert.pem", files.roots.as_bytes()),
            ("cert-chain.pem", files.chain.as_bytes()),
        ];
        let secret = secret_of(rendered, &files, &named);
        // Each file's fingerprint (the key's too: a fingerprint, never the
        // key), so a refresh finds any byte changed: a rogue CA appended to
        // root-cert.pem, a certificate added to the chain, a swapped key.
        let fingerprints: serde_json::Map<String, Value> = named
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(crate::rendered::sha256_hex(v))))
            .collect();
        cx.say("writing Secret istio-system/cacerts…");
        crate::k8s::apply(&conn, &secret).await?;
        let trusted: Vec<String> = crate::ca::bundle(&files.roots).into_iter().map(|(s, _)| s).collect();
        log.push_str(&format!(
            "wrote Secret istio-system/cacerts: {} intermediate sha256:{} for {}, valid until {}, key {}; \
             root-cert.pem trusts {}\n",
            if files.kept { "the kept" } else { "a new" },
            short(&files.info.sha256),
            input.cluster,
            crate::ca::date(files.info.not_after),
            files.key,
            trusted
                .iter()
                .map(|s| format!("sha256:{}…", short(s)))
                .collect::<Vec<_>>()
                .join(" and ")
        ));
        let file_before = before.as_ref().and_then(|live| data(live, "root-cert.pem"));
        reload_istiod(&conn, loaded.as_deref(), file_before.as_deref(), &files, &trusted, &mut log)
            .await?;
        Ok(Applied {
            outputs: BTreeMap::from([
                (FILES_SHA256.to_string(), Value::Object(fingerprints)),
                (
                    "intermediate_sha256".to_string(),
                    Value::from(files.info.sha256.clone()),
                ),
                (
                    "intermediate_expires".to_string(),
                    Value::from(crate::ca::date(files.info.not_after)),
                ),
                ("root_sha256".to_string(), Value::from(files.signer.clone())),
                (
                    TRUSTED_ROOTS.to_string(),
                    Value::from(trusted),
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
        // The roots mesh wrote: the recorded list (a rotation trusts two),
        // else the one the intermediate was signed by.
        let want: Vec<String> = match trusted_roots(recorded.outputs) {
            Ok(Some(list)) => list,
            Ok(None) => recorded
                .output_str("root_sha256")
                .map(String::from)
                .into_iter()
                .collect(),
            Err(why) => {
                return Err(StepError::Failed(format!(
                    "the state's record of this step is damaged: {why}. Restore the state from \
                     its `.backup`, or `mesh state rm` this step, then `mesh import --force`"
                )));
            }
        };
        let Some(live) = crate::k8s::get(&conn, &secret_doc()).await? else {
            obs.drift.push("Secret istio-system/cacerts missing".into());
            return Ok(obs);
        };
        let held: Vec<String> = data(&live, "root-cert.pem")
            .map(|p| crate::ca::bundle(&p).into_iter().map(|(s, _)| s).collect())
            .unwrap_or_default();
        let shown = |l: &[String]| {
            l.iter()
                .map(|s| format!("sha256:{}…", short(s)))
                .collect::<Vec<_>>()
                .join(" and ")
        };
        if held.is_empty() {
            obs.drift
                .push("Secret istio-system/cacerts has no readable root-cert.pem".into());
        } else if held != want && !want.is_empty() {
            obs.drift.push(format!(
                "Secret istio-system/cacerts trusts another root than mesh wrote ({} there, {} written)",
                shown(&held),
                shown(&want)
            ));
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
                // During a root rotation the next phase makes the new
                // intermediate (a phase 1 re-run keeps the old one): no
                // drift that an apply of this phase could not repair.
                let rotating = want.len() > 1;
                if !rotating && ca.not_after - crate::ca::now() < ROTATE_WITHIN_DAYS * 86400 {
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
    async fn preview(cx: Ctx<'_>, input: &Input) -> Result<Vec<String>, StepError> {
        let conn = cx.connect().await?;
        let Some(live) = crate::k8s::get(&conn, &secret_doc()).await? else {
            return Ok(Vec::new());
        };
        let root = data(&live, "root-cert.pem")
            .and_then(|p| crate::ca::inspect(&p).ok())
            .map_or("an unreadable root".to_string(), |i| {
                format!("root sha256:{}…", &i.sha256[..16])
            });
        Ok(vec![match input.stage {
            // [trust] added to a running mesh: istiod signs with it.
            Stage::TrustBoth { .. } => format!(
                "a cacerts Secret mesh did not write is there ({root}): istiod signs with it, so \
                 phase 1 keeps its intermediate and trusts its roots beside the mesh's"
            ),
            _ => format!("a cacerts Secret mesh did not write is there ({root}): it will be replaced"),
        }])
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

/// The four files of `cacerts`, and what the log and outputs say of them.
struct Files {
    cert: String,
    key: Sensitive,
    chain: String,
    roots: String,
    /// The intermediate.
    info: crate::ca::CertInfo,
    /// sha256 of the root that signed the intermediate.
    signer: String,
    /// The intermediate in place was kept (phase 1).
    kept: bool,
}

/// A new intermediate of the mesh file's root; `roots` is the
/// `root-cert.pem` to keep (phase 2), or None for the root alone.
fn new_intermediate(cx: Ctx<'_>, input: &Input, roots: Option<String>) -> Result<Files, StepError> {
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
    Ok(Files {
        roots: roots.unwrap_or(ca.root_pem),
        cert: ca.cert_pem,
        key: ca.key_pem,
        chain: ca.chain_pem,
        info: ca.info,
        signer: input.root_sha256.clone(),
        kept: false,
    })
}

/// Phase 1: the CA istiod signs with now, kept, with a bundle of the roots
/// it trusts and the new one. From mesh's own `cacerts` (whose
/// `root-cert.pem` must hold the recorded old root), or, in a mesh that ran
/// without `[trust]`, from a `cacerts` made by hand, else istiod's
/// self-signed `istio-ca-secret`. None when there is no CA at all and no
/// istiod ready (nothing was signed yet); an error when istiod runs but its
/// CA cannot be found, or the files to keep are not a working CA: a phase
/// never writes a `cacerts` istiod would refuse.
async fn kept_ca(
    conn: &crate::cluster::Connection,
    before: Option<&kube::api::DynamicObject>,
    old: &OldRoot,
    input: &Input,
) -> Result<Option<Files>, StepError> {
    let fail = |why: String| {
        StepError::Failed(format!(
            "root rotation phase 1 keeps the CA istiod of `{}` signs with, and {why}. Nothing was \
             written. Restore that CA (Secret istio-system/cacerts) from a backup, or swap the root \
             at once, accepting that workloads of the old root lose mTLS until restarted: \
             `mesh apply --replace {}/plug-ca`",
            input.cluster, input.cluster
        ))
    };
    let file = |live: &kube::api::DynamicObject, k: &str| data(live, k).unwrap_or_default();
    // (cert, key, chain, the old roots in their order)
    let (cert, key, chain, old_roots): (String, Sensitive, String, Vec<(String, String)>) = match (old, before) {
        (OldRoot::Recorded(sha), None) => {
            return Err(fail(format!(
                "Secret istio-system/cacerts (of root sha256:{}…) is gone",
                short(sha)
            )));
        }
        (OldRoot::Recorded(sha), Some(live)) => {
            let roots = crate::ca::bundle(&file(live, "root-cert.pem"));
            if !roots.iter().any(|(s, _)| s == sha) {
                return Err(fail(format!(
                    "its cacerts no longer trusts the old root sha256:{}… mesh recorded",
                    short(sha)
                )));
            }
            // A phase 1 re-run (after a crash): the roots it wrote already.
            let roots = roots.into_iter().filter(|(s, _)| *s != input.root_sha256).collect();
            (file(live, "ca-cert.pem"), Sensitive::new(file(live, "ca-key.pem")), file(live, "cert-chain.pem"), roots)
        }
        // A cacerts made by hand: istiod signs with it.
        (OldRoot::Live, Some(live)) => {
            let roots = crate::ca::bundle(&file(live, "root-cert.pem"));
            let roots = roots.into_iter().filter(|(s, _)| *s != input.root_sha256).collect();
            (file(live, "ca-cert.pem"), Sensitive::new(file(live, "ca-key.pem")), file(live, "cert-chain.pem"), roots)
        }
        (OldRoot::Live, None) => {
            let doc = json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "istio-ca-secret", "namespace": "istio-system"}});
            match crate::k8s::get(conn, &doc).await? {
                Some(live) => {
                    let cert = file(&live, "ca-cert.pem");
                    let root = crate::ca::bundle(&cert);
                    // Self-signed: the CA is its own root and its own chain.
                    (cert.clone(), Sensitive::new(file(&live, "ca-key.pem")), cert, root)
                }
                None if istiod_ready(conn).await? => {
                    return Err(fail(
                        "istiod runs but neither Secret cacerts nor istio-ca-secret is there, so its \
                         CA cannot be kept"
                            .into(),
                    ));
                }
                None => return Ok(None),
            }
        }
    };
    // A cacerts made by hand from the mesh file's root already: nothing to
    // rotate, its intermediate is kept under that root alone.
    let (old_roots, same_root) = if old_roots.is_empty() && matches!(old, OldRoot::Live) && before.is_some() {
        (vec![(input.root_sha256.clone(), input.root_cert_pem.clone())], true)
    } else {
        (old_roots, false)
    };
    // Everything istiod checks before it signs with a CA.
    let info = crate::ca::inspect(&cert).map_err(|e| fail(format!("its ca-cert.pem cannot be read ({e})")))?;
    if key.expose().trim().is_empty() || chain.trim().is_empty() || old_roots.is_empty() {
        return Err(fail("its CA is incomplete (a key, chain or root is missing)".into()));
    }
    crate::ca::key_matches(&cert, &key).map_err(|e| fail(format!("its ca-key.pem {e}")))?;
    let issuers: Vec<String> = crate::ca::bundle(&chain)
        .into_iter()
        .chain(old_roots.iter().cloned())
        .map(|(_, pem)| pem)
        .collect();
    if !issuers
        .iter()
        .any(|i| crate::ca::verify_signed_by(&cert, i).is_ok())
    {
        return Err(fail("its ca-cert.pem is signed by none of its chain and roots".into()));
    }
    let signer = match old {
        OldRoot::Recorded(sha) => sha.clone(),
        OldRoot::Live => old_roots[0].0.clone(),
    };
    let mut pems: Vec<&str> = old_roots.iter().map(|(_, p)| p.as_str()).collect();
    if !same_root {
        pems.push(&input.root_cert_pem);
    }
    Ok(Some(Files {
        roots: crate::ca::join_bundle(&pems),
        cert,
        key,
        chain,
        info,
        signer,
        kept: true,
    }))
}

/// Whether an istiod Deployment of istio-system has a ready replica.
async fn istiod_ready(conn: &crate::cluster::Connection) -> Result<bool, StepError> {
    Ok(istiods(conn)
        .await?
        .iter()
        .any(|d| d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) > 0))
}

/// The Deployments of istio-system that are an istiod: `istiod`, or
/// `istiod-<revision>` (every revision's control plane).
async fn istiods(
    conn: &crate::cluster::Connection,
) -> Result<Vec<k8s_openapi::api::apps::v1::Deployment>, StepError> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, ListParams};
    let deployments: Api<Deployment> = Api::namespaced(conn.client.clone(), "istio-system");
    let lp = ListParams::default();
    let list = conn
        .call("listing istiod Deployments", || deployments.list(&lp))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|d| {
            crate::istio::is_istiod(d.metadata.name.as_deref().unwrap_or_default())
        })
        .collect())
}

/// A note for a `cacerts` mesh did not write, which the apply replaces.
fn foreign_cacerts(live: &kube::api::DynamicObject) -> Option<String> {
    let ours = live
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ROOT_ANNOTATION));
    if ours {
        return None;
    }
    let their_root = data(live, "root-cert.pem")
        .and_then(|p| crate::ca::inspect(&p).ok())
        .map_or("unreadable".to_string(), |i| {
            format!("sha256:{}", short(&i.sha256))
        });
    Some(format!(
        "replaced a cacerts Secret mesh did not write (its root: {their_root})\n"
    ))
}

/// The files this apply writes, by the stage of a root rotation it takes.
async fn stage_files(
    cx: Ctx<'_>,
    conn: &crate::cluster::Connection,
    input: &Input,
    before: Option<&kube::api::DynamicObject>,
    log: &mut String,
) -> Result<Files, StepError> {
    Ok(match &input.stage {
        // Also phase 3: a new intermediate of the new root beside it
        // alone. Workload certificates of phase 2's intermediate still
        // chain to that root.
        Stage::Plain => new_intermediate(cx, input, None)?,
        Stage::NewIntermediate { old } => {
            let live = before.ok_or_else(|| lost_phase_one(input, old))?;
            let roots = data(live, "root-cert.pem").unwrap_or_default();
            let held: Vec<String> = crate::ca::bundle(&roots).into_iter().map(|(s, _)| s).collect();
            let old_ok = match old {
                OldRoot::Recorded(sha) => held.contains(sha),
                OldRoot::Live => held.len() >= 2,
            };
            if !(old_ok && held.contains(&input.root_sha256)) {
                return Err(lost_phase_one(input, old));
            }
            // The same roots, the new one first. istiod takes the new
            // intermediate in place either way; changed bytes also make it
            // push the bundle (`UpdateTrustAnchor` compares bytes), and
            // the proxies' agents re-request their certificates, now
            // under the new root (Istio's rotation test changes the
            // bundle's bytes in this step for the same reason).
            new_intermediate(cx, input, Some(new_first(&roots, &input.root_sha256)))?
        }
        Stage::TrustBoth { old } => match kept_ca(conn, before, old, input).await? {
            Some(files) => files,
            None => {
                log.push_str(&format!(
                    "{} has no CA yet (no cacerts, no istio-ca-secret, and no istiod ready): no \
                     workload holds a certificate of another root, so the new root is used at once\n",
                    input.cluster
                ));
                new_intermediate(cx, input, None)?
            }
        },
    })
}

/// `roots` (a bundle) with the root `first` moved to the front, the
/// others in their order.
fn new_first(roots: &str, first: &str) -> String {
    let all = crate::ca::bundle(roots);
    let (head, rest): (Vec<_>, Vec<_>) = all.iter().partition(|(sha, _)| sha == first);
    let pems: Vec<&str> = head.iter().chain(&rest).map(|(_, pem)| pem.as_str()).collect();
    crate::ca::join_bundle(&pems)
}

/// The `cacerts` Secret to write: the rendered one with the files as
/// `data` and the roots it signs with and trusts as annotations.
fn secret_of(rendered: &Rendered, files: &Files, named: &[(&str, &[u8]); 4]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut secret = rendered.documents.first().cloned().unwrap_or_default();
    if let Some(obj) = secret.as_object_mut() {
        obj.remove("stringData");
        let data: serde_json::Map<String, Value> = named
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(b64.encode(v))))
            .collect();
        obj.insert("data".into(), Value::Object(data));
        // What the annotations say, as written (the self-signed root's
        // own sha256, once it is known).
        let trusted: Vec<String> = crate::ca::bundle(&files.roots).into_iter().map(|(s, _)| s).collect();
        if let Some(a) = obj
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Value::as_object_mut)
        {
            a.insert(ROOT_ANNOTATION.into(), Value::from(files.signer.clone()));
            if trusted.len() > 1 {
                a.insert(TRUSTED_ANNOTATION.into(), Value::from(trusted.join(",")));
            } else {
                a.remove(TRUSTED_ANNOTATION);
            }
        }
    }
    secret
}

/// The roots istiod has loaded: the `root-cert.pem` it publishes in
/// ConfigMap istio-system/istio-ca-root-cert (its own self-signed root
/// before any `cacerts`). `None` when it has published none.
async fn published_roots(conn: &crate::cluster::Connection) -> Result<Option<String>, StepError> {
    let doc = crate::k8s::object("v1", "ConfigMap", Some(crate::istio::NAMESPACE), crate::istio::ROOT_CONFIGMAP);
    Ok(crate::k8s::get(conn, &doc)
        .await?
        .and_then(|cm| cm.data.pointer("/data/root-cert.pem")?.as_str().map(String::from)))
}

/// Restarts istiod when it cannot take the new `cacerts` in place
/// ([`reload`], from the roots istiod has `loaded` and those written),
/// saying so.
async fn reload_istiod(
    conn: &crate::cluster::Connection,
    loaded: Option<&str>,
    file_before: Option<&str>,
    files: &Files,
    trusted: &[String],
    log: &mut String,
) -> Result<(), StepError> {
    let loaded_roots: Option<Vec<String>> =
        loaded.map(|p| crate::ca::bundle(p).into_iter().map(|(s, _)| s).collect());
    let live = loaded.zip(loaded_roots.as_deref());
    match reload(live, file_before, (files.roots.as_str(), trusted)) {
        Reload::Itself => log.push_str(
            "istiod has loaded these roots: it reloads cacerts by itself, nothing restarted\n",
        ),
        reload => {
            let restarted = restart_istiod(conn, reload == Reload::WithMultiRoot).await?;
            if !restarted.is_empty() {
                log.push_str(&format!(
                    "restarted {} to load the new CA\n",
                    restarted.join(", ")
                ));
            } else if reload == Reload::WithMultiRoot {
                log.push_str(&format!(
                    "a root added or dropped: istiod takes it in place ({MULTI_ROOT_ENV}=true), nothing restarted\n"
                ));
            }
        }
    }
    Ok(())
}

fn lost_phase_one(input: &Input, old: &OldRoot) -> StepError {
    StepError::Failed(format!(
        "root rotation phase 2 needs phase 1 in place: Secret istio-system/cacerts of `{}` trusting \
         {} and the new root sha256:{}…, and it does not. `mesh apply` with its refresh \
         (without --no-refresh) shows the drift and writes phase 1 there again before any phase \
         goes on",
        input.cluster,
        old.shown(),
        short(&input.root_sha256),
    ))
}

/// How a running istiod takes a new `cacerts` (Istio's `istio_ca.go`,
/// handleEvent): by itself when `root-cert.pem` trusts the same roots; with
/// `ISTIO_MULTIROOT_MESH` when one set of roots holds the other; otherwise
/// only when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reload {
    Itself,
    WithMultiRoot,
    Restart,
}

/// From the roots istiod has `loaded` (as it published them), the
/// `root-cert.pem` the Secret held before this write (`file_before`), and
/// what is written (`after`).
fn reload(
    loaded: Option<(&str, &[String])>,
    file_before: Option<&str>,
    after: (&str, &[String]),
) -> Reload {
    let Some((loaded_bytes, loaded)) = loaded else {
        // Nothing published: a restart is the one way to know istiod reads
        // cacerts.
        return Reload::Restart;
    };
    let (after_bytes, after) = after;
    // istiod compares root-cert.pem byte for byte with what it loaded: the
    // same roots written otherwise (line endings, order) is a root change
    // to it. Where it publishes them otherwise than the file, the same
    // roots it published with the file's bytes unchanged are taken too.
    if loaded_bytes == after_bytes || (loaded == after && file_before == Some(after_bytes)) {
        return Reload::Itself;
    }
    let holds = |a: &[String], b: &[String]| b.iter().all(|x| a.contains(x));
    if holds(loaded, after) || holds(after, loaded) {
        Reload::WithMultiRoot
    } else {
        Reload::Restart
    }
}

/// istiod reads its CA when it starts: restart the Deployments of every
/// revision (`kubectl rollout restart`: a pod-template annotation).
/// With `unless_multi_root`, a Deployment whose istiod has
/// `ISTIO_MULTIROOT_MESH=true` is left running: it takes the new roots in
/// place.
async fn restart_istiod(
    conn: &crate::cluster::Connection,
    unless_multi_root: bool,
) -> Result<Vec<String>, StepError> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};
    let deployments: Api<Deployment> = Api::namespaced(conn.client.clone(), "istio-system");
    let mut restarted = Vec::new();
    let stamp = crate::ca::date(crate::ca::now());
    for d in istiods(conn).await? {
        let name = d.metadata.name.clone().unwrap_or_default();
        if unless_multi_root && multi_root(&d) {
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

/// Whether a Deployment's containers have `ISTIO_MULTIROOT_MESH=true`.
fn multi_root(d: &k8s_openapi::api::apps::v1::Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(|p| {
            p.containers.iter().any(|c| {
                c.env.iter().flatten().any(|e| {
                    e.name == MULTI_ROOT_ENV && e.value.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("true"))
                })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istiod_reloads_the_same_bytes_itself_and_a_held_set_with_multi_root() {
        let roots = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (a, ab, b) = (roots(&["a"]), roots(&["a", "b"]), roots(&["b"]));
        // Nothing published: only a restart is sure to load cacerts.
        assert_eq!(reload(None, None, ("A", &a)), Reload::Restart);
        // Byte for byte what istiod loaded: taken in place.
        assert_eq!(reload(Some(("A", &a)), None, ("A", &a)), Reload::Itself);
        // The same roots written otherwise are a change to istiod.
        assert_eq!(reload(Some(("A", &a)), Some("A"), ("A\r\n", &a)), Reload::WithMultiRoot);
        // Published otherwise than the file, the file unchanged: taken.
        assert_eq!(reload(Some(("A\n", &a)), Some("A"), ("A", &a)), Reload::Itself);
        // The file already new (a killed run wrote it) but istiod still on
        // the old root: the file does not count.
        assert_eq!(reload(Some(("A", &a)), Some("B"), ("B", &b)), Reload::Restart);
        // A root added (phase 1) or dropped (phase 3): one set holds the other.
        assert_eq!(reload(Some(("A", &a)), Some("A"), ("AB", &ab)), Reload::WithMultiRoot);
        assert_eq!(reload(Some(("AB", &ab)), Some("AB"), ("B", &b)), Reload::WithMultiRoot);
        // Another root altogether: only a restart takes it.
        assert_eq!(reload(Some(("A", &a)), Some("A"), ("B", &b)), Reload::Restart);
    }
}
