//! The backend's thread: the [`Worker`] owns the connection, serves the
//! requests one at a time, and reads and writes the state Secret and its
//! backup (the lock's side of it is in `lease.rs`).

use super::Location;
use super::codec;
use super::facade::Request;
use super::lease::Hold;
use crate::cluster::{Clusters, Connection};
use crate::k8s::{MANAGED_BY, MESH};
use crate::rendered::Target;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use state::{RemoteOp, State, StateError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The backend's thread: one connection, the lock it holds, its renewal.
pub(super) struct Worker {
    pub(super) location: Location,
    clusters: Clusters,
    /// The Secret's resourceVersion when last read or written.
    version: Option<String>,
    /// The held lock, and the task that renews it.
    pub(super) held: Option<(Arc<Hold>, tokio::task::JoinHandle<()>)>,
}

impl Worker {
    pub(super) fn new(location: Location) -> Worker {
        Worker {
            clusters: Clusters::new(location.kubeconfig.clone()),
            location,
            version: None,
            held: None,
        }
    }

    pub(super) async fn run(mut self, mut rx: tokio::sync::mpsc::UnboundedReceiver<Request>) {
        while let Some(req) = rx.recv().await {
            match req {
                Request::Read(r) => {
                    let _ = r.send(self.read().await);
                }
                Request::Write(st, read_serial, force, r) => {
                    let _ = r.send(self.write(&st, read_serial, force).await);
                }
                Request::Lock(op, timeout, r) => {
                    let _ = r.send(self.lock(&op, timeout).await);
                }
                Request::Unlock(r) => {
                    let _ = r.send(self.unlock().await);
                }
                Request::ForceUnlock(id, r) => {
                    let _ = r.send(self.force_unlock(&id).await);
                }
                Request::MayStart(r) => {
                    let _ = r.send(self.may_start().await);
                }
            }
        }
        let _ = self.unlock().await;
    }

    /// Connects to the state's cluster, for `what`.
    pub(super) async fn connect(&self, what: RemoteOp) -> Result<Connection, StateError> {
        let target = Target {
            cluster: format!("the state's cluster ({})", self.location.context),
            context: self.location.context.clone(),
            kubeconfig: self.location.kubeconfig.clone(),
        };
        self.clusters
            .connect(&target)
            .await
            .map_err(|e| self.location.remote(what, format!("connecting: {e}")))
    }

    /// A kube error worded for the user: a missing namespace, a missing
    /// permission (naming the verb and resource), or the error itself; said
    /// as a failure of `what`.
    pub(super) async fn explain(
        &self,
        what: RemoteOp,
        conn: &Connection,
        verb: &str,
        resource: &str,
        e: kube::Error,
    ) -> StateError {
        let ns = &self.location.namespace;
        let ctx = &self.location.context;
        let message = match &e {
            kube::Error::Api(s) if s.code == 403 => format!(
                "no permission to {verb} {resource} in namespace {ns} (context {ctx}): \
                 grant the kubeconfig's user `{verb}` on `{resource}` there"
            ),
            kube::Error::Api(s) if s.code == 404 => {
                let nss: Api<Namespace> = Api::all(conn.client.clone());
                match nss.get_opt(ns).await {
                    Ok(None) => return self.namespace_missing(what),
                    _ => format!("{verb} {resource}: {e}"),
                }
            }
            _ => format!("{verb} {resource}: {e}"),
        };
        self.location.remote(what, message)
    }

    fn namespace_missing(&self, what: RemoteOp) -> StateError {
        let ns = &self.location.namespace;
        let ctx = &self.location.context;
        self.location.remote(
            what,
            format!(
                "the namespace {ns} does not exist in context {ctx}: create it with \
                 `kubectl --context {ctx} create namespace {ns}`, or set [state] namespace"
            ),
        )
    }

    async fn read(&mut self) -> Result<Option<State>, StateError> {
        let conn = self.connect(RemoteOp::Read).await?;
        // Under the lock, a read is fenced like a write: a plan made from
        // a state another holder is changing would be wrong.
        if self.held.is_some() {
            self.fence(&conn).await?;
        }
        let secrets: Api<Secret> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        let got = match secrets.get_opt(&self.location.name).await {
            Ok(s) => s,
            Err(e) => {
                return Err(self
                    .explain(RemoteOp::Read, &conn, "get", "secrets", e)
                    .await);
            }
        };
        let Some(secret) = got else {
            // A namespace that does not exist is said now, not at the first write.
            let nss: Api<Namespace> = Api::all(conn.client.clone());
            if let Ok(None) = nss.get_opt(&self.location.namespace).await {
                return Err(self.namespace_missing(RemoteOp::Read));
            }
            self.version = None;
            return Ok(None);
        };
        self.foreign(&secret.metadata, "Secret", &self.location.name)?;
        // And after: a holder stopped between the check and the read may
        // have read what another holder wrote meanwhile.
        if self.held.is_some() {
            self.fence(&conn).await?;
        }
        self.version = secret.metadata.resource_version.clone();
        self.load(&conn, &secrets, &secret, RemoteOp::Read)
            .await
            .map(Some)
    }

    /// The state `secret` (the state Secret, or its backup) holds: whole,
    /// or in the parts its manifest names, each mesh's.
    async fn load(
        &self,
        conn: &Connection,
        secrets: &Api<Secret>,
        secret: &Secret,
        what: RemoteOp,
    ) -> Result<State, StateError> {
        let Some(m) = codec::manifest(secret, &self.location)? else {
            return codec::decode(secret, &self.location);
        };
        let mut parts = Vec::with_capacity(m.parts.len());
        for name in &m.parts {
            let part = match secrets.get_opt(name).await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return Err(StateError::RemoteCorrupt {
                        location: self.location.describe(),
                        detail: format!(
                            "its part {} is missing (deleted by hand?); the backup \
                             `{}-backup` may still name a whole state",
                            crate::rendered::shown(name),
                            self.location.name
                        ),
                    });
                }
                Err(e) => return Err(self.explain(what, conn, "get", "secrets", e).await),
            };
            self.foreign(&part.metadata, "Secret", name)?;
            parts.push(part);
        }
        codec::decode_parts(&m, &parts, &self.location)
    }

    /// An object mesh must not touch: one of the names it uses, without
    /// its label. Named, with what to rename.
    pub(super) fn foreign(
        &self,
        meta: &kube::api::ObjectMeta,
        kind: &str,
        name: &str,
    ) -> Result<(), StateError> {
        if crate::k8s::managed_by_mesh(meta) {
            return Ok(());
        }
        Err(StateError::NotOurs {
            what: format!(
                "{kind} {}/{} in context {}",
                self.location.namespace,
                crate::rendered::shown(name),
                self.location.context
            ),
            rename: "Set `[state] name` in the mesh file to a name of your own (mesh uses the \
                     Secrets NAME, NAME-backup and NAME-part-…, and the Lease NAME-lock)"
                .into(),
        })
    }

    /// The state no longer as it was read: writing would lose it.
    fn changed(&self, detail: String) -> StateError {
        StateError::RemoteChanged {
            location: self.location.describe(),
            detail,
        }
    }

    /// The labels of the state Secret and its backup.
    fn labels(st: &State) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.to_string(), MESH.to_string()),
            ("mesh/state".to_string(), st.mesh_id.clone()),
        ])
    }

    async fn write(&mut self, st: &State, read_serial: u64, force: bool) -> Result<(), StateError> {
        let conn = self.connect(RemoteOp::Write).await?;
        let secrets: Api<Secret> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        self.fence(&conn).await?;
        // Never replace what could not be read, or a newer state.
        let current = match secrets.get_opt(&self.location.name).await {
            Ok(s) => s,
            Err(e) => {
                return Err(self
                    .explain(RemoteOp::Write, &conn, "get", "secrets", e)
                    .await);
            }
        };
        if let Some(cur) = &current {
            self.foreign(&cur.metadata, "Secret", &self.location.name)?;
            // Read once, checked, then replaced with this very resourceVersion.
            let old = self.load(&conn, &secrets, cur, RemoteOp::Write).await?;
            self.version = cur.metadata.resource_version.clone();
            self.replaceable(&old, st, read_serial, force)?;
            self.back_up(&conn, &secrets, cur, st).await?;
        }
        let data = match codec::encode(st, &self.location)? {
            codec::Encoded::Whole(gz) => BTreeMap::from([(codec::KEY.to_string(), ByteString(gz))]),
            codec::Encoded::Parts(m, chunks) => {
                // The parts first: the state Secret, written last, makes
                // them the state in one step.
                for (name, chunk) in m.parts.iter().zip(chunks) {
                    self.write_part(&conn, &secrets, name, chunk, st).await?;
                }
                let manifest = serde_json::to_vec(&m)
                    .map_err(|e| self.location.remote(RemoteOp::Write, e.to_string()))?;
                BTreeMap::from([(codec::PARTS_KEY.to_string(), ByteString(manifest))])
            }
        };
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(self.location.name.clone()),
                namespace: Some(self.location.namespace.clone()),
                labels: Some(Worker::labels(st)),
                resource_version: current.as_ref().and(self.version.clone()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Default::default()
        };
        let written = if current.is_some() {
            secrets
                .replace(&self.location.name, &PostParams::default(), &secret)
                .await
        } else {
            secrets.create(&PostParams::default(), &secret).await
        };
        match written {
            Ok(s) => {
                self.version = s.metadata.resource_version;
                self.sweep_parts(&conn, &secrets, &secret).await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Err(self
                .changed("someone else wrote it meanwhile (its resourceVersion changed)".into())),
            Err(e) => Err(self
                .explain(RemoteOp::Write, &conn, "update", "secrets", e)
                .await),
        }
    }

    /// Whether `cur`, the Secret just fetched, may be replaced with `st`:
    /// mesh's, a state it can read, of the same lineage (unless `force`)
    /// and no newer than `read_serial`. Then its resourceVersion is the one
    /// the write replaces.
    fn replaceable(
        &self,
        old: &State,
        st: &State,
        read_serial: u64,
        force: bool,
    ) -> Result<(), StateError> {
        if old.lineage != st.lineage && !force {
            return Err(self.changed(format!(
                "it is another state: lineage {} there, {} here",
                old.lineage, st.lineage
            )));
        }
        if old.serial > read_serial {
            return Err(self.changed(format!(
                "serial {} there is newer than serial {read_serial} it was read at",
                old.serial
            )));
        }
        Ok(())
    }

    /// Writes part `name` of state `st` (its name is its content's: one
    /// already there is rewritten only if it differs).
    async fn write_part(
        &self,
        conn: &Connection,
        secrets: &Api<Secret>,
        name: &str,
        chunk: Vec<u8>,
        st: &State,
    ) -> Result<(), StateError> {
        let existing = match secrets.get_opt(name).await {
            Ok(p) => p,
            Err(e) => {
                return Err(self
                    .explain(RemoteOp::Write, conn, "get", "secrets", e)
                    .await);
            }
        };
        if let Some(p) = &existing {
            self.foreign(&p.metadata, "Secret", name)?;
            if p.data
                .as_ref()
                .and_then(|d| d.get(codec::CHUNK_KEY))
                .map(|c| &c.0)
                == Some(&chunk)
            {
                return Ok(());
            }
        }
        let mut labels = Worker::labels(st);
        labels.insert(codec::PART_LABEL.to_string(), "true".to_string());
        let part = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.location.namespace.clone()),
                labels: Some(labels),
                resource_version: existing.and_then(|p| p.metadata.resource_version),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                codec::CHUNK_KEY.to_string(),
                ByteString(chunk),
            )])),
            ..Default::default()
        };
        let r = if part.metadata.resource_version.is_some() {
            secrets.replace(name, &PostParams::default(), &part).await
        } else {
            secrets.create(&PostParams::default(), &part).await
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(self
                .explain(RemoteOp::Write, conn, "create or update", "secrets", e)
                .await),
        }
    }

    /// Deletes this state's parts (mesh's, named `<name>-part-…`) that
    /// neither `written` (the state Secret just written) nor the backup, as
    /// it is now, names. Only while this process still holds the lock (a
    /// holder that lost it must not sweep the parts of the next one's
    /// write); any failure here leaves garbage, never a loss.
    async fn sweep_parts(&self, conn: &Connection, secrets: &Api<Secret>, written: &Secret) {
        if self.fence(conn).await.is_err() {
            return;
        }
        let backup = match secrets
            .get_opt(&format!("{}-backup", self.location.name))
            .await
        {
            Ok(b) => b,
            // Without the backup's word, nothing is swept.
            Err(_) => return,
        };
        let mut keep = Vec::new();
        for s in [Some(written), backup.as_ref()].into_iter().flatten() {
            match codec::manifest(s, &self.location) {
                Ok(m) => keep.extend(m.into_iter().flat_map(|m| m.parts)),
                Err(_) => return,
            }
        }
        let prefix = format!("{}-part-", self.location.name);
        let lp = kube::api::ListParams::default()
            .labels(&format!("{MANAGED_BY}={MESH},{}=true", codec::PART_LABEL));
        // Names only: the parts' data is not read for this.
        let Ok(list) = secrets.list_metadata(&lp).await else {
            return;
        };
        for p in list.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            // `<sha12>-<i>` after the prefix: a state named `X-part`
            // has parts of its own that this one must not take for its.
            let ours = name.strip_prefix(&prefix).is_some_and(|rest| {
                rest.split_once('-').is_some_and(|(sha, i)| {
                    sha.len() == 12
                        && sha.bytes().all(|b| b.is_ascii_hexdigit())
                        && !i.is_empty()
                        && i.bytes().all(|b| b.is_ascii_digit())
                })
            });
            if ours && !keep.contains(&name) {
                let _ = secrets.delete(&name, &Default::default()).await;
            }
        }
    }

    /// Keeps `cur`, the version about to be replaced, as `<name>-backup`.
    async fn back_up(
        &self,
        conn: &Connection,
        secrets: &Api<Secret>,
        cur: &Secret,
        st: &State,
    ) -> Result<(), StateError> {
        let bname = format!("{}-backup", self.location.name);
        let existing = match secrets.get_opt(&bname).await {
            Ok(b) => b,
            Err(e) => {
                return Err(self
                    .explain(RemoteOp::Write, conn, "get", "secrets", e)
                    .await);
            }
        };
        if let Some(b) = &existing {
            self.foreign(&b.metadata, "Secret", &bname)?;
        }
        let mut backup = cur.clone();
        backup.metadata = kube::api::ObjectMeta {
            name: Some(bname.clone()),
            namespace: Some(self.location.namespace.clone()),
            labels: Some(Worker::labels(st)),
            resource_version: existing.and_then(|b| b.metadata.resource_version),
            ..Default::default()
        };
        let r = if backup.metadata.resource_version.is_some() {
            secrets
                .replace(&bname, &PostParams::default(), &backup)
                .await
        } else {
            secrets.create(&PostParams::default(), &backup).await
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(self
                .explain(RemoteOp::Write, conn, "create or update", "secrets", e)
                .await),
        }
    }
}
