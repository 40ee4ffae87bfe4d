//! The state in Secrets: the same JSON document as the local file,
//! gzipped. One that fits ([`MAX_BYTES`]) is the data key [`KEY`] of the
//! state Secret itself. A larger one (a fleet of a thousand clusters is
//! about 1.7 MB gzipped) is cut into parts of at most [`MAX_BYTES`], each
//! the key [`CHUNK_KEY`] of a Secret `<name>-part-<sha>-<i>` named after
//! the whole's sha256, and the state Secret holds only [`PARTS_KEY`]: the
//! parts' names and that sha256. The parts are written first and the state
//! Secret last, with its resourceVersion, so a write switches from one
//! whole state to the next in one step and a reader never sees half of
//! one. Never unpacked past the local state file's limit. Pure: the
//! worker reads and writes the Secrets around it.

use super::Location;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::api::core::v1::Secret;
use serde::{Deserialize, Serialize};
use state::{RemoteOp, State, StateError};
use std::io::{Read, Write};

/// The Secret's data key, for a state in one Secret.
pub(super) const KEY: &str = "state.json.gz";
/// The state Secret's data key, for a state in parts.
pub(super) const PARTS_KEY: &str = "parts.json";
/// A part's data key.
pub(super) const CHUNK_KEY: &str = "chunk";
/// The label every part carries (with mesh's own).
pub(super) const PART_LABEL: &str = "mesh/state-part";
/// Kubernetes refuses objects above 1 MiB; keep room for metadata.
pub(super) const MAX_BYTES: usize = 1024 * 1024 - 64 * 1024;
/// At most this many parts: 60 MB gzipped, far past any fleet the planner
/// handles in memory.
pub(super) const MAX_PARTS: usize = 64;

/// What the state Secret of a state in parts holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Manifest {
    /// The sha256 of the whole gzipped state.
    pub sha256: String,
    /// The part Secrets' names, in order.
    pub parts: Vec<String>,
}

/// A state encoded for Secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Encoded {
    /// It fits the state Secret: its [`KEY`].
    Whole(Vec<u8>),
    /// In parts: the state Secret's manifest and each part's bytes (with
    /// its name in the manifest).
    Parts(Manifest, Vec<Vec<u8>>),
}

/// The name of part `i` of a state whose gzip has sha256 `sha`.
fn part_name(location: &Location, sha: &str, i: usize) -> String {
    format!("{}-part-{}-{i}", location.name, &sha[..12])
}

/// The manifest of a state Secret that holds a state in parts; None for
/// one holding it whole; an error for a manifest it cannot read.
pub(super) fn manifest(
    secret: &Secret,
    location: &Location,
) -> Result<Option<Manifest>, StateError> {
    let Some(raw) = secret.data.as_ref().and_then(|d| d.get(PARTS_KEY)) else {
        return Ok(None);
    };
    let m: Manifest = serde_json::from_slice(&raw.0).map_err(|e| StateError::RemoteCorrupt {
        location: location.describe(),
        detail: format!("`{PARTS_KEY}` is not a list of parts ({e})"),
    })?;
    if m.parts.is_empty() || m.parts.len() > MAX_PARTS {
        return Err(StateError::RemoteCorrupt {
            location: location.describe(),
            detail: format!(
                "`{PARTS_KEY}` names {} parts (1 to {MAX_PARTS} may be)",
                m.parts.len()
            ),
        });
    }
    Ok(Some(m))
}

/// The state a Secret holds whole; a Secret it cannot read is an error
/// that says why (and is then never overwritten).
pub(super) fn decode(secret: &Secret, location: &Location) -> Result<State, StateError> {
    let corrupt = |detail: String| StateError::RemoteCorrupt {
        location: location.describe(),
        detail,
    };
    let is_mesh = crate::k8s::managed_by_mesh(&secret.metadata);
    let Some(gz) = secret.data.as_ref().and_then(|d| d.get(KEY)) else {
        return Err(corrupt(format!(
            "it has no `{KEY}`{}",
            if is_mesh { "" } else { ": is it a mesh state?" }
        )));
    };
    // Bounded as a local state file is: a small Secret must not unpack
    // into gigabytes.
    decode_within(&gz.0, location, state::local::STATE_FILE_LIMIT)
}

/// The state held in `parts` (the part Secrets, in the manifest's order):
/// their chunks joined must be the gzip whose sha256 the manifest names.
pub(super) fn decode_parts(
    m: &Manifest,
    parts: &[Secret],
    location: &Location,
) -> Result<State, StateError> {
    let corrupt = |detail: String| StateError::RemoteCorrupt {
        location: location.describe(),
        detail,
    };
    let mut gz = Vec::new();
    for (name, part) in m.parts.iter().zip(parts) {
        let Some(chunk) = part.data.as_ref().and_then(|d| d.get(CHUNK_KEY)) else {
            return Err(corrupt(format!("part {name} has no `{CHUNK_KEY}`")));
        };
        if chunk.0.len() > MAX_BYTES {
            return Err(corrupt(format!("part {name} is larger than a part may be")));
        }
        gz.extend_from_slice(&chunk.0);
    }
    let sha = crate::rendered::sha256_hex(&gz);
    if sha != m.sha256 {
        return Err(corrupt(format!(
            "its parts joined have sha256 {sha}, not the {} it names: a part was changed or \
             replaced",
            m.sha256
        )));
    }
    decode_within(&gz, location, state::local::STATE_FILE_LIMIT)
}

/// The state in gzipped JSON `gz`, unpacking at most `limit` bytes.
fn decode_within(gz: &[u8], location: &Location, limit: u64) -> Result<State, StateError> {
    let corrupt = |detail: String| StateError::RemoteCorrupt {
        location: location.describe(),
        detail,
    };
    let mut json = Vec::new();
    GzDecoder::new(gz)
        .take(limit + 1)
        .read_to_end(&mut json)
        .map_err(|e| corrupt(format!("`{KEY}` is not gzip ({e})")))?;
    if json.len() as u64 > limit {
        return Err(corrupt(format!(
            "`{KEY}` unpacks to more than {} MiB, more than a state may be",
            limit >> 20
        )));
    }
    // The local file's parser, so that both backends accept the same
    // documents; what it says of a file is said of the Secret.
    state::parse_state(&location.path(), &json).map_err(|e| match e {
        StateError::Corrupt { detail, .. } => corrupt(detail),
        StateError::NewerFormat {
            found, supported, ..
        } => StateError::RemoteNewerFormat {
            location: location.describe(),
            found,
            supported,
        },
        e => e,
    })
}

/// The gzipped JSON of `st`, whole when a Secret holds it, else in parts;
/// refused past [`MAX_PARTS`].
pub(super) fn encode(st: &State, location: &Location) -> Result<Encoded, StateError> {
    let failed = |detail: String| location.remote(RemoteOp::Write, detail);
    let json = serde_json::to_vec_pretty(st).map_err(|e| failed(e.to_string()))?;
    // Never a state no reader would read back.
    if json.len() as u64 > state::local::STATE_FILE_LIMIT {
        return Err(failed(format!(
            "the state is {} MiB, more than the {} MiB any state may be",
            json.len() >> 20,
            state::local::STATE_FILE_LIMIT >> 20
        )));
    }
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&json).map_err(|e| failed(e.to_string()))?;
    let gz = enc.finish().map_err(|e| failed(e.to_string()))?;
    split(gz, location, MAX_PARTS)
}

/// [`encode`]'s gzip `gz` whole, or in at most `max_parts` parts.
fn split(gz: Vec<u8>, location: &Location, max_parts: usize) -> Result<Encoded, StateError> {
    let failed = |detail: String| location.remote(RemoteOp::Write, detail);
    if gz.len() <= MAX_BYTES {
        return Ok(Encoded::Whole(gz));
    }
    let chunks: Vec<Vec<u8>> = gz.chunks(MAX_BYTES).map(<[u8]>::to_vec).collect();
    if chunks.len() > max_parts {
        return Err(failed(format!(
            "the state is {} bytes gzipped, more than {max_parts} Secrets of {MAX_BYTES} bytes \
             hold: use the local backend for a mesh this large",
            gz.len()
        )));
    }
    let sha = crate::rendered::sha256_hex(&gz);
    let parts = (0..chunks.len())
        .map(|i| part_name(location, &sha, i))
        .collect();
    Ok(Encoded::Parts(Manifest { sha256: sha, parts }, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use state::{Status, StepRecord};
    use std::collections::BTreeMap;

    fn location() -> Location {
        Location {
            context: "c".into(),
            kubeconfig: None,
            namespace: "ns".into(),
            name: "st".into(),
        }
    }

    /// A Secret with `data` under [`KEY`] (none: no key), labelled as
    /// mesh's when `ours`.
    fn secret(data: Option<Vec<u8>>, ours: bool) -> Secret {
        let mut s = Secret::default();
        if ours {
            s.metadata.labels = Some(BTreeMap::from([(
                crate::k8s::MANAGED_BY.to_string(),
                crate::k8s::MESH.to_string(),
            )]));
        }
        s.data = data.map(|d| BTreeMap::from([(KEY.to_string(), ByteString(d))]));
        s
    }

    fn gzip(chunk: &[u8], times: usize) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        for _ in 0..times {
            enc.write_all(chunk).unwrap();
        }
        enc.finish().unwrap()
    }

    fn step(input: String) -> StepRecord {
        StepRecord {
            kind: "attach".into(),
            cluster: "cluster2".into(),
            context: "kind-cluster2".into(),
            depends_on: vec!["cluster2/install-remote".into()],
            input_fingerprint: "00".repeat(32),
            input,
            outputs: BTreeMap::new(),
            status: Status::Applied,
            updated_at: "2026-01-02T03:04:05Z".into(),
        }
    }

    fn corrupt_detail(e: &StateError) -> &str {
        match e {
            StateError::RemoteCorrupt { location, detail } => {
                assert_eq!(location, "Secret ns/st in context c");
                detail.as_str()
            }
            e => panic!("not RemoteCorrupt: {e}"),
        }
    }

    #[test]
    fn a_state_round_trips() {
        let mut st = State::new("mesh1");
        st.serial = 7;
        st.record("cluster2/attach", step("kind: Secret\n".into()));
        let Encoded::Whole(gz) = encode(&st, &location()).unwrap() else {
            panic!("a small state is one Secret");
        };
        assert_eq!(decode(&secret(Some(gz), true), &location()).unwrap(), st);
    }

    #[test]
    fn a_secret_without_the_key_is_corrupt() {
        let e = decode(&secret(None, true), &location()).unwrap_err();
        assert_eq!(corrupt_detail(&e), "it has no `state.json.gz`");
        let text = e.to_string();
        assert!(
            text.starts_with("the state Secret ns/st in context c is corrupt: "),
            "{text}"
        );
        // Not mesh's, it may be another application's Secret.
        let e = decode(&secret(None, false), &location()).unwrap_err();
        assert_eq!(
            corrupt_detail(&e),
            "it has no `state.json.gz`: is it a mesh state?"
        );
    }

    #[test]
    fn a_secret_that_is_not_gzip_is_corrupt() {
        let e = decode(&secret(Some(b"not gzip".to_vec()), true), &location()).unwrap_err();
        let detail = corrupt_detail(&e);
        assert!(
            detail.starts_with("`state.json.gz` is not gzip ("),
            "{detail}"
        );
        // Gzip, but not a state.
        let e = decode(&secret(Some(gzip(b"{}", 1)), true), &location()).unwrap_err();
        corrupt_detail(&e);
    }

    #[test]
    fn a_bomb_that_unpacks_past_the_limit_is_refused() {
        let limit = 1 << 20;
        // 2 MiB of zeros, a few KiB gzipped.
        let bomb = gzip(&[0; 64 * 1024], 32);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let e = decode_within(&bomb, &location(), limit).unwrap_err();
        assert_eq!(
            corrupt_detail(&e),
            "`state.json.gz` unpacks to more than 1 MiB, more than a state may be"
        );
        // Exactly at the limit it is read (and then is not a state).
        let at = decode_within(&gzip(&[b' '; 1024], 1024), &location(), limit).unwrap_err();
        assert!(!corrupt_detail(&at).contains("unpacks"), "{at}");
    }

    /// `bytes` pseudo-random printable characters: they hardly compress.
    fn noise(bytes: usize) -> String {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'0' + (x % 75) as u8)
            })
            .collect()
    }

    /// The part Secrets of `chunks`, as the worker writes them.
    fn parts(chunks: &[Vec<u8>]) -> Vec<Secret> {
        chunks
            .iter()
            .map(|c| Secret {
                data: Some(BTreeMap::from([(
                    CHUNK_KEY.to_string(),
                    ByteString(c.clone()),
                )])),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn a_state_over_max_bytes_goes_in_parts_and_round_trips() {
        // 2 MiB of noise: about 1.6 MiB gzipped, more than a Secret holds.
        let mut st = State::new("mesh1");
        st.record("cluster2/attach", step(noise(2 << 20)));
        let Encoded::Parts(m, chunks) = encode(&st, &location()).unwrap() else {
            panic!("a large state is in parts");
        };
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|c| c.len() <= MAX_BYTES));
        assert_eq!(m.parts.len(), 2);
        assert!(
            m.parts[1].starts_with("st-part-") && m.parts[1].ends_with("-1"),
            "{m:?}"
        );
        assert_eq!(decode_parts(&m, &parts(&chunks), &location()).unwrap(), st);
        // A part changed, or the parts swapped: refused, never half read.
        let mut bad = chunks.clone();
        bad[1][10] ^= 1;
        let e = decode_parts(&m, &parts(&bad), &location()).unwrap_err();
        assert!(
            corrupt_detail(&e).contains("a part was changed or replaced"),
            "{e}"
        );
        let swapped = vec![chunks[1].clone(), chunks[0].clone()];
        assert!(decode_parts(&m, &parts(&swapped), &location()).is_err());
    }

    #[test]
    fn a_state_past_the_parts_is_refused_and_so_is_a_manifest_naming_too_many() {
        // Two parts' worth where one may be.
        let mut st = State::new("mesh1");
        st.record("cluster2/attach", step(noise(2 << 20)));
        let Encoded::Parts(_, chunks) = encode(&st, &location()).unwrap() else {
            panic!("a large state is in parts");
        };
        let e = split(chunks.concat(), &location(), 1).unwrap_err();
        assert!(
            matches!(
                &e,
                StateError::Remote {
                    what: RemoteOp::Write,
                    ..
                }
            ),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&format!(
                " bytes gzipped, more than 1 Secrets of {MAX_BYTES} bytes hold: use the \
                 local backend for a mesh this large"
            )),
            "{text}"
        );
        let m = Manifest {
            sha256: "0".repeat(64),
            parts: (0..=MAX_PARTS).map(|i| format!("p{i}")).collect(),
        };
        let secret = Secret {
            data: Some(BTreeMap::from([(
                PARTS_KEY.to_string(),
                ByteString(serde_json::to_vec(&m).unwrap()),
            )])),
            ..Default::default()
        };
        let e = manifest(&secret, &location()).unwrap_err();
        assert!(corrupt_detail(&e).contains("names 65 parts"), "{e}");
    }
}
