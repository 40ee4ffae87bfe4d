//! The mesh file: every invalid file under tests/invalid/ gives its errors
//! at the right place; valid files parse; nothing makes the parser panic.

use engine::config::{self, Role};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn invalid(name: &str) -> Vec<(usize, usize, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/invalid")
        .join(name);
    let source = std::fs::read_to_string(&path).unwrap();
    let diags = config::parse(&source, Path::new(name)).expect_err(name);
    let rendered = diags.render(false);
    for d in &diags.0 {
        assert!(
            d.help.is_some(),
            "{name}: every error says what to do: {}",
            d.message
        );
        assert!(
            rendered.contains(&format!("{name}:{}:{}", d.line, d.column)),
            "{rendered}"
        );
    }
    diags
        .0
        .iter()
        .map(|d| (d.line, d.column, d.message.clone()))
        .collect()
}

/// (file, line, column, a phrase of the message, a phrase of the help).
const CASES: &[(&str, usize, usize, &str, &str)] = &[
    ("01-syntax.toml", 2, 12, "invalid TOML", "syntax"),
    (
        "02-unknown-top-key.toml",
        10,
        2,
        "unknown key `clusters` in the mesh file",
        "did you mean `cluster`?",
    ),
    (
        "03-unknown-cluster-key.toml",
        7,
        1,
        "unknown key `netwrok` in [[cluster]]",
        "did you mean `network`?",
    ),
    (
        "04-wrong-type.toml",
        2,
        6,
        "`id` must be a string, not an integer",
        "quotes",
    ),
    (
        "05-missing-mesh.toml",
        1,
        1,
        "no [mesh] section",
        "add a [mesh] section",
    ),
    (
        "06-missing-id.toml",
        1,
        2,
        "[mesh] is missing `id`",
        "add `id = \"mesh1\"`",
    ),
    (
        "07-bad-cluster-name.toml",
        5,
        8,
        "`Cluster_1` is not a DNS-1123 label",
        "lowercase",
    ),
    (
        "08-duplicate-name.toml",
        11,
        8,
        "cluster name `cluster1` is used twice",
        "line 4",
    ),
    (
        "09-duplicate-context.toml",
        12,
        11,
        "context `kind-cluster1` is used by two clusters",
        "line 4",
    ),
    (
        "10-remote-without-primary.toml",
        10,
        1,
        "does not say which primary it uses",
        "add `primary =",
    ),
    (
        "11-unknown-primary.toml",
        15,
        11,
        "names primary `clusterl`, which is not a cluster",
        "did you mean \"cluster1\"?",
    ),
    (
        "12-primary-is-remote.toml",
        22,
        11,
        "but `cluster2` is a remote",
        "role = \"primary\"",
    ),
    (
        "13-primary-on-primary.toml",
        9,
        11,
        "is a primary but names a primary",
        "remove `primary`",
    ),
    (
        "14-two-primaries-without-trust.toml",
        14,
        8,
        "`cluster2` is a second primary, and a mesh with several primaries needs a common root of trust",
        "mesh ca init",
    ),
    (
        "15-no-primary.toml",
        1,
        2,
        "the mesh has no primary cluster",
        "role = \"primary\"",
    ),
    (
        "16-bad-revision.toml",
        3,
        12,
        "`Canary_1` is not a valid Istio revision",
        "lowercase",
    ),
    (
        "17-default-revision.toml",
        3,
        12,
        "revision `default` is not a revision",
        "remove `revision`",
    ),
    (
        "18-bad-role.toml",
        8,
        8,
        "role `primarry` is not a role",
        "did you mean \"primary\"?",
    ),
    (
        "19-missing-role.toml",
        4,
        1,
        "[[cluster]] is missing `role`",
        "add `role = \"primary\"`",
    ),
    (
        "20-cluster-not-array.toml",
        4,
        1,
        "`cluster` must be an array of tables",
        "[[cluster]]",
    ),
    (
        "21-http-api-server.toml",
        9,
        14,
        "is not an https:// URL",
        "HTTPS",
    ),
    (
        "22-bad-istio-version.toml",
        3,
        17,
        "istio_version `latest` is not a version",
        "1.28.0",
    ),
    (
        "23-values-not-table.toml",
        9,
        10,
        "`values` must be a table, not a string",
        "section",
    ),
    (
        "24-empty-context.toml",
        6,
        11,
        "`context` is empty",
        "kind-cluster1",
    ),
    (
        "25-bad-mesh-id.toml",
        2,
        6,
        "mesh id `mesh one` has characters",
        "letters, digits",
    ),
    (
        "26-unknown-mesh-key.toml",
        3,
        1,
        "unknown key `revison` in [mesh]",
        "did you mean `revision`?",
    ),
    (
        "27-bad-network-name.toml",
        7,
        11,
        "network `net work` is not a valid network name",
        "label value",
    ),
    (
        "29-state-path-folder.toml",
        5,
        8,
        "state path `state/` names a folder",
        "name a file",
    ),
    (
        "30-control-character-context.toml",
        6,
        11,
        "context `kind-\\u{1b}[2Jcluster1` contains control characters",
        "printable characters",
    ),
    (
        "31-api-server-user-info.toml",
        9,
        14,
        "api_server has user information",
        "remove it",
    ),
    (
        "32-api-server-whitespace.toml",
        9,
        14,
        "contains spaces or control characters",
        "the URL alone",
    ),
    (
        "33-duplicate-key.toml",
        8,
        1,
        "duplicate key `name`, first set at line 5",
        "once per table",
    ),
    (
        "34-bad-readiness-timeout.toml",
        5,
        21,
        "[istioctl] readiness_timeout: `5 minutes` is not a duration",
        "300s",
    ),
    (
        "35-timeout-shorter-than-readiness.toml",
        6,
        11,
        "[istioctl] timeout (300 s) is not longer than readiness_timeout (600 s)",
        "raise `timeout`",
    ),
    (
        "36-trust-without-key.toml",
        4,
        2,
        "[trust] is missing `root_key`",
        "root_key",
    ),
    (
        "37-bad-intermediate-days.toml",
        7,
        21,
        "intermediate_days = 0 is not between 1 and 3650",
        "e.g. 365",
    ),
    (
        "38-unknown-state-backend.toml",
        5,
        11,
        "state backend `kubernete` is not a backend",
        "did you mean \"kubernetes\"?",
    ),
    (
        "39-state-in-istio-system.toml",
        6,
        13,
        "the state cannot be kept in istio-system: destroy deletes that namespace",
        "another namespace",
    ),
    (
        "40-kubernetes-key-on-local-state.toml",
        5,
        13,
        "`namespace` is for the Kubernetes backend, and this state is a local file",
        "backend = \"kubernetes\"",
    ),
    (
        "41-state-context-control-character.toml",
        6,
        11,
        "[state] context `kind-\\u{1b}]0;pwned\\u{7}cluster1` contains control characters",
        "printable characters",
    ),
    (
        "42-state-namespace-control-character.toml",
        6,
        13,
        "namespace `de\\u{1b}[2Jfault` is not a Kubernetes namespace name",
        "lowercase letters",
    ),
    (
        "43-state-name-not-dns1123.toml",
        6,
        8,
        "`mesh1..state-` cannot name the state's Secret",
        "starting and ending with a letter or digit",
    ),
    (
        "44-state-name-control-character.toml",
        6,
        8,
        "`mesh1\\u{7}` cannot name the state's Secret",
        "lowercase letters",
    ),
    // Hardening II, 9: names mesh derives from the file's values, each
    // within Kubernetes' limit.
    (
        "61-revision-too-long.toml",
        3,
        12,
        "Service `istiod-canary-",
        "at most 56 characters",
    ),
    (
        "62-mesh-id-too-long.toml",
        2,
        6,
        "100 characters",
        "at most 63 characters",
    ),
    (
        "63-reader-name-too-long.toml",
        18,
        8,
        "-istio-remote-secret-token` (254 characters)",
        "at most 227 characters",
    ),
    // Day two: values that exist only from some Istio release on.
    (
        "65-reader-account-before-istio-1-31.toml",
        19,
        8,
        "values.global.readerServiceAccount exists from Istio 1.31 on, and the mesh pins istio_version 1.30",
        "pin istio_version 1.31 or later",
    ),
    (
        "64-reader-namespace-not-a-label.toml",
        16,
        77,
        "`Istio_System` is not a namespace name",
        "lowercase letters",
    ),
    // [policy]
    (
        "71-unknown-policy-key.toml",
        6,
        1,
        "unknown key `require_canery` in [policy]",
        "did you mean `require_canary`?",
    ),
    (
        "72-policy-glob-unknown-kind.toml",
        5,
        43,
        "deny_delete glob `*/install-contol-plane`: `install-contol-plane` matches no step kind",
        "did you mean `install-control-plane`?",
    ),
    (
        "73-policy-glob-without-slash.toml",
        5,
        16,
        "it has no `/`, so it matches no step ID",
        "a step ID is `<cluster>/<kind>`",
    ),
    (
        "74-policy-glob-unclosed.toml",
        5,
        16,
        "a `[` is not closed by `]`",
        "`[a-c]` one of a set",
    ),
    // Hardening III, 3: a glob that parses but can match no step ID.
    (
        "78-policy-glob-ends-in-at.toml",
        5,
        16,
        "deny_delete glob `*/attach@`: it ends in `@`, and a step ID never does",
        "end it with the primary's name or `*`, e.g. \"*/attach@*\"",
    ),
    (
        "79-policy-glob-matches-no-step.toml",
        5,
        16,
        "deny_delete glob `*/install-control-plane@*`: it matches no step ID mesh makes",
        "`<cluster>/attach@<primary>`",
    ),
    (
        "80-policy-glob-empty-cluster.toml",
        5,
        16,
        "deny_delete glob `/attach`: its cluster part (before `/`) is empty",
        "a step ID is `<cluster>/<kind>`",
    ),
    (
        "75-policy-max-clusters-zero.toml",
        5,
        24,
        "max_clusters_changed = 0 would refuse every plan that changes anything",
        "set it to 1 or more",
    ),
    (
        "76-policy-require-canary-string.toml",
        5,
        18,
        "`require_canary` must be true or false, not a string",
        "require_canary = true",
    ),
    (
        "77-policy-deny-delete-not-array.toml",
        5,
        15,
        "`deny_delete` must be an array of strings, not a string",
        "deny_delete = [\"*/install-control-plane\"]",
    ),
    // A cluster that names its primary is a remote: the hint says so.
    (
        "80-remote-missing-role.toml",
        10,
        1,
        "[[cluster]] is missing `role`",
        "add `role = \"remote\"`",
    ),
    // istioctl refuses a tag named like a revision (its webhook and the
    // revision's answer to the same istio.io/rev).
    (
        "81-tag-named-like-a-revision.toml",
        11,
        1,
        "revision tag `1-29` has the name of a revision this mesh installs",
        "never after a revision",
    ),
];

/// A file that is not UTF-8 names the line and column of its first bad byte.
#[test]
fn invalid_utf8_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.toml");
    std::fs::write(&path, b"[mesh]\nid = \"m\xffesh\"\n").unwrap();
    let d = config::load(&path).expect_err("not UTF-8");
    let d = &d.0[0];
    assert_eq!((d.line, d.column), (2, 8), "{}", d.message);
    assert!(d.message.contains("byte 14 (0xff)"), "{}", d.message);
}

#[test]
fn every_invalid_file_reports_its_error_where_it_is() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for (name, line, col, message, help) in CASES {
        let path = dir.join(name);
        let source = std::fs::read_to_string(&path).unwrap();
        let diags = config::parse(&source, Path::new(name)).expect_err(name);
        assert_eq!(
            diags.len(),
            1,
            "{name}: exactly one error, got:\n{}",
            diags.render(false)
        );
        let d = &diags.0[0];
        assert_eq!((d.line, d.column), (*line, *col), "{name}: {}", d.message);
        assert!(
            d.message.contains(message),
            "{name}: message `{}` lacks `{message}`",
            d.message
        );
        let h = d.help.as_deref().unwrap_or_default();
        assert!(h.contains(help), "{name}: help `{h}` lacks `{help}`");
        let _ = invalid(name);
    }
    // Every file in the folder is covered (28-many-mistakes has its own test).
    let covered: Vec<&str> = CASES
        .iter()
        .map(|c| c.0)
        .chain(["28-many-mistakes.toml"])
        .collect();
    for f in &files {
        assert!(covered.contains(&f.as_str()), "{f} has no expectation");
    }
    assert!(CASES.len() >= 20);
}

#[test]
fn all_mistakes_of_a_file_are_reported_at_once() {
    let errors = invalid("28-many-mistakes.toml");
    let located: Vec<(usize, usize)> = errors.iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(located, [(3, 1), (6, 8), (13, 11), (16, 11)], "{errors:?}");
    assert!(errors[0].2.contains("unknown key `colour`"));
    assert!(errors[1].2.contains("`Cluster1` is not a DNS-1123 label"));
    assert!(
        errors[2]
            .2
            .contains("context `kind-cluster1` is used by two clusters")
    );
    assert!(errors[3].2.contains("names primary `nope`"));
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/invalid/28-many-mistakes.toml");
    let text = config::load(&path).unwrap_err().render(false);
    assert!(
        text.ends_with("4 errors in ".to_string().as_str()) || text.contains("4 errors in"),
        "{text}"
    );
}

#[test]
fn an_unreadable_file_is_one_clear_error() {
    let e = config::load(Path::new("/nonexistent/mesh.toml")).unwrap_err();
    assert_eq!(e.len(), 1);
    let text = e.render(false);
    // No place in a file that is not there, and `mesh init` makes one.
    assert_eq!(
        text,
        "error: no mesh file at /nonexistent/mesh.toml: create one with \
         `mesh init -f /nonexistent/mesh.toml` (or pass -f)\n\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let text = config::load(dir.path()).unwrap_err().render(false);
    assert!(
        text.contains("cannot read the mesh file")
            && text.contains("-f FILE")
            && !text.contains(":0:0"),
        "{text}"
    );
}

/// Mistakes that used to show only once others were fixed: the rules
/// between clusters (a duplicate name, an unknown primary) when one of the
/// clusters has a mistake of its own, and `[trust]`'s files.
#[test]
fn every_mistake_is_reported_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.toml");
    std::fs::write(
        &path,
        "[mesh]\nid = \"mesh 1\"\nrevison = \"x\"\n\n\
         [trust]\nroot_cert = \"missing/root-cert.pem\"\nroot_key = \"missing/root-key.pem\"\n\n\
         [[cluster]]\nname = \"cluster1\"\ncontext = \"kind-cluster1\"\nnetwork = \"network1\"\nrole = \"primary\"\n\n\
         [[cluster]]\nname = \"cluster1\"\ncontext = \"kind-cluster1\"\nrole = \"remote\"\nprimary = \"cluster9\"\ncolour = \"blue\"\n",
    )
    .unwrap();
    let d = config::load(&path).unwrap_err();
    let found: Vec<(usize, &str)> = d.0.iter().map(|d| (d.line, d.message.as_str())).collect();
    let expect = [
        (2, "mesh id `mesh 1`"),
        (3, "unknown key `revison`"),
        (6, "cannot read the root certificate"),
        (7, "cannot read the root key"),
        (15, "is missing `network`"),
        (16, "cluster name `cluster1` is used twice"),
        (17, "context `kind-cluster1` is used by two clusters"),
        (19, "names primary `cluster9`"),
        (20, "unknown key `colour`"),
    ];
    assert_eq!(found.len(), expect.len(), "{}", d.render(false));
    for ((line, msg), (want_line, want)) in found.iter().zip(expect) {
        assert!(
            *line == want_line && msg.contains(want),
            "{line}: {msg} (wanted {want_line}: {want})"
        );
    }
}

/// A syntax error comes with the unknown keys and wrong types of the rest
/// of the file (not with rules between values: the parser may have lost
/// one), and a value the parser made up is never blamed.
#[test]
fn a_syntax_error_comes_with_the_other_shape_errors() {
    let src = "[mesh]\nid = \"m\"\ncolour = 1\n\n[[cluster]]\nname = \"c2\ncontext = \"x\"\nnetwrk = \"n\"\nrole = 3\n";
    let d = config::parse(src, Path::new("m.toml")).unwrap_err();
    let found: Vec<(usize, String)> = d.0.iter().map(|d| (d.line, d.message.clone())).collect();
    assert_eq!(found.len(), 4, "{}", d.render(false));
    assert!(
        found[0].0 == 3 && found[0].1.contains("unknown key `colour`"),
        "{found:?}"
    );
    assert!(
        found[1].0 == 6 && found[1].1.contains("invalid TOML"),
        "{found:?}"
    );
    assert!(
        found[2].0 == 8 && found[2].1.contains("unknown key `netwrk`"),
        "{found:?}"
    );
    assert!(
        found[3].0 == 9 && found[3].1.contains("`role` must be a string"),
        "{found:?}"
    );
    let d = config::parse("[mesh]\nid = = \"m\"\n", Path::new("m.toml")).unwrap_err();
    assert!(
        d.0.iter().all(|d| d.message.contains("invalid TOML")),
        "{}",
        d.render(false)
    );
}

#[test]
fn the_seed_parses_into_the_model() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/primary-remote.toml");
    let m = config::load(&path).unwrap();
    assert_eq!(m.mesh.id, "mesh1");
    assert_eq!(m.clusters.len(), 2);
    assert_eq!(m.clusters[0].role, Role::Primary);
    assert_eq!(m.clusters[1].primary.as_deref(), Some("cluster1"));
    assert_eq!(m.clusters[1].context, "kind-cluster2");
}

const FULL: &str = r#"
[mesh]
id = "mesh-a.b_c"
revision = "1-28-0"
istio_version = "1.28.0"

[istioctl]
path = "/opt/istio/bin/istioctl"
readiness_timeout = "10m"
timeout = "30m"

[state]
path = "state/mesh.state.json"

[policy]
deny_delete = ["*/install-control-plane", "east/attach@*"]
max_clusters_changed = 3
require_canary = true

[trust]
root_cert = "certs/root-cert.pem"
root_key = "certs/root-key.pem"
intermediate_days = 90

[[cluster]]
name = "east"
context = "ctx-east"
network = "net1"
role = "primary"
kubeconfig = "~/.kube/east"
api_server = "https://10.0.0.1:6443"

[cluster.values.global.logging]
level = "default:debug"

[cluster.eastwest_values.gateways.istio-ingressgateway]
injectionTemplate = ""

[[cluster]]
name = "east-a"
context = "ctx-east-a"
network = "net1"
role = "remote"
primary = "east"
values = { pilot = { env = { X = 1, Y = 1.5, Z = true } } }

[[cluster]]
name = "west"
context = "ctx-west"
network = "net2"
role = "primary"

[[cluster]]
name = "west-a"
context = "ctx-west-a"
network = "net2"
role = "remote"
primary = "west"
"#;

#[test]
fn every_key_is_read() {
    let m = config::parse(FULL, Path::new("mesh.toml")).unwrap();
    assert_eq!(m.mesh.revision.as_deref(), Some("1-28-0"));
    assert_eq!(m.mesh.istio_version.as_deref(), Some("1.28.0"));
    assert_eq!(m.istioctl.path.as_deref(), Some("/opt/istio/bin/istioctl"));
    assert_eq!(m.state.path.as_deref(), Some("state/mesh.state.json"));
    assert_eq!(m.istioctl.readiness_timeout.as_secs(), 600);
    assert_eq!(m.istioctl.timeout.as_secs(), 1800);
    let trust = m.trust.as_ref().unwrap();
    assert_eq!(trust.root_cert, Path::new("certs/root-cert.pem"));
    assert_eq!(trust.root_key, Path::new("certs/root-key.pem"));
    assert_eq!(trust.intermediate_days, 90);
    assert_eq!(
        m.policy,
        config::PolicySection {
            deny_delete: vec!["*/install-control-plane".into(), "east/attach@*".into()],
            max_clusters_changed: Some(3),
            require_canary: true,
        }
    );
    assert!(m.is_multi_network());
    let east = m.cluster("east").unwrap();
    assert_eq!(east.kubeconfig.as_deref(), Some("~/.kube/east"));
    assert_eq!(east.api_server.as_deref(), Some("https://10.0.0.1:6443"));
    assert_eq!(east.values["global"]["logging"]["level"], "default:debug");
    assert_eq!(
        east.eastwest_values["gateways"]["istio-ingressgateway"]["injectionTemplate"],
        ""
    );
    let a = m.cluster("east-a").unwrap();
    assert_eq!(
        a.values["pilot"]["env"],
        serde_json::json!({"X": 1, "Y": 1.5, "Z": true})
    );
    assert_eq!(m.primaries().count(), 2);
    assert_eq!(
        m.remotes_of("west")
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["west-a"]
    );
}

#[test]
fn valid_files_also_fit_the_schema_types() {
    for src in [
        FULL,
        include_str!("../../../examples/primary-remote.toml"),
        include_str!("../../../examples/ambient-multi-network.toml"),
    ] {
        let raw: Result<config::raw::RawMeshFile, _> = toml::from_str(src);
        assert!(raw.is_ok(), "{raw:?}");
    }
}

#[test]
fn the_committed_schema_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/mesh.schema.json");
    let fresh = config::schema_json();
    if std::env::var_os("MESH_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "docs/mesh.schema.json is out of date: run `MESH_UPDATE_SCHEMA=1 cargo test -p engine --test pure config::` and commit it"
    );
    let v: serde_json::Value = serde_json::from_str(&fresh).unwrap();
    assert_eq!(v["title"], "mesh.toml");
    assert!(
        v["$defs"]["RawCluster"]["properties"]["api_server"].is_object(),
        "{fresh}"
    );
}

fn mutate(src: &str, ops: &[(u8, usize, char)]) -> String {
    let mut chars: Vec<char> = src.chars().collect();
    for &(op, at, ch) in ops {
        if chars.is_empty() {
            chars.push(ch);
            continue;
        }
        let i = at % chars.len();
        match op % 3 {
            0 => {
                chars.remove(i);
            }
            1 => chars.insert(i, ch),
            _ => chars[i] = ch,
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        let _ = config::parse(&s, Path::new("fuzz.toml"));
    }

    #[test]
    fn mutated_mesh_files_never_panic(
        ops in proptest::collection::vec((any::<u8>(), any::<usize>(), prop::sample::select(vec!['"', '[', ']', '=', '\n', 'x', '.', '{', '}', ',', '#', 'é', '\''])), 1..8),
        which in 0..2usize,
    ) {
        let base = [FULL, include_str!("../../../examples/primary-remote.toml")][which];
        let src = mutate(base, &ops);
        match config::parse(&src, Path::new("fuzz.toml")) {
            Ok(m) => prop_assert!(!m.mesh.id.is_empty()),
            Err(d) => {
                prop_assert!(!d.is_empty());
                for e in &d.0 { prop_assert!(e.line >= 1 && e.column >= 1); }
                let _ = d.render(true);
            }
        }
    }

    #[test]
    fn renamed_keys_are_errors_not_panics(idx in 0usize..40, junk in "[a-z_]{1,8}") {
        let lines: Vec<&str> = FULL.lines().collect();
        let i = idx % lines.len();
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        if let Some((_, rest)) = out[i].clone().split_once(" = ") {
            out[i] = format!("{junk} = {rest}");
        }
        let _ = config::parse(&out.join("\n"), Path::new("fuzz.toml"));
    }
}

/// `[trust]`'s files are read and checked when the mesh file is loaded:
/// each problem is located at the key that names the file.
#[test]
fn the_root_of_trust_is_checked_where_it_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, key) = providers::ca::new_root("root").unwrap();
    let (_, other_key) = providers::ca::new_root("other").unwrap();
    std::fs::create_dir_all(d.join("certs")).unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        let p = d.join("certs").join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    };
    write("root-cert.pem", &cert, 0o644);
    write("root-key.pem", key.expose(), 0o600);
    write("other-key.pem", other_key.expose(), 0o600);
    write("open-key.pem", key.expose(), 0o644);
    write("junk.pem", "not a certificate\n", 0o644);
    let mesh = |cert: &str, key: &str| {
        let path = d.join("mesh.toml");
        std::fs::write(
            &path,
            format!(
                "[mesh]\nid = \"m\"\n\n[trust]\nroot_cert = \"certs/{cert}\"\nroot_key = \"certs/{key}\"\n\n\
                 [[cluster]]\nname = \"a\"\ncontext = \"a\"\nnetwork = \"n\"\nrole = \"primary\"\n\n\
                 [[cluster]]\nname = \"b\"\ncontext = \"b\"\nnetwork = \"n\"\nrole = \"primary\"\n"
            ),
        )
        .unwrap();
        config::load(&path)
    };
    let ok = mesh("root-cert.pem", "root-key.pem").unwrap();
    assert_eq!(ok.trust.as_ref().unwrap().root_cert_pem, cert);
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
    let one = |r: Result<config::MeshFile, config::Diagnostics>| {
        let d = r.expect_err("an error");
        assert_eq!(d.len(), 1, "{}", d.render(false));
        let d = &d.0[0];
        (
            d.line,
            d.column,
            d.message.clone(),
            d.help.clone().unwrap_or_default(),
        )
    };
    let (line, col, msg, _) = one(mesh("root-cert.pem", "other-key.pem"));
    assert_eq!((line, col), (6, 12), "{msg}");
    assert!(msg.contains("not the key of the root certificate"), "{msg}");
    let (line, col, msg, help) = one(mesh("missing.pem", "root-key.pem"));
    assert_eq!((line, col), (5, 13), "{msg}");
    assert!(
        msg.contains("cannot read the root certificate") && help.contains("mesh ca init"),
        "{msg}"
    );
    let (line, _, msg, _) = one(mesh("junk.pem", "root-key.pem"));
    assert_eq!(line, 5);
    assert!(msg.contains("cannot be read"), "{msg}");
    // A root key readable by others is a warning naming the file.
    let warned = mesh("root-cert.pem", "open-key.pem").unwrap();
    assert!(
        warned
            .warnings
            .iter()
            .any(|w| w.contains("open-key.pem") && w.contains("chmod 600")),
        "{:?}",
        warned.warnings
    );
}

/// Hardening II, 7: a message quotes the value it refuses, and a value may
/// hold a control character (TOML's `\u001b`): every message and help shows
/// it escaped, so a mesh file cannot write to the terminal through them.
#[test]
fn no_diagnostic_carries_a_raw_control_character() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        let Err(diags) = config::parse(&source, &path) else {
            panic!("{} parses", path.display());
        };
        for d in &diags.0 {
            let help = d.help.as_deref().unwrap_or_default();
            assert!(
                !d.message.chars().chain(help.chars()).any(char::is_control),
                "{}: {:?} / {help:?}",
                path.display(),
                d.message
            );
        }
    }
}

// Hardening II, 6: the mesh file and `[trust]`'s PEM files are read only
// when they are regular files, and only up to a limit: a FIFO would block
// forever, /dev/zero never ends.

/// `f` on its own thread, which must finish within `secs` (a blocked read
/// fails the test rather than hanging it).
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .expect("the read did not finish: it blocked or never ended")
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// A mesh file with a `[trust]` naming `cert` and `key` (paths as written).
fn trusting(dir: &Path, cert: &str, key: &str) -> PathBuf {
    let path = dir.join("mesh.toml");
    std::fs::write(
        &path,
        format!(
            "[mesh]\nid = \"m\"\n\n[trust]\nroot_cert = \"{cert}\"\nroot_key = \"{key}\"\n\n\
             [[cluster]]\nname = \"a\"\ncontext = \"a\"\nnetwork = \"n\"\nrole = \"primary\"\n"
        ),
    )
    .unwrap();
    path
}

/// The one diagnostic of a failed load: (line, column, message, help).
fn the_error(r: Result<config::MeshFile, config::Diagnostics>) -> (usize, usize, String, String) {
    let d = r.expect_err("an error");
    assert_eq!(d.len(), 1, "{}", d.render(false));
    let d = &d.0[0];
    (
        d.line,
        d.column,
        d.message.clone(),
        d.help.clone().unwrap_or_default(),
    )
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/trust")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn a_fifo_as_the_mesh_file_or_a_pem_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let f = fifo.clone();
    let (_, _, msg, help) = the_error(within(10, move || config::load(&f)));
    assert!(
        msg.contains(&fifo.display().to_string()) && msg.contains("not a regular file"),
        "{msg}"
    );
    assert!(help.contains("-f FILE"), "{help}");
    // As [trust] root_cert, then as root_key: located at the key.
    let mesh = trusting(dir.path(), "pipe", &fixture("root-key.pem"));
    let (line, col, msg, _) = the_error(within(10, move || config::load(&mesh)));
    assert_eq!((line, col), (5, 13), "{msg}");
    assert!(
        msg.contains("root certificate") && msg.contains("FIFO"),
        "{msg}"
    );
    let mesh = trusting(dir.path(), &fixture("root-cert.pem"), "pipe");
    let (line, _, msg, _) = the_error(within(10, move || config::load(&mesh)));
    assert_eq!(line, 6, "{msg}");
    assert!(msg.contains("root key") && msg.contains("FIFO"), "{msg}");
}

#[test]
fn dev_zero_as_the_mesh_file_or_a_pem_file_is_refused_unread() {
    let (_, _, msg, _) = the_error(within(10, || config::load(Path::new("/dev/zero"))));
    assert!(
        msg.contains("/dev/zero") && msg.contains("character device"),
        "{msg}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mesh = trusting(dir.path(), "/dev/zero", &fixture("root-key.pem"));
    let (line, _, msg, _) = the_error(within(10, move || config::load(&mesh)));
    assert_eq!(line, 5, "{msg}");
    assert!(msg.contains("not a regular file"), "{msg}");
    let mesh = trusting(dir.path(), &fixture("root-cert.pem"), "/dev/zero");
    let (line, _, msg, _) = the_error(within(10, move || config::load(&mesh)));
    assert_eq!(line, 6, "{msg}");
    assert!(msg.contains("not a regular file"), "{msg}");
}

#[test]
fn an_oversized_mesh_file_or_pem_file_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    // A PEM file is a few KiB: 2 MiB is not one.
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; 2 << 20]).unwrap();
    let mesh = trusting(dir.path(), "big.pem", &fixture("root-key.pem"));
    let (line, _, msg, _) = the_error(config::load(&mesh));
    assert_eq!(line, 5, "{msg}");
    assert!(msg.contains("1 MiB") && msg.contains("big.pem"), "{msg}");
    // A mesh file past its limit (sparse: no disk is used).
    let huge = dir.path().join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let (_, _, msg, help) = the_error(config::load(&huge));
    assert!(msg.contains("16 MiB") && msg.contains("huge.toml"), "{msg}");
    assert!(help.contains("-f FILE"), "{help}");
}

// Hardening II, 9: every primary holds a remote secret for every other
// cluster, so their number grows as primaries × clusters: a mesh past
// REMOTE_SECRET_LIMIT is refused by validation, before any graph is built.

/// A mesh of `primaries` primaries and `remotes` remotes (of the first).
fn fleet(primaries: usize, remotes: usize) -> String {
    let mut s = String::from(
        "[mesh]\nid = \"fleet\"\n\n[trust]\nroot_cert = \"c.pem\"\nroot_key = \"k.pem\"\n",
    );
    for i in 0..primaries {
        s.push_str(&format!(
            "\n[[cluster]]\nname = \"p{i}\"\ncontext = \"p{i}\"\nnetwork = \"n\"\nrole = \"primary\"\n"
        ));
    }
    for i in 0..remotes {
        s.push_str(&format!(
            "\n[[cluster]]\nname = \"r{i}\"\ncontext = \"r{i}\"\nnetwork = \"n\"\nrole = \"remote\"\nprimary = \"p0\"\n"
        ));
    }
    s
}

#[test]
fn a_mesh_past_the_remote_secret_limit_is_refused_at_the_first_primary_too_many() {
    // 100 primaries of 251 clusters: 100 × 250 = 25,000 secrets, the limit.
    assert!(config::parse(&fleet(100, 151), Path::new("m.toml")).is_ok());
    // 100 primaries of 252 clusters: 25,100; 99 primaries fit.
    let d = config::parse(&fleet(100, 152), Path::new("m.toml")).expect_err("too many");
    assert_eq!(d.len(), 1, "{}", d.render(false));
    let e = &d.0[0];
    // The 100th primary's role (each [[cluster]] is 6 lines, after 7).
    assert_eq!((e.line, e.column), (7 + 99 * 6 + 5, 8), "{}", e.message);
    assert!(
        e.message.contains("25,100 remote secrets") && e.message.contains("25,000"),
        "{}",
        e.message
    );
    let help = e.help.as_deref().unwrap();
    assert!(help.contains("at most 99 primaries"), "{help}");
    // One primary with 25,001 remotes is past it as well.
    assert!(config::parse(&fleet(1, 25_000), Path::new("m.toml")).is_ok());
    assert!(config::parse(&fleet(1, 25_001), Path::new("m.toml")).is_err());
}

#[test]
fn two_thousand_primaries_are_refused_quickly() {
    let src = fleet(2_000, 0);
    let started = std::time::Instant::now();
    let d = config::parse(&src, Path::new("m.toml")).expect_err("too many");
    assert!(
        d.0.iter()
            .any(|e| e.message.contains("3,998,000 remote secrets")),
        "{}",
        d.render(false)
    );
    // Unoptimised, on a busy machine: the point is seconds, not minutes.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// Root keys in the encodings openssl writes (PKCS#1, SEC1 with or without
/// its EC PARAMETERS block) load like PKCS#8 ones.
#[test]
fn root_keys_in_pkcs1_and_sec1_load() {
    let fixtures =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/trust-encodings");
    for name in ["rsa-pkcs1", "ec-sec1", "ec384-sec1"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.toml");
        std::fs::write(
            &path,
            format!(
                "[mesh]\nid = \"m\"\n\n[trust]\nroot_cert = {:?}\nroot_key = {:?}\n\n\
                 [[cluster]]\nname = \"a\"\ncontext = \"a\"\nnetwork = \"n\"\nrole = \"primary\"\n",
                fixtures.join(format!("{name}-cert.pem")),
                fixtures.join(format!("{name}-key.pem")),
            ),
        )
        .unwrap();
        let mesh = config::load(&path).unwrap_or_else(|d| panic!("{name}: {}", d.render(false)));
        assert!(
            mesh.trust
                .unwrap()
                .root_cert_pem
                .contains("BEGIN CERTIFICATE")
        );
    }
}
