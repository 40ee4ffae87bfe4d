//! `--sandbox DIR`: simulated clusters (kubesim) kept in DIR, and the
//! simulated istioctl that mesh runs as `mesh __sandbox-istioctl`.

use anyhow::{Result, bail};
use engine::config::MeshFile;
use providers::istioctl::Istioctl;
use std::path::{Path, PathBuf};

pub struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    pub async fn open(dir: &Path, _mesh: &MeshFile) -> Result<Sandbox> {
        bail!(
            "the sandbox ({}) needs kubesim, the cluster simulator, which this build does not have yet",
            dir.display()
        )
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub fn istioctl(&self) -> Result<Istioctl> {
        let exe = std::env::current_exe()?;
        let mut i = Istioctl::new(exe);
        i.prefix = vec!["__sandbox-istioctl".into()];
        Ok(i)
    }

    pub async fn close(self) {}
}

/// `mesh __sandbox-istioctl ARGS…`: the simulated istioctl.
pub fn istioctl(_args: &[String]) -> u8 {
    eprintln!("istioctl (simulated): not available in this build");
    1
}
