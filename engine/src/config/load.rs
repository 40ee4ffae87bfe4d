//! Loading a mesh file: the one place the engine reads files (the mesh
//! file, and the files its `[trust]` names). Everything after the bytes
//! are read is the pure parse and validation of the other modules.

use super::*;

/// Reads and validates the mesh file at `path`: a regular file of at most
/// [`MESH_FILE_LIMIT`] (a FIFO or a device is refused, not read).
pub fn load(path: &Path) -> Result<MeshFile, Diagnostics> {
    let bytes = state::local::read_regular_file(path, MESH_FILE_LIMIT, "mesh file");
    if let Ok(bytes) = &bytes
        && let Err(e) = std::str::from_utf8(bytes)
    {
        // Point at the first bad byte: the valid text before it gives its line and column.
        let good = &bytes[..e.valid_up_to()];
        let text = String::from_utf8_lossy(good);
        let line = text.matches('\n').count() + 1;
        let line_start = text.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..].chars().count() + 1;
        return Err(Diagnostics(vec![Diagnostic {
            path: path.to_path_buf(),
            line,
            column,
            width: 1,
            source_line: text[line_start..].to_string(),
            message: format!(
                "the mesh file is not UTF-8 text: byte {} (0x{:02x}) is not valid UTF-8",
                e.valid_up_to(),
                bytes[e.valid_up_to()]
            ),
            help: Some("save the file as UTF-8 (TOML files must be UTF-8)".into()),
        }]));
    }
    match bytes.and_then(|b| String::from_utf8(b).map_err(std::io::Error::other)) {
        Ok(source) => match parse_keeping_trust(&source, path) {
            Ok(mut mesh) => {
                if let Some(trust) = mesh.trust.as_mut() {
                    load_trust(trust, path, &source, &mut mesh.warnings)?;
                }
                Ok(mesh)
            }
            Err((mut diagnostics, Some(mut trust))) => {
                if let Err(more) = load_trust(&mut trust, path, &source, &mut Vec::new()) {
                    diagnostics.0.extend(more.0);
                    diagnostics = sorted(diagnostics.0);
                }
                Err(diagnostics)
            }
            Err((diagnostics, None)) => Err(diagnostics),
        },
        Err(e) => Err(unreadable(path, &e)),
    }
}

/// Reads and checks `[trust]`'s files: the root certificate (kept, it is
/// public) and the key (read only to check it matches, then dropped; it is
/// read again at apply time). A key file readable by others is a warning.
fn load_trust(
    trust: &mut TrustSection,
    path: &Path,
    source: &str,
    warnings: &mut Vec<String>,
) -> Result<(), Diagnostics> {
    let loc = Locator::new(path, source);
    let (cert_span, key_span) = trust.spans.clone();
    let read = |p: &Path, span: &std::ops::Range<usize>, what: &str| read_pem(&loc, p, span, what);
    // Both files' problems at once.
    let (cert, key) = match (
        read(&trust.root_cert, &cert_span, "root certificate"),
        read(&trust.root_key, &key_span, "root key"),
    ) {
        (Ok(c), Ok(k)) => (c, providers::Sensitive::new(k)),
        (Err(mut a), Err(b)) => {
            a.0.extend(b.0);
            return Err(a);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    // The check plug-ca runs before it signs, run here so that a root that
    // cannot do its job stops every command before anything runs.
    let checked = providers::ca::check_root(
        &cert,
        Some(&key),
        providers::ca::now(),
        trust.intermediate_days,
    );
    if let Err(problem) = checked {
        let (span, help) = root_help(&problem, cert_span, key_span);
        return Err(Diagnostics(vec![loc.at(
            span,
            problem.to_string(),
            Some(help),
        )]));
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&trust.root_key) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "the root key {} is readable by others (mode {mode:o}): `chmod 600 {}`",
                trust.root_key.display(),
                trust.root_key.display()
            ));
        }
    }
    trust.root_cert_pem = cert;
    Ok(())
}

/// A PEM file named at `span`: only a regular file, and only up to
/// [`PEM_FILE_LIMIT`] (a FIFO or a device named here would block the load
/// or never end).
fn read_pem(
    loc: &Locator<'_>,
    p: &Path,
    span: &std::ops::Range<usize>,
    what: &str,
) -> Result<String, Diagnostics> {
    state::local::read_regular_file(p, PEM_FILE_LIMIT, "PEM file")
        .and_then(|b| {
            String::from_utf8(b).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "it is not text, as a PEM file is",
                )
            })
        })
        .map_err(|e| {
            let help = match e.kind() {
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::FileTooLarge => {
                    "point it at the PEM file itself (a regular file of a few KiB); `mesh ca init` makes a new root in certs/ beside the mesh file"
                }
                _ => {
                    "check the path (relative to the mesh file); `mesh ca init` makes a new root in certs/ beside the mesh file"
                }
            };
            Diagnostics(vec![loc.at(
                span.clone(),
                format!("cannot read the {what} {}: {e}", p.display()),
                Some(help.into()),
            )])
        })
}

/// Where a root problem is (the certificate's or the key's key in the
/// mesh file) and what to do about it.
fn root_help(
    problem: &providers::ca::RootProblem,
    cert_span: std::ops::Range<usize>,
    key_span: std::ops::Range<usize>,
) -> (std::ops::Range<usize>, String) {
    use providers::ca::RootProblem;
    const NEW_ROOT: &str = "`mesh ca init DIR` makes one";
    match problem {
        RootProblem::Key(_) => (
            key_span,
            "root_key must be the PEM private key of root_cert (PKCS#8, PKCS#1 or SEC1, unencrypted)"
                .to_string(),
        ),
        RootProblem::KeyMismatch => (
            key_span,
            "point root_key at the key the root certificate was made with".to_string(),
        ),
        RootProblem::NotCa => (
            cert_span,
            "root_cert must be a CA certificate (basicConstraints CA:true)".to_string(),
        ),
        RootProblem::Expired { .. } => (
            cert_span,
            "make a new root (`mesh ca init`) and plan: every primary's intermediate is then rotated"
                .to_string(),
        ),
        RootProblem::NotYetValid { .. } => (
            cert_span,
            format!(
                "make a root valid from now (was the clock of the machine that made it ahead?); {NEW_ROOT}"
            ),
        ),
        RootProblem::PathLenZero => (
            cert_span,
            format!(
                "make a root with basicConstraints CA:true and no pathlen (or pathlen:1 or more); {NEW_ROOT}"
            ),
        ),
        RootProblem::NoKeyCertSign => (
            cert_span,
            format!("make a root whose keyUsage has keyCertSign (and cRLSign); {NEW_ROOT}"),
        ),
        RootProblem::ExtendedKeyUsage { .. } => (
            cert_span,
            format!(
                "make a root without extendedKeyUsage (or with serverAuth and clientAuth); {NEW_ROOT}"
            ),
        ),
        RootProblem::Outlived { days_left, .. } if *days_left >= 1 => (
            cert_span,
            format!(
                "set [trust] intermediate_days to at most {days_left}, or use a root that outlives the \
                 intermediates ({NEW_ROOT}, valid ten years)"
            ),
        ),
        RootProblem::Outlived { .. } => (
            cert_span,
            format!("the root expires within a day: use a new one ({NEW_ROOT}, valid ten years)"),
        ),
        RootProblem::Cert(_) => (cert_span, "root_cert must be a PEM certificate".to_string()),
        RootProblem::NotSelfSigned { .. } => (
            cert_span,
            format!(
                "point root_cert at the self-signed root itself (the last certificate of the \
                 chain), or make a new one: {NEW_ROOT}"
            ),
        ),
        RootProblem::UnknownCritical { .. } => (
            cert_span,
            format!("make a root without that extension, or mark it not critical; {NEW_ROOT}"),
        ),
        RootProblem::Bundle { .. } => (
            cert_span,
            "point root_cert at a file with the root alone: an intermediate or a second root \
             beside it would reach every primary's root-cert.pem unseen by plans"
                .to_string(),
        ),
    }
}

/// The mesh file could not be read: what to do (no location: there is no
/// text to point into).
fn unreadable(path: &Path, e: &std::io::Error) -> Diagnostics {
    let (message, help) = if e.kind() == std::io::ErrorKind::NotFound {
        let init = if path == Path::new("mesh.toml") {
            "mesh init".to_string()
        } else {
            format!("mesh init -f {}", path.display())
        };
        (
            format!(
                "no mesh file at {}: create one with `{init}` (or pass -f)",
                path.display()
            ),
            None,
        )
    } else {
        let help = match e.kind() {
            std::io::ErrorKind::InvalidInput => {
                "name a regular file with -f FILE: mesh does not read a mesh file from a pipe or a device (write the text to a file first)"
            }
            std::io::ErrorKind::FileTooLarge => {
                "check that -f FILE names the mesh file: even one of thousands of clusters is far smaller"
            }
            _ => "check that it is a readable UTF-8 text file, or name another with -f FILE",
        };
        (
            format!("cannot read the mesh file {}: {e}", path.display()),
            Some(help.to_string()),
        )
    };
    Diagnostics(vec![Diagnostic {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        width: 0,
        source_line: String::new(),
        message,
        help,
    }])
}
