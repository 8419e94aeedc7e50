//! The PodDisruptionBudget: a voluntary disruption (node drain, upgrade) takes
//! at most one store at a time, so a region of three replicas keeps a quorum.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{BuildInput, meta};

pub fn pdb(input: &BuildInput<'_>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(input, input.names.pdb(), input.names.labels()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(input.names.selector_labels()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
