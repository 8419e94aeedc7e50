//! The `Backup` gRPC service: a region leader's half of an online backup.
//!
//! The coordinator (`shoal_client::backup`, run by `shoalctl backup create` or
//! the operator) asks each region's leader to fence it ([`BackupService`]'s
//! `FenceRegion`): the store proposes a `BackupFenceCmd` and waits until it is
//! applied, after which every replica refuses the region's writes (the
//! raftstore's `peer::fence`). It then takes a linearizable engine snapshot of
//! the region ([`StoreHandle::read_region`]) and checks that the snapshot
//! still shows the fence, so the snapshot holds exactly the region's data at
//! the fence's index; it keeps that snapshot in [`Kept`] (30 minutes at most)
//! and answers with the region and the index. Once every region is fenced the
//! coordinator lifts the fences (`LiftFence`, which says whether the fence was
//! still this backup's: a fence its lease lifted breaks the cut, and the
//! coordinator fails the backup) and calls `ExportRegion`, which
//! writes the kept snapshot's column family ranges ([`crate::snap::data_ranges`])
//! as SST files, one at a time, into `<data_dir>/backup`, streams each in 1 MiB
//! chunks, and deletes it.
//!
//! Served on the peer port only, and, with `--admin-allowed-cn`, only to the
//! operator's certificate ([`super::admin::authorize`]).

use std::collections::HashMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use prost::Message as _;
use shoal_proto::backup_server::Backup;
use shoal_proto::{BackupFenceCmd, ExportChunk, ExportRequest, FenceRequest, FenceResponse, Region, RegionLocalState, ResponseHeader};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::errors::{Reply, serve_request};
use super::registry::StoreRegistry;
use crate::error::{Error, Result};
use crate::keys;
use crate::meta::META_REGION_ID;
use crate::metrics::Metrics;
use crate::raftstore::peer::CmdResult;
use crate::raftstore::store_loop::StoreHandle;
use crate::storage::cf::CF_REGION_META;
use crate::storage::{Engine, EngineSnapshot};

/// How long a fenced region's snapshot is kept for its export (a kept
/// snapshot pins the engine's files; expired ones go at the next call).
pub const KEEP_FOR: Duration = Duration::from_secs(1800);
/// Bytes of an SST file per `ExportChunk`.
const CHUNK: usize = 1 << 20;

/// A fenced region's engine snapshot, waiting for `ExportRegion`.
struct KeptSnapshot {
    region: Region,
    snapshot: Arc<EngineSnapshot>,
    at: Instant,
}

/// The snapshots kept on this store, by backup id and region id.
#[derive(Clone, Default)]
pub struct Kept(Arc<Mutex<HashMap<(String, u64), KeptSnapshot>>>);

impl Kept {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), KeptSnapshot>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshots, without the expired ones.
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), KeptSnapshot>> {
        let mut kept = self.lock();
        kept.retain(|_, k| k.at.elapsed() < KEEP_FOR);
        kept
    }

    fn keep(&self, backup_id: &str, region: Region, snapshot: Arc<EngineSnapshot>) {
        self.live().insert((backup_id.to_string(), region.id), KeptSnapshot { region, snapshot, at: Instant::now() });
    }

    fn take(&self, backup_id: &str, region_id: u64) -> Option<KeptSnapshot> {
        self.live().remove(&(backup_id.to_string(), region_id))
    }
}

#[derive(Clone)]
pub struct BackupService {
    pub store: StoreHandle,
    pub engine: Arc<Engine>,
    pub registry: StoreRegistry,
    pub metrics: Arc<Metrics>,
    pub timeout: Duration,
    /// Where exported SST files are written before they are streamed.
    pub dir: PathBuf,
    pub kept: Kept,
    /// Common Names allowed these calls; `None`: no check.
    pub allowed_cns: Option<Arc<Vec<String>>>,
}

/// A backup id as a file name and log field: 1 to 128 bytes of `[A-Za-z0-9._-]`.
fn check_backup_id(id: &str) -> Result<()> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(Error::InvalidArgument(format!("backup id {id:?}: 1 to 128 bytes of [A-Za-z0-9._-]"))) }
}

fn check_region(region_id: u64) -> Result<()> {
    if region_id == META_REGION_ID {
        return Err(Error::InvalidArgument("the meta group holds no user data to back up".into()));
    }
    Ok(())
}

impl BackupService {
    async fn serve(&self, method: &str, work: impl Future<Output = Result<FenceResponse>>) -> Result<Response<FenceResponse>, Status> {
        let timed_out = "the fence was not applied; it may still be";
        match serve_request(&self.metrics, &self.registry, method, self.timeout, timed_out, work).await {
            Ok(v) => Ok(Response::new(v)),
            Err(Reply::Region(e)) => {
                Ok(Response::new(FenceResponse { header: Some(ResponseHeader { region_error: Some(*e) }), ..Default::default() }))
            }
            Err(Reply::Status(s)) => Err(s),
        }
    }

    async fn fence(&self, req: FenceRequest) -> Result<FenceResponse> {
        check_backup_id(&req.backup_id)?;
        check_region(req.region_id)?;
        let fence = BackupFenceCmd { backup_id: req.backup_id.clone(), lift: false };
        self.store.backup_fence(req.region_id, fence).await?;
        let read = self.store.read_region(req.region_id).await?;
        let state: RegionLocalState = match read.snapshot.get(CF_REGION_META, &keys::region_state_key(req.region_id))? {
            Some(b) => RegionLocalState::decode(b.as_slice()).map_err(|e| Error::Internal(format!("corrupt region state: {e}")))?,
            None => return Err(Error::RegionNotFound(vec![])),
        };
        if state.backup_fence != req.backup_id {
            return Err(Error::Unavailable(format!(
                "region {}: the fence of backup {} was lifted before its snapshot was taken",
                req.region_id, req.backup_id
            )));
        }
        let apply = read.snapshot.get(CF_REGION_META, &keys::apply_state_key(req.region_id))?.unwrap_or_default();
        let index = shoal_proto::RaftApplyState::decode(apply.as_slice()).map(|a| a.applied_index).unwrap_or_default();
        let region = state.region.unwrap_or(read.region);
        self.kept.keep(&req.backup_id, region.clone(), read.snapshot);
        tracing::info!(region = req.region_id, backup = %req.backup_id, index, "region fenced for backup");
        Ok(FenceResponse { region: Some(region), index, ..Default::default() })
    }

    async fn lift(&self, req: FenceRequest) -> Result<FenceResponse> {
        check_backup_id(&req.backup_id)?;
        check_region(req.region_id)?;
        if req.release {
            self.kept.take(&req.backup_id, req.region_id);
        }
        let fence = BackupFenceCmd { backup_id: req.backup_id, lift: true };
        let held = matches!(self.store.backup_fence(req.region_id, fence).await?, CmdResult::FenceLifted { held: true });
        Ok(FenceResponse { held, ..Default::default() })
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<()> {
        super::admin::authorize(self.allowed_cns.as_deref().map(Vec::as_slice), &self.metrics, request)
    }
}

/// Writes each column family range of `kept` as an SST file in `dir` and sends
/// it in chunks; stops when the receiver is gone.
fn export(
    engine: &Engine,
    dir: &std::path::Path,
    backup_id: &str,
    kept: KeptSnapshot,
    tx: &mpsc::Sender<Result<ExportChunk, Status>>,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (cf, start, end) in crate::snap::data_ranges(engine, &kept.region) {
        let path = dir.join(format!("{backup_id}-{}-{cf}.sst", kept.region.id));
        let keys = kept.snapshot.export_sst(&cf, &start, &end, &path);
        let sent = keys.map_err(Error::from).and_then(|keys| {
            if keys == 0 {
                return Ok(true);
            }
            let mut file = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; CHUNK];
            let mut pending: Option<Vec<u8>> = None;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    let data = pending.take().unwrap_or_default();
                    return Ok(tx.blocking_send(Ok(ExportChunk { cf: cf.clone(), data, eof: true, keys })).is_ok());
                }
                if let Some(data) = pending.replace(buf[..n].to_vec())
                    && tx.blocking_send(Ok(ExportChunk { cf: cf.clone(), data, eof: false, keys: 0 })).is_err()
                {
                    return Ok(false);
                }
            }
        });
        let _ = std::fs::remove_file(&path);
        if !sent? {
            return Ok(());
        }
    }
    Ok(())
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Backup for BackupService {
    async fn fence_region(&self, request: Request<FenceRequest>) -> Result<Response<FenceResponse>, Status> {
        let allowed = self.authorize(&request);
        self.serve("FenceRegion", async { self.fence(allowed.map(|()| request.into_inner())?).await }).await
    }

    async fn lift_fence(&self, request: Request<FenceRequest>) -> Result<Response<FenceResponse>, Status> {
        let allowed = self.authorize(&request);
        self.serve("LiftFence", async { self.lift(allowed.map(|()| request.into_inner())?).await }).await
    }

    type ExportRegionStream = ExportStream;

    async fn export_region(&self, request: Request<ExportRequest>) -> Result<Response<ExportStream>, Status> {
        let allowed = self.authorize(&request).and_then(|()| {
            let req = request.into_inner();
            check_backup_id(&req.backup_id)?;
            Ok(req)
        });
        let req = match allowed {
            Ok(req) => req,
            Err(e) => return Err(super::errors::status_of(e)),
        };
        let Some(kept) = self.kept.take(&req.backup_id, req.region_id) else {
            return Err(Status::not_found(format!(
                "no snapshot of region {} is kept here for backup {}: fence it on this store first (snapshots are kept {} s)",
                req.region_id,
                req.backup_id,
                KEEP_FOR.as_secs()
            )));
        };
        let (tx, rx) = mpsc::channel(4);
        let (engine, dir) = (self.engine.clone(), self.dir.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = export(&engine, &dir, &req.backup_id, kept, &tx) {
                let _ = tx.blocking_send(Err(super::errors::status_of(e)));
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_are_checked() {
        assert!(check_backup_id("backup-20261207-0600_1.a").is_ok());
        assert!(check_backup_id("").is_err());
        assert!(check_backup_id("../etc").is_err());
        assert!(check_backup_id(&"x".repeat(128)).is_ok());
        assert!(check_backup_id(&"x".repeat(129)).is_err());
        assert!(check_region(META_REGION_ID).is_err());
    }
}
