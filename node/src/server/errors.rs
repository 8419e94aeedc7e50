//! How node errors travel to clients: routing answers the client acts on go in
//! the response header as a `RegionError`; everything else becomes a gRPC status
//! whose code says whose fault it is.

use std::future::Future;
use std::time::{Duration, Instant};

use shoal_proto::{EpochNotMatch, KeyNotInRegion, NotLeader, RegionError, RegionNotFound, ServerIsBusy};
use tonic::{Code, Status};

use super::registry::StoreRegistry;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Either a `RegionError` for the response header, or a gRPC status.
pub enum Reply {
    Region(Box<RegionError>),
    Status(Status),
}

/// The label used for this outcome in the request metrics.
pub fn label(err: &Error) -> &'static str {
    match err {
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::NotFound(_) => "NotFound",
        Error::FailedPrecondition(_) => "FailedPrecondition",
        Error::PermissionDenied(_) => "PermissionDenied",
        Error::NotLeader { .. } => "NotLeader",
        Error::RegionNotFound(_) => "RegionNotFound",
        Error::KeyNotInRegion { .. } => "KeyNotInRegion",
        Error::EpochNotMatch(..) => "EpochNotMatch",
        Error::ServerIsBusy(_) => "ServerIsBusy",
        Error::Unavailable(_) | Error::StaleCommand(_) => "Unavailable",
        Error::OutcomeUnknown(_) => "OutcomeUnknown",
        Error::Engine(_) | Error::Raft(_) | Error::Internal(_) | Error::Io(_) => "Internal",
    }
}

pub fn to_reply(err: Error, registry: &StoreRegistry) -> Reply {
    let message = err.to_string();
    match err {
        Error::NotLeader { region_id, leader } => {
            let leader_addr = leader.as_ref().and_then(|l| registry.hint_address(l.store_id)).unwrap_or_default();
            region(RegionError { message, not_leader: Some(NotLeader { region_id, leader, leader_addr }), ..Default::default() })
        }
        Error::RegionNotFound(key) => {
            region(RegionError { message, region_not_found: Some(RegionNotFound { region_id: 0, key }), ..Default::default() })
        }
        Error::KeyNotInRegion { key, region_id } => region(RegionError {
            message,
            key_not_in_region: Some(KeyNotInRegion { key, region_id, ..Default::default() }),
            ..Default::default()
        }),
        Error::EpochNotMatch(_, current_regions) => {
            region(RegionError { message, epoch_not_match: Some(EpochNotMatch { current_regions }), ..Default::default() })
        }
        Error::ServerIsBusy(reason) => region(RegionError { message, server_is_busy: Some(ServerIsBusy { reason }), ..Default::default() }),
        Error::InvalidArgument(_) => Reply::Status(Status::new(Code::InvalidArgument, message)),
        Error::NotFound(_) => Reply::Status(Status::new(Code::NotFound, message)),
        Error::FailedPrecondition(_) => Reply::Status(Status::new(Code::FailedPrecondition, message)),
        Error::PermissionDenied(_) => Reply::Status(Status::new(Code::PermissionDenied, message)),
        // UNAVAILABLE promises that nothing was applied, so a client may retry.
        Error::Unavailable(_) | Error::StaleCommand(_) => Reply::Status(Status::new(Code::Unavailable, message)),
        // UNKNOWN: the write may or may not have been applied.
        Error::OutcomeUnknown(_) => Reply::Status(Status::new(Code::Unknown, message)),
        Error::Engine(_) | Error::Raft(_) | Error::Internal(_) | Error::Io(_) => Reply::Status(Status::new(Code::Internal, message)),
    }
}

/// An error as a gRPC status, for answers without a header (a stream): a
/// routing answer becomes `UNAVAILABLE` with its message.
pub fn status_of(err: Error) -> Status {
    let message = err.to_string();
    let code = match err {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::NotFound(_) => Code::NotFound,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::OutcomeUnknown(_) => Code::Unknown,
        Error::Engine(_) | Error::Raft(_) | Error::Internal(_) | Error::Io(_) => Code::Internal,
        _ => Code::Unavailable,
    };
    Status::new(code, message)
}

fn region(err: RegionError) -> Reply {
    Reply::Region(Box::new(err))
}

/// Runs one request under `timeout`, counts it in the request metrics by method
/// and outcome, and turns an error into what the wire carries: a `RegionError`
/// for the response header, or a gRPC status. `timed_out` says what a timeout means.
pub async fn serve_request<T>(
    metrics: &Metrics,
    registry: &StoreRegistry,
    method: &str,
    timeout: Duration,
    timed_out: &str,
    work: impl Future<Output = Result<T>>,
) -> Result<T, Reply> {
    let started = Instant::now();
    let res = match tokio::time::timeout(timeout, work).await {
        Ok(res) => res,
        Err(_) => Err(Error::OutcomeUnknown(format!("{timed_out} within {timeout:?}"))),
    };
    let code = match &res {
        Ok(_) => "OK",
        Err(e) => label(e),
    };
    metrics.grpc_requests.with_label_values(&[method, code]).inc();
    metrics.grpc_duration.with_label_values(&[method]).observe(started.elapsed().as_secs_f64());
    res.map_err(|e| to_reply(e, registry))
}
