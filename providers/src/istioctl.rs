//! istioctl as a child process: argv only (never a shell), the IstioOperator
//! on stdin, output captured for the step's log, a timeout.

use crate::rendered::Target;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum IstioctlError {
    #[error(
        "istioctl was not found (looked for `{program}`). Install it \
         (https://istio.io/latest/docs/setup/additional-setup/download-istio-release/) and put it \
         on PATH, or set `[istioctl] path` in the mesh file"
    )]
    NotFound { program: String },
    #[error("could not run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`istioctl {args}` failed ({status}){}", tail(.output))]
    Failed {
        args: String,
        status: String,
        output: String,
    },
    #[error(
        "`istioctl {args}` did not finish within {secs} s and was stopped. If the cluster is slow to \
         pull images or schedule pods, raise `[istioctl] readiness_timeout` (and `timeout`) in the mesh file"
    )]
    Timeout { args: String, secs: u64 },
    /// `found` is istioctl's own output, escaped here: whatever binary
    /// `[istioctl] path` names may print terminal escapes.
    #[error(
        "the mesh file asks for Istio {wanted} (`istio_version`), but `{program} version --remote=false` says {}: \
         install istioctl {wanted} or change `istio_version` (\"1.28\" accepts any 1.28.x; \"1.28.0\" only that release)",
        crate::rendered::shown(.found)
    )]
    Version {
        program: String,
        wanted: String,
        found: String,
    },
}

fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let start = lines.len().saturating_sub(20);
    if lines.is_empty() {
        String::new()
    } else {
        format!(":\n{}", lines[start..].join("\n"))
    }
}

/// How to run istioctl.
#[derive(Debug, Clone)]
pub struct Istioctl {
    /// The binary: a name looked up in PATH, or a path.
    pub program: OsString,
    /// Arguments before istioctl's own (the sandbox runs `mesh __sandbox-istioctl`).
    pub prefix: Vec<OsString>,
    /// Extra environment for the child.
    pub env: Vec<(OsString, OsString)>,
    /// When a run is stopped: longer than `readiness_timeout`.
    pub timeout: Duration,
    /// `istioctl install --readiness-timeout`, passed explicitly so that
    /// istioctl gives up (with its own message) before mesh stops it.
    pub readiness_timeout: Duration,
}

/// What an istioctl run printed, stdout then stderr.
#[derive(Debug, Clone, Default)]
pub struct RunLog {
    pub argv: Vec<String>,
    pub output: String,
}

impl Istioctl {
    pub fn new(program: impl Into<OsString>) -> Istioctl {
        Istioctl {
            program: program.into(),
            prefix: Vec::new(),
            env: Vec::new(),
            timeout: Duration::from_secs(720),
            readiness_timeout: Duration::from_secs(300),
        }
    }

    fn target_args(target: &Target, kubeconfig: Option<&PathBuf>) -> Vec<String> {
        let mut args = vec!["--context".to_string(), target.context.clone()];
        if let Some(k) = target.kubeconfig.as_ref().or(kubeconfig) {
            args.push("--kubeconfig".into());
            args.push(k.display().to_string());
        }
        args
    }

    /// `istioctl install -y -f - --context C [--kubeconfig K]` with `document` on stdin.
    pub async fn install(
        &self,
        target: &Target,
        kubeconfig: Option<&PathBuf>,
        document: &str,
    ) -> Result<RunLog, IstioctlError> {
        let mut args = vec![
            "install".to_string(),
            "-y".into(),
            "-f".into(),
            "-".into(),
            "--readiness-timeout".into(),
            format!("{}s", self.readiness_timeout.as_secs()),
        ];
        args.extend(Self::target_args(target, kubeconfig));
        self.run(&args, Some(document)).await
    }

    /// `istioctl uninstall -y --purge --context C`.
    pub async fn uninstall_purge(
        &self,
        target: &Target,
        kubeconfig: Option<&PathBuf>,
    ) -> Result<RunLog, IstioctlError> {
        let mut args = vec!["uninstall".to_string(), "-y".into(), "--purge".into()];
        args.extend(Self::target_args(target, kubeconfig));
        self.run(&args, None).await
    }

    /// `istioctl uninstall -y --revision R --context C`: one revision's
    /// control plane (or remote profile), leaving the others and the CRDs.
    pub async fn uninstall_revision(
        &self,
        target: &Target,
        kubeconfig: Option<&PathBuf>,
        revision: &str,
    ) -> Result<RunLog, IstioctlError> {
        let mut args = vec![
            "uninstall".to_string(),
            "-y".into(),
            "--revision".into(),
            revision.into(),
        ];
        args.extend(Self::target_args(target, kubeconfig));
        self.run(&args, None).await
    }

    /// `istioctl tag set T --revision R --overwrite -y --context C`: the
    /// revision tag's webhook (and, for `default`, the default validator),
    /// pointing at revision R's injector. `-y` always: without it a
    /// conflict prompt reads an empty stdin and istioctl exits 0 having
    /// applied nothing.
    pub async fn tag_set(
        &self,
        target: &Target,
        kubeconfig: Option<&PathBuf>,
        tag: &str,
        revision: &str,
    ) -> Result<RunLog, IstioctlError> {
        let mut args = vec![
            "tag".to_string(),
            "set".into(),
            tag.into(),
            "--revision".into(),
            revision.into(),
            "--overwrite".into(),
            "-y".into(),
        ];
        args.extend(Self::target_args(target, kubeconfig));
        self.run(&args, None).await
    }

    /// `istioctl tag remove T -y --context C`.
    pub async fn tag_remove(
        &self,
        target: &Target,
        kubeconfig: Option<&PathBuf>,
        tag: &str,
    ) -> Result<RunLog, IstioctlError> {
        let mut args = vec!["tag".to_string(), "remove".into(), tag.into(), "-y".into()];
        args.extend(Self::target_args(target, kubeconfig));
        self.run(&args, None).await
    }

    /// `istioctl x precheck -o json --context C`: what Istio finds that an
    /// upgrade would break, one line each (`Error IST0142: …`). istioctl
    /// exits 1 when it finds a warning or worse, and prints nothing when it
    /// finds none: both are findings, not failures.
    pub async fn precheck(
        &self,
        target: &Target,
        kubeconfig: Option<&PathBuf>,
    ) -> Result<Vec<String>, IstioctlError> {
        let mut args = vec![
            "x".to_string(),
            "precheck".into(),
            "-o".into(),
            "json".into(),
        ];
        args.extend(Self::target_args(target, kubeconfig));
        let output = match self.run(&args, None).await {
            Ok(log) => log.output,
            Err(IstioctlError::Failed { output, .. }) if output.contains('[') => output,
            Err(e) => return Err(e),
        };
        Ok(parse_precheck(&output))
    }

    /// This istioctl's settings with another binary: a kept revision's
    /// istioctl. Under the sandbox (a prefix: mesh's simulated istioctl)
    /// the simulator stays, told which istioctl it stands for.
    pub fn with_program(&self, program: &str) -> Istioctl {
        let mut i = self.clone();
        if i.prefix.is_empty() {
            i.program = program.into();
        } else {
            i.env.push(("KUBESIM_ISTIOCTL_AS".into(), program.into()));
        }
        i
    }

    /// The client version, from `istioctl version --remote=false -o json`
    /// (`clientVersion.version`); the plain output's last version-looking
    /// word only if the JSON form is refused (very old istioctl).
    pub async fn version(&self) -> Result<String, IstioctlError> {
        let json = self
            .run(
                &[
                    "version".into(),
                    "--remote=false".into(),
                    "-o".into(),
                    "json".into(),
                ],
                None,
            )
            .await;
        if let Ok(log) = &json
            && let Some(v) = parse_version_json(&log.output)
        {
            return Ok(v);
        }
        let log = self
            .run(&["version".into(), "--remote=false".into()], None)
            .await?;
        Ok(parse_version(&log.output).unwrap_or_else(|| crate::rendered::shown(log.output.trim())))
    }

    /// Checks the client version against `wanted` (see [`version_matches`]).
    pub async fn check_version(&self, wanted: &str) -> Result<(), IstioctlError> {
        let found = self.version().await?;
        if version_matches(wanted, &found) {
            Ok(())
        } else {
            Err(IstioctlError::Version {
                program: self.program.to_string_lossy().into_owned(),
                wanted: wanted.into(),
                found,
            })
        }
    }

    /// Runs istioctl with `args`, `stdin` piped in, output captured.
    pub async fn run(&self, args: &[String], stdin: Option<&str>) -> Result<RunLog, IstioctlError> {
        let program = self.program.to_string_lossy().into_owned();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // No pre_exec hook: without one, the child is started with
        // posix_spawn, not a fork of this (possibly large) process.
        let mut child = cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                IstioctlError::NotFound {
                    program: program.clone(),
                }
            } else {
                IstioctlError::Spawn {
                    program: program.clone(),
                    source,
                }
            }
        })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A child that exits without reading stdin closes the pipe; its
            // exit status tells what went wrong, so a write error is ignored.
            let _ = pipe.write_all(input.as_bytes()).await;
            drop(pipe);
        }
        let joined = args.join(" ");
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(source)) => return Err(IstioctlError::Spawn { program, source }),
            Err(_) => {
                return Err(IstioctlError::Timeout {
                    args: joined,
                    secs: self.timeout.as_secs(),
                });
            }
        };
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(IstioctlError::Failed {
                args: joined,
                status: out.status.to_string(),
                output,
            });
        }
        Ok(RunLog {
            argv: args.to_vec(),
            output,
        })
    }
}

/// The findings in `istioctl x precheck -o json` output (a JSON array of
/// `{code, level, message}` before anything else it prints), escaped.
pub fn parse_precheck(output: &str) -> Vec<String> {
    let Some(start) = output.find('[') else {
        return Vec::new();
    };
    let mut stream =
        serde_json::Deserializer::from_str(&output[start..]).into_iter::<serde_json::Value>();
    let Some(Ok(serde_json::Value::Array(items))) = stream.next() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|m| {
            let s = |k: &str| m.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
            crate::rendered::shown(&format!("{} {}: {}", s("level"), s("code"), s("message")))
        })
        .collect()
}

/// `clientVersion.version` of `istioctl version --remote=false -o json`.
pub fn parse_version_json(output: &str) -> Option<String> {
    // istioctl may print warnings before the JSON; the JSON is the object
    // that starts at the first `{` of a line.
    let start = output
        .find("\n{")
        .map(|i| i + 1)
        .or_else(|| output.starts_with('{').then_some(0))?;
    let value: serde_json::Value = serde_json::from_str(output[start..].trim()).ok()?;
    value
        .pointer("/clientVersion/version")
        .and_then(serde_json::Value::as_str)
        .filter(|v| !v.is_empty())
        .map(String::from)
}

/// Whether istioctl's `found` version is the mesh file's `wanted` one:
/// `1.28` accepts any 1.28 release (`1.28.0`, `1.28.3`, `1.28-dev`, a
/// `1.28.1-beta.0`); `1.28.0` only `1.28.0` exactly (a pre-release of it
/// is another release).
pub fn version_matches(wanted: &str, found: &str) -> bool {
    if wanted == found {
        return true;
    }
    let core = |v: &str| -> Vec<String> {
        v.split(['-', '+'])
            .next()
            .unwrap_or("")
            .split('.')
            .map(String::from)
            .collect()
    };
    let w = core(wanted);
    let f = core(found);
    // Only a two-part `major.minor` (without a suffix) is a range.
    w.len() == 2 && !wanted.contains(['-', '+']) && f.len() >= 2 && f[..2] == w[..]
}

/// The version in `istioctl version --remote=false` output, which is either
/// a bare `1.28.0` or `client version: 1.28.0`.
pub fn parse_version(output: &str) -> Option<String> {
    output
        .split_whitespace()
        .rev()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precheck_findings() {
        let out = "[\n  {\"code\": \"IST0142\", \"level\": \"Error\", \"message\": \"Kubernetes 1.30 is too old\"}\n]\nError: Issues found when checking the cluster.\n";
        assert_eq!(
            parse_precheck(out),
            vec!["Error IST0142: Kubernetes 1.30 is too old".to_string()]
        );
        assert!(parse_precheck("").is_empty());
        assert!(parse_precheck("✔ No issues found when checking the cluster.").is_empty());
    }

    #[test]
    fn json_versions_and_ranges() {
        let out = "{\n  \"clientVersion\": {\n    \"version\": \"1.31-dev\",\n    \"revision\": \"x\"\n  }\n}\n";
        assert_eq!(parse_version_json(out).as_deref(), Some("1.31-dev"));
        let warned = format!("warning: no config\n{out}");
        assert_eq!(parse_version_json(&warned).as_deref(), Some("1.31-dev"));
        assert_eq!(parse_version_json("client version: 1.28.0"), None);
        assert!(version_matches("1.28", "1.28.0"));
        assert!(version_matches("1.28", "1.28.4"));
        assert!(version_matches("1.31", "1.31-dev"));
        assert!(!version_matches("1.28", "1.29.0"));
        assert!(!version_matches("1.28", "1.2.8"));
        assert!(version_matches("1.28.0", "1.28.0"));
        assert!(!version_matches("1.28.0", "1.28.1"));
        assert!(!version_matches("1.28.0", "1.28.0-beta.1"));
        assert!(!version_matches("1.28.0-beta.1", "1.28.0"));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.28.0\n").as_deref(), Some("1.28.0"));
        assert_eq!(
            parse_version("client version: 1.27.3\n").as_deref(),
            Some("1.27.3")
        );
        assert_eq!(parse_version("nothing here"), None);
    }

    #[test]
    fn a_version_with_escapes_is_shown_escaped() {
        let e = IstioctlError::Version {
            program: "istioctl".into(),
            wanted: "1.28".into(),
            found: "1.2\u{1b}]0;pwned\u{7}".into(),
        }
        .to_string();
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.contains("says 1.2\\u{1b}]0;pwned\\u{7}:"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_binary_says_how_to_get_one() {
        let e = Istioctl::new("/nonexistent/istioctl")
            .run(&["version".into()], None)
            .await
            .unwrap_err();
        assert!(matches!(e, IstioctlError::NotFound { .. }));
        assert!(e.to_string().contains("[istioctl] path"));
    }

    #[tokio::test]
    async fn stdin_reaches_the_child_and_failures_carry_output() {
        // `cat` stands in for istioctl: it echoes stdin.
        let log = Istioctl::new("cat")
            .run(&[], Some("kind: IstioOperator\n"))
            .await
            .unwrap();
        assert_eq!(log.output, "kind: IstioOperator\n");
        let e = Istioctl::new("sh")
            .run(&["-c".into(), "echo boom >&2; exit 3".into()], None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
    }

    #[tokio::test]
    async fn a_slow_child_times_out() {
        let mut i = Istioctl::new("sleep");
        i.timeout = Duration::from_millis(100);
        let e = i.run(&["5".into()], None).await.unwrap_err();
        assert!(matches!(e, IstioctlError::Timeout { .. }));
    }
}
