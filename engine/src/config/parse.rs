//! Reading the mesh file: TOML syntax (with spans) → a spanned draft of
//! the model, reporting every unknown key and wrong type on the way rather
//! than stopping at the first, as serde's derive would.

use super::diagnostic::{Diagnostic, Locator};
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A value with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct At<T> {
    pub value: T,
    pub span: Range<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct Draft {
    pub mesh_span: Option<Range<usize>>,
    /// Keys written in [mesh], whatever their type, and the keys that
    /// misspelled ones probably meant: neither is then reported missing.
    pub mesh_keys: Vec<String>,
    /// `cluster` was written, but not as an array of tables.
    pub clusters_malformed: bool,
    pub mesh_id: Option<At<String>>,
    pub revision: Option<At<String>>,
    pub istio_version: Option<At<String>>,
    /// `[mesh] dataplane`: "sidecar" (the default) or "ambient".
    pub dataplane: Option<At<String>>,
    pub istioctl_path: Option<At<String>>,
    pub readiness_timeout: Option<At<String>>,
    pub istioctl_timeout: Option<At<String>>,
    pub state_path: Option<At<String>>,
    pub state_backend: Option<At<String>>,
    pub state_context: Option<At<String>>,
    pub state_namespace: Option<At<String>>,
    pub state_name: Option<At<String>>,
    /// `[trust]` was written (its span).
    pub trust_span: Option<Range<usize>>,
    pub trust_keys: Vec<String>,
    pub root_cert: Option<At<String>>,
    pub root_key: Option<At<String>>,
    pub intermediate_days: Option<At<i64>>,
    /// `[policy]` was written.
    pub policy_span: Option<Range<usize>>,
    /// `deny_delete`: each glob with where it is written (a value that is
    /// not a string is reported and left out).
    pub deny_delete: Option<Vec<At<String>>>,
    pub max_clusters_changed: Option<At<i64>>,
    pub require_canary: Option<At<bool>>,
    /// `[[mesh.keep_revision]]` tables.
    pub keep_revisions: Vec<DraftKept>,
    /// `[credentials] rotate_after`.
    pub rotate_after: Option<At<String>>,
    /// `[credentials] sync_timeout`.
    pub sync_timeout: Option<At<String>>,
    /// `[tags]` was written (its span).
    pub tags_span: Option<Range<usize>>,
    /// Each tag (its name where written) and the revision it names.
    pub tags: Vec<(At<String>, At<String>)>,
    pub clusters: Vec<DraftCluster>,
}

/// One `[[mesh.keep_revision]]`.
#[derive(Debug, Default)]
pub(crate) struct DraftKept {
    pub span: Range<usize>,
    pub name: Option<At<String>>,
    pub istio_version: Option<At<String>>,
    pub istioctl: Option<At<String>>,
    pub keys: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct DraftCluster {
    /// The `[[cluster]]` table: where a missing key is reported.
    pub span: Range<usize>,
    /// The position in the file's cluster array (for values lookup).
    pub index: usize,
    pub name: Option<At<String>>,
    pub context: Option<At<String>>,
    pub network: Option<At<String>>,
    pub role: Option<At<String>>,
    pub primary: Option<At<String>>,
    pub kubeconfig: Option<At<String>>,
    pub api_server: Option<At<String>>,
    pub values: Option<At<()>>,
    pub eastwest_values: Option<At<()>>,
    /// `values.global.readerServiceAccount.name` and `.namespace`, where
    /// written: the remote secret's token Secret is named after them.
    pub reader_name: Option<At<String>>,
    pub reader_namespace: Option<At<String>>,
    /// As `Draft::mesh_keys`, for this table.
    pub keys: Vec<String>,
}

pub(crate) const TOP_KEYS: &[&str] = &[
    "mesh",
    "istioctl",
    "state",
    "trust",
    "policy",
    "credentials",
    "tags",
    "cluster",
];
pub(crate) const CREDENTIALS_KEYS: &[&str] = &["rotate_after", "sync_timeout"];
pub(crate) const KEEP_REVISION_KEYS: &[&str] = &["name", "istio_version", "istioctl"];
pub(crate) const POLICY_KEYS: &[&str] = &["deny_delete", "max_clusters_changed", "require_canary"];
pub(crate) const TRUST_KEYS: &[&str] = &["root_cert", "root_key", "intermediate_days"];
pub(crate) const MESH_KEYS: &[&str] = &[
    "id",
    "revision",
    "istio_version",
    "keep_revision",
    "dataplane",
];
pub(crate) const ISTIOCTL_KEYS: &[&str] = &["path", "readiness_timeout", "timeout"];
pub(crate) const STATE_KEYS: &[&str] = &["path", "backend", "context", "namespace", "name"];
pub(crate) const CLUSTER_KEYS: &[&str] = &[
    "name",
    "context",
    "network",
    "role",
    "primary",
    "kubeconfig",
    "api_server",
    "values",
    "eastwest_values",
];

/// The closest of `candidates` to `word`, if close enough to be a typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A value the parser made up where the text had none (after a syntax
/// error): it has no text, so it has no span. Never reported.
fn is_placeholder(value: &Spanned<DeValue<'_>>) -> bool {
    value.span().is_empty()
}

pub(crate) struct Walker<'a> {
    pub loc: &'a Locator<'a>,
    pub errors: Vec<Diagnostic>,
}

impl Walker<'_> {
    fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<Option<String>>,
    ) {
        let d = self.loc.at(span, message, help.into());
        self.errors.push(d);
    }

    /// Reports an unknown key; returns the key it probably meant.
    fn unknown_key(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        table: &str,
        allowed: &[&str],
    ) -> Option<String> {
        let name = key.get_ref().as_ref();
        let meant = did_you_mean(name, allowed.iter().copied());
        let help = match meant {
            Some(s) => format!(
                "did you mean `{s}`? (keys of {table}: {})",
                allowed.join(", ")
            ),
            None => format!("remove it; the keys of {table} are: {}", allowed.join(", ")),
        };
        self.error(key.span(), format!("unknown key `{name}` in {table}"), help);
        meant.map(String::from)
    }

    fn string(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> Option<At<String>> {
        if is_placeholder(value) {
            return None;
        }
        match value.get_ref() {
            DeValue::String(s) => Some(At {
                value: s.to_string(),
                span: value.span(),
            }),
            other => {
                self.error(
                    value.span(),
                    format!("`{what}` must be a string, not {}", type_name(other)),
                    format!("write it in quotes, e.g. {what} = \"…\""),
                );
                None
            }
        }
    }

    fn integer(
        &mut self,
        what: &str,
        value: &Spanned<DeValue<'_>>,
        example: i64,
    ) -> Option<At<i64>> {
        if is_placeholder(value) {
            return None;
        }
        match value.get_ref() {
            DeValue::Integer(i) => {
                match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => Some(At {
                        value: n,
                        span: value.span(),
                    }),
                    Err(_) => {
                        self.error(
                            value.span(),
                            format!("`{what}` is not a whole number mesh can use"),
                            format!("write a plain number, e.g. {what} = {example}"),
                        );
                        None
                    }
                }
            }
            other => {
                self.error(
                    value.span(),
                    format!("`{what}` must be a number, not {}", type_name(other)),
                    format!("write a number without quotes, e.g. {what} = {example}"),
                );
                None
            }
        }
    }

    fn boolean(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> Option<At<bool>> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(At {
                value: *b,
                span: value.span(),
            }),
            other => {
                self.error(
                    value.span(),
                    format!("`{what}` must be true or false, not {}", type_name(other)),
                    format!("write it without quotes, e.g. {what} = true"),
                );
                None
            }
        }
    }

    /// An array of strings; each value that is not a string is reported.
    fn strings(&mut self, what: &str, value: &Spanned<DeValue<'_>>) -> Option<Vec<At<String>>> {
        match value.get_ref() {
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|item| match item.get_ref() {
                        DeValue::String(s) => Some(At {
                            value: s.to_string(),
                            span: item.span(),
                        }),
                        other => {
                            self.error(
                                item.span(),
                                format!("`{what}` holds {}, not a string", type_name(other)),
                                "write each value in quotes, e.g. \"*/install-control-plane\""
                                    .to_string(),
                            );
                            None
                        }
                    })
                    .collect(),
            ),
            other => {
                self.error(
                    value.span(),
                    format!(
                        "`{what}` must be an array of strings, not {}",
                        type_name(other)
                    ),
                    format!("write it in brackets, e.g. {what} = [\"*/install-control-plane\"]"),
                );
                None
            }
        }
    }

    /// `[[mesh.keep_revision]]`: an array of tables.
    fn keep_revisions(&mut self, value: &Spanned<DeValue<'_>>, draft: &mut Draft) {
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                value.span(),
                format!(
                    "`keep_revision` must be an array of tables, not {}",
                    type_name(value.get_ref())
                ),
                "write each kept revision as a [[mesh.keep_revision]] table".to_string(),
            );
            return;
        };
        for item in items {
            let Some(t) = self.table("mesh.keep_revision", item) else {
                continue;
            };
            let mut kept = DraftKept {
                span: item.span(),
                ..DraftKept::default()
            };
            for (k, v) in t {
                kept.keys.push(k.get_ref().to_string());
                match k.get_ref().as_ref() {
                    "name" => kept.name = self.string("name", v),
                    "istio_version" => kept.istio_version = self.string("istio_version", v),
                    "istioctl" => kept.istioctl = self.string("istioctl", v),
                    _ => kept.keys.extend(self.unknown_key(
                        k,
                        "[[mesh.keep_revision]]",
                        KEEP_REVISION_KEYS,
                    )),
                }
            }
            draft.keep_revisions.push(kept);
        }
    }

    fn table<'t, 'i>(
        &mut self,
        what: &str,
        value: &'t Spanned<DeValue<'i>>,
    ) -> Option<&'t DeTable<'i>> {
        if is_placeholder(value) {
            return None;
        }
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.error(
                    value.span(),
                    format!("`{what}` must be a table, not {}", type_name(other)),
                    format!("write it as a [{what}] section"),
                );
                None
            }
        }
    }

    /// Walks the whole document.
    pub fn document(&mut self, root: &DeTable<'_>) -> Draft {
        let mut draft = Draft::default();
        for (key, value) in root {
            match key.get_ref().as_ref() {
                "mesh" => self.mesh_section(key, value, &mut draft),
                "istioctl" => self.istioctl_section(key, value, &mut draft),
                "trust" => self.trust_section(key, value, &mut draft),
                "credentials" => self.credentials_section(key, value, &mut draft),
                "tags" => self.tags_section(key, value, &mut draft),
                "policy" => self.policy_section(key, value, &mut draft),
                "state" => self.state_section(key, value, &mut draft),
                "cluster" => match value.get_ref() {
                    DeValue::Array(items) => {
                        for (index, item) in items.iter().enumerate() {
                            if let Some(t) = self.table("cluster", item) {
                                let c = self.cluster(t, item.span(), index);
                                draft.clusters.push(c);
                            }
                        }
                    }
                    other => {
                        draft.clusters_malformed = true;
                        self.error(
                            value.span(),
                            format!(
                                "`cluster` must be an array of tables, not {}",
                                type_name(other)
                            ),
                            "write each cluster as a [[cluster]] section (two brackets)"
                                .to_string(),
                        )
                    }
                },
                _ => {
                    self.unknown_key(key, "the mesh file", TOP_KEYS);
                }
            }
        }
        draft
    }

    /// `[mesh]`.
    fn mesh_section(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        draft: &mut Draft,
    ) {
        draft.mesh_span = Some(key.span());
        if let Some(t) = self.table("mesh", value) {
            for (k, v) in t {
                draft.mesh_keys.push(k.get_ref().to_string());
                match k.get_ref().as_ref() {
                    "id" => draft.mesh_id = self.string("id", v),
                    "revision" => draft.revision = self.string("revision", v),
                    "istio_version" => draft.istio_version = self.string("istio_version", v),
                    "keep_revision" => self.keep_revisions(v, draft),
                    "dataplane" => draft.dataplane = self.string("dataplane", v),
                    _ => draft
                        .mesh_keys
                        .extend(self.unknown_key(k, "[mesh]", MESH_KEYS)),
                }
            }
        }
    }

    /// `[istioctl]`.
    fn istioctl_section(
        &mut self,
        _key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        draft: &mut Draft,
    ) {
        if let Some(t) = self.table("istioctl", value) {
            for (k, v) in t {
                match k.get_ref().as_ref() {
                    "path" => draft.istioctl_path = self.string("path", v),
                    "readiness_timeout" => {
                        draft.readiness_timeout = self.string("readiness_timeout", v)
                    }
                    "timeout" => draft.istioctl_timeout = self.string("timeout", v),
                    _ => {
                        self.unknown_key(k, "[istioctl]", ISTIOCTL_KEYS);
                    }
                }
            }
        }
    }

    /// `[trust]`.
    fn trust_section(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        draft: &mut Draft,
    ) {
        if let Some(t) = self.table("trust", value) {
            draft.trust_span = Some(key.span().start..value.span().end);
            for (k, v) in t {
                let name = k.get_ref().as_ref();
                draft.trust_keys.push(name.to_string());
                match name {
                    "root_cert" => draft.root_cert = self.string("root_cert", v),
                    "root_key" => draft.root_key = self.string("root_key", v),
                    "intermediate_days" => {
                        draft.intermediate_days = self.integer("intermediate_days", v, 365)
                    }
                    _ => {
                        if let Some(m) = self.unknown_key(k, "[trust]", TRUST_KEYS) {
                            draft.trust_keys.push(m);
                        }
                    }
                }
            }
        }
    }

    /// `[credentials]`.
    fn credentials_section(
        &mut self,
        _key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        draft: &mut Draft,
    ) {
        if let Some(t) = self.table("credentials", value) {
            for (k, v) in t {
                match k.get_ref().as_ref() {
                    "rotate_after" => draft.rotate_after = self.string("rotate_after", v),
                    "sync_timeout" => draft.sync_timeout = self.string("sync_timeout", v),
                    _ => {
                        self.unknown_key(k, "[credentials]", CREDENTIALS_KEYS);
                    }
                }
            }
        }
    }

    /// `[tags]`.
    fn tags_section(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        draft: &mut Draft,
    ) {
        if let Some(t) = self.table("tags", value) {
            draft.tags_span = Some(key.span());
            for (k, v) in t {
                let tag = At {
                    value: k.get_ref().to_string(),
                    span: k.span(),
                };
                if let Some(rev) = self.string(&format!("tags.{}", tag.value), v) {
                    draft.tags.push((tag, rev));
                }
            }
        }
    }

    /// `[policy]`.
    fn policy_section(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        draft: &mut Draft,
    ) {
        if let Some(t) = self.table("policy", value) {
            draft.policy_span = Some(key.span());
            for (k, v) in t {
                match k.get_ref().as_ref() {
                    "deny_delete" => draft.deny_delete = self.strings("deny_delete", v),
                    "max_clusters_changed" => {
                        draft.max_clusters_changed = self.integer("max_clusters_changed", v, 10)
                    }
                    "require_canary" => draft.require_canary = self.boolean("require_canary", v),
                    _ => {
                        self.unknown_key(k, "[policy]", POLICY_KEYS);
                    }
                }
            }
        }
    }

    /// `[state]`.
    fn state_section(
        &mut self,
        _key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        draft: &mut Draft,
    ) {
        if let Some(t) = self.table("state", value) {
            for (k, v) in t {
                match k.get_ref().as_ref() {
                    "path" => draft.state_path = self.string("path", v),
                    "backend" => draft.state_backend = self.string("backend", v),
                    "context" => draft.state_context = self.string("context", v),
                    "namespace" => draft.state_namespace = self.string("namespace", v),
                    "name" => draft.state_name = self.string("name", v),
                    _ => {
                        self.unknown_key(k, "[state]", STATE_KEYS);
                    }
                }
            }
        }
    }

    fn cluster(&mut self, t: &DeTable<'_>, span: Range<usize>, index: usize) -> DraftCluster {
        let mut c = DraftCluster {
            span,
            index,
            ..Default::default()
        };
        for (k, v) in t {
            let key = k.get_ref().as_ref();
            c.keys.push(key.to_string());
            let slot = match key {
                "name" => &mut c.name,
                "context" => &mut c.context,
                "network" => &mut c.network,
                "role" => &mut c.role,
                "primary" => &mut c.primary,
                "kubeconfig" => &mut c.kubeconfig,
                "api_server" => &mut c.api_server,
                "values" | "eastwest_values" => {
                    if let Some(t) = self.table(key, v) {
                        let at = Some(At {
                            value: (),
                            span: v.span(),
                        });
                        if key == "values" {
                            c.values = at;
                            (c.reader_name, c.reader_namespace) = reader_keys(t);
                        } else {
                            c.eastwest_values = at;
                        }
                    }
                    continue;
                }
                _ => {
                    c.keys
                        .extend(self.unknown_key(k, "[[cluster]]", CLUSTER_KEYS));
                    continue;
                }
            };
            *slot = self.string(key, v);
        }
        c
    }
}

/// `global.readerServiceAccount.name` and `.namespace` of a `values`
/// table, when written as strings (other types are Istio's to refuse).
fn reader_keys(values: &DeTable<'_>) -> (Option<At<String>>, Option<At<String>>) {
    fn table<'t, 'i>(t: &'t DeTable<'i>, key: &str) -> Option<&'t DeTable<'i>> {
        match t.get(key)?.get_ref() {
            DeValue::Table(inner) => Some(inner),
            _ => None,
        }
    }
    let Some(reader) = table(values, "global").and_then(|g| table(g, "readerServiceAccount"))
    else {
        return (None, None);
    };
    let string = |key: &str| match reader.get(key).map(|v| (v.get_ref(), v.span())) {
        Some((DeValue::String(s), span)) => Some(At {
            value: s.to_string(),
            span,
        }),
        _ => None,
    };
    (string("name"), string("namespace"))
}

/// A document with syntax errors: the errors, and the document as far as
/// the parser could make it out (its other mistakes are worth reporting).
pub(crate) type SyntaxErrors<'i> = (Vec<Diagnostic>, Spanned<DeTable<'i>>);

/// Parses the syntax; a syntax error is reported with the parser's message.
pub(crate) fn syntax<'i>(
    source: &'i str,
    loc: &Locator<'_>,
) -> Result<Spanned<DeTable<'i>>, SyntaxErrors<'i>> {
    let (root, errors) = DeTable::parse_recoverable(source);
    if errors.is_empty() {
        return Ok(root);
    }
    let diagnostics = errors
        .iter()
        .map(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end_matches('\n');
            if message.starts_with("duplicate key")
                && let Some(d) = duplicate_key(source, span.clone(), loc)
            {
                return d;
            }
            loc.at(
                span,
                format!("invalid TOML: {message}"),
                Some("fix the syntax here; https://toml.io explains the format".into()),
            )
        })
        .collect();
    Err((diagnostics, root))
}

/// toml says only "duplicate key": name the key and where it was set first
/// (the nearest earlier line of the same table that sets it).
fn duplicate_key(source: &str, span: Range<usize>, loc: &Locator<'_>) -> Option<Diagnostic> {
    let key = source.get(span.clone())?.trim().trim_matches('"');
    if key.is_empty() {
        return None;
    }
    // The lines before the duplicate's own line, nearest first.
    let start = span.start.min(source.len());
    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let mut first = None;
    for (i, line) in source[..line_start]
        .lines()
        .enumerate()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let t = line.trim_start();
        if t.starts_with('[') {
            break;
        }
        let name = t.split('=').next().unwrap_or("").trim().trim_matches('"');
        if t.contains('=') && name == key {
            first = Some(i + 1);
        }
    }
    let first_line = first;
    Some(loc.at(
        span,
        match first_line {
            Some(l) => format!("invalid TOML: duplicate key `{key}`, first set at line {l}"),
            None => format!("invalid TOML: duplicate key `{key}`"),
        },
        Some("a key may be set once per table: remove one of them".into()),
    ))
}
