//! The two Services: a headless one that gives every pod a stable DNS name for
//! its peers (published before the pod is ready, since peers must reach each
//! other to elect the leaders that make them ready), and a client one. Both
//! carry the peer port (`grpc`: joins go through the client Service), the
//! client port (`client`: applications) and the status port.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{CLIENT_PORT, GRPC_PORT, STATUS_PORT};
use super::{BuildInput, meta};

fn ports() -> Vec<ServicePort> {
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    vec![port("grpc", GRPC_PORT), port("client", CLIENT_PORT), port("status", STATUS_PORT)]
}

/// `<name>-peer`: headless, for `<pod>.<name>-peer.<ns>.svc`; Prometheus
/// scrapes the stores through it (a store that is not ready is scraped too).
pub fn peer_service(input: &BuildInput<'_>) -> Service {
    Service {
        metadata: meta(input, input.names.peer_service(), input.names.service_labels("peer")),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(input.names.selector_labels()),
            ports: Some(ports()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<name>`: what clients connect to (ready pods only).
pub fn client_service(input: &BuildInput<'_>) -> Service {
    Service {
        metadata: meta(input, input.names.client_service(), input.names.service_labels("client")),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(input.names.selector_labels()),
            ports: Some(ports()),
            ..Default::default()
        }),
        ..Default::default()
    }
}
