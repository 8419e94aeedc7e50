//! A real Kubernetes control plane — etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler built from their Go modules —
//! started on loopback in a temp dir by `scripts/k8s-control-plane.sh`, with
//! real certificates, RBAC and the default admission plugins. Stopped when
//! dropped. `kubectl` comes from the same release; `helm` is the real Helm
//! that `scripts/setup.sh` installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube::config::{KubeConfigOptions, Kubeconfig};

pub struct ControlPlane {
    dir: tempfile::TempDir,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Where kube-apiserver, kubectl, … are.
    pub bin_dir: PathBuf,
    /// The API server's host and port.
    pub apiserver: (String, u16),
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

impl ControlPlane {
    /// Builds the binaries if they are not cached yet (many minutes the first
    /// time), starts everything and waits until the API server is ready.
    /// Blocking.
    pub fn start() -> ControlPlane {
        let dir = tempfile::Builder::new().prefix("shoal-k8s-").tempdir().expect("control plane temp dir");
        let script = repo_root().join("scripts/k8s-control-plane.sh");
        // The watchdog stops the control plane if this test process dies without dropping it.
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir.path())
            .env("SHOAL_K8S_WATCH_PID", std::process::id().to_string())
            .output()
            .expect("run scripts/k8s-control-plane.sh");
        assert!(
            out.status.success(),
            "scripts/k8s-control-plane.sh start failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.path().join("env")).expect("the control plane's env file");
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_else(|| panic!("{name} is not in the control plane's env file:\n{env}"))
        };
        let server = var("APISERVER");
        let hostport = server.strip_prefix("https://").expect("an https API server");
        let (host, port) = hostport.rsplit_once(':').expect("host:port");
        ControlPlane {
            kubeconfig: PathBuf::from(var("KUBECONFIG")),
            bin_dir: PathBuf::from(var("SHOAL_K8S_BIN")),
            apiserver: (host.to_string(), port.parse().expect("a port")),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An admin client.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("a client config");
        kube::Client::try_from(config).expect("a kube client")
    }

    /// `kubectl ARGS` with the admin kubeconfig; blocking.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.bin_dir.join("kubectl")).args(args).env("KUBECONFIG", &self.kubeconfig).output().expect("run kubectl")
    }

    /// `helm ARGS` with the admin kubeconfig; blocking.
    pub fn helm(&self, args: &[&str]) -> Output {
        Command::new(crate::helm())
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.path().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.path().join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.path().join("helm/data"))
            .output()
            .expect("run helm")
    }

    /// The last `n` lines of a control plane component's log (`kube-apiserver`, …).
    pub fn log_tail(&self, component: &str, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{component}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let script = repo_root().join("scripts/k8s-control-plane.sh");
        let _ = Command::new("bash").arg(script).arg("stop").arg(self.dir.path()).output();
    }
}
