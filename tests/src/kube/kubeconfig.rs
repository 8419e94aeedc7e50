//! Kubeconfigs for the stand-in: what the real operator reads (`KUBECONFIG`),
//! and the same config turned into a [`::kube::Client`] for test code.

use ::kube::config::{KubeConfigOptions, Kubeconfig};

/// A kubeconfig whose one cluster is `server` (plain HTTP, no auth), with
/// context `shoal-standin` current and `namespace` its default namespace.
pub fn kubeconfig_yaml(server: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: shoal-standin
  cluster:
    server: {server}
users:
- name: shoal-standin
  user: {{}}
contexts:
- name: shoal-standin
  context:
    cluster: shoal-standin
    user: shoal-standin
    namespace: {namespace}
current-context: shoal-standin
preferences: {{}}
"
    )
}

/// A client built from [`kubeconfig_yaml`], as the operator would build one.
pub async fn client_for(server: &str, namespace: &str) -> ::kube::Client {
    let kubeconfig = Kubeconfig::from_yaml(&kubeconfig_yaml(server, namespace)).expect("the stand-in kubeconfig parses");
    let config = ::kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client config from the stand-in kubeconfig");
    ::kube::Client::try_from(config).expect("a kube client for the stand-in")
}
