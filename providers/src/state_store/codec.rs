//! The state in a Secret: the same JSON document as the local file,
//! gzipped, under the data key [`KEY`]; at most [`MAX_BYTES`] gzipped, and
//! never unpacked past the local state file's limit. Pure: the worker
//! reads and writes the Secret around it.

use super::Location;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::api::core::v1::Secret;
use state::{RemoteOp, State, StateError};
use std::io::{Read, Write};

/// The Secret's data key.
pub(super) const KEY: &str = "state.json.gz";
/// Kubernetes refuses objects above 1 MiB; keep room for metadata.
pub(super) const MAX_BYTES: usize = 1024 * 1024 - 64 * 1024;

/// The state a Secret holds; a Secret it cannot read is an error that
/// says why (and is then never overwritten).
pub(super) fn decode(secret: &Secret, location: &Location) -> Result<State, StateError> {
    // Bounded as a local state file is: a small Secret must not unpack
    // into gigabytes.
    decode_within(secret, location, state::local::STATE_FILE_LIMIT)
}

/// [`decode`], unpacking at most `limit` bytes.
fn decode_within(secret: &Secret, location: &Location, limit: u64) -> Result<State, StateError> {
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
    let mut json = Vec::new();
    GzDecoder::new(&gz.0[..])
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

/// The gzipped JSON of `st`, refused when a Secret cannot hold it.
pub(super) fn encode(st: &State, location: &Location) -> Result<Vec<u8>, StateError> {
    let failed = |detail: String| location.remote(RemoteOp::Write, detail);
    let json = serde_json::to_vec_pretty(st).map_err(|e| failed(e.to_string()))?;
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&json).map_err(|e| failed(e.to_string()))?;
    let gz = enc.finish().map_err(|e| failed(e.to_string()))?;
    if gz.len() > MAX_BYTES {
        return Err(failed(format!(
            "the state is {} bytes gzipped, more than a Secret holds ({MAX_BYTES}): \
             use the local backend for a mesh this large",
            gz.len()
        )));
    }
    Ok(gz)
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
        let gz = encode(&st, &location()).unwrap();
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
        let e = decode_within(&secret(Some(bomb), true), &location(), limit).unwrap_err();
        assert_eq!(
            corrupt_detail(&e),
            "`state.json.gz` unpacks to more than 1 MiB, more than a state may be"
        );
        // Exactly at the limit it is read (and then is not a state).
        let at = decode_within(
            &secret(Some(gzip(&[b' '; 1024], 1024)), true),
            &location(),
            limit,
        )
        .unwrap_err();
        assert!(!corrupt_detail(&at).contains("unpacks"), "{at}");
    }

    #[test]
    fn a_state_over_max_bytes_is_refused() {
        // 2 MiB of pseudo-random printable characters: about 1.6 MiB
        // gzipped, more than a Secret holds.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: String = (0..(2 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'0' + (x % 75) as u8)
            })
            .collect();
        let mut st = State::new("mesh1");
        st.record("cluster2/attach", step(noise));
        let e = encode(&st, &location()).unwrap_err();
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
            text.starts_with("cannot write the state to Secret ns/st in context c: the state is "),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(
                " bytes gzipped, more than a Secret holds ({MAX_BYTES}): use the local backend \
                 for a mesh this large. The previous state is unchanged"
            )),
            "{text}"
        );
    }
}
