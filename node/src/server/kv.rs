//! The `Kv` gRPC service: validates each request, writes through Raft, and reads
//! RocksDB once the region's ReadIndex says it may.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::kv_server::Kv;
use shoal_proto::{
    BatchWriteRequest, BatchWriteResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse, KvPair, Mutation, PutRequest,
    PutResponse, ReadConsistency, ResponseHeader, ScanRequest, ScanResponse, mutation,
};
use tonic::{Request, Response, Status};

use super::errors::{Reply, serve_request};
use super::registry::StoreRegistry;
use super::validate::{self, Limits};
use crate::error::{Error, Result};
use crate::keys;
use crate::metrics::Metrics;
use crate::raftstore::peer::RegionRead;
use crate::raftstore::store_loop::StoreHandle;
use crate::storage::Engine;

#[derive(Clone)]
pub struct KvService {
    pub store: StoreHandle,
    pub engine: Arc<Engine>,
    pub limits: Limits,
    pub registry: StoreRegistry,
    pub metrics: Arc<Metrics>,
    pub timeout: Duration,
}

/// A response type that can carry a `RegionError` in its header.
trait WithHeader: Default {
    fn set_header(&mut self, header: ResponseHeader);
}

macro_rules! with_header {
    ($($t:ty),*) => {$(
        impl WithHeader for $t {
            fn set_header(&mut self, header: ResponseHeader) { self.header = Some(header); }
        }
    )*};
}
with_header!(GetResponse, PutResponse, DeleteResponse, ScanResponse, BatchWriteResponse);

impl KvService {
    /// Runs one request under the deadline, records its metrics and turns an error
    /// into a header `RegionError` or a gRPC status.
    async fn serve<T: WithHeader>(&self, method: &str, work: impl Future<Output = Result<T>>) -> Result<Response<T>, Status> {
        let timed_out = "no answer from Raft; a write may or may not have happened";
        match serve_request(&self.metrics, &self.registry, method, self.timeout, timed_out, work).await {
            Ok(v) => Ok(Response::new(v)),
            Err(Reply::Region(region_error)) => {
                let mut resp = T::default();
                resp.set_header(ResponseHeader { region_error: Some(*region_error) });
                Ok(Response::new(resp))
            }
            Err(Reply::Status(status)) => Err(status),
        }
    }

    /// Waits until reading `key`'s region is linearizable; for a stale read,
    /// only checks that this store holds the region (with its data: a peer still
    /// waiting for its snapshot holds none). Returns the region and the engine
    /// snapshot the store took when it checked it: the read must use that one,
    /// never the live engine, which the store thread may be changing under it.
    async fn before_read(&self, key: &[u8], consistency: i32) -> Result<RegionRead> {
        match ReadConsistency::try_from(consistency) {
            Ok(ReadConsistency::Linearizable) => {
                let read = self.store.read_index(key.to_vec()).await?;
                // The region may have split while the read waited: the key's new
                // region may have another leader that has taken writes since.
                let region = &read.region;
                if !keys::in_range(key, &region.start_key, &region.end_key) {
                    return Err(Error::EpochNotMatch(format!("region {} no longer holds the key", region.id), vec![region.clone()]));
                }
                Ok(read)
            }
            Ok(ReadConsistency::Stale) => self.store.local_region(key.to_vec()).await,
            Err(_) => Err(Error::InvalidArgument(format!("unknown read consistency {consistency}"))),
        }
    }

    async fn get_inner(&self, req: GetRequest) -> Result<GetResponse> {
        let cf = validate::cf(&self.engine, &req.cf)?;
        validate::key(&self.limits, &req.key)?;
        let read = self.before_read(&req.key, req.consistency).await?;
        let value = read.snapshot.get(cf, &req.key)?;
        Ok(GetResponse { header: None, found: value.is_some(), value: value.unwrap_or_default() })
    }

    async fn scan_inner(&self, req: ScanRequest) -> Result<ScanResponse> {
        let cf = validate::cf(&self.engine, &req.cf)?.to_string();
        // A resume key is the last key returned plus one zero byte, hence the + 1.
        let max_bound = self.limits.max_key_size + 1;
        if req.start_key.len() > max_bound || req.end_key.len() > max_bound {
            return Err(Error::InvalidArgument(format!("scan bounds must be at most {max_bound} bytes")));
        }
        if !req.end_key.is_empty() && req.end_key <= req.start_key {
            return Ok(ScanResponse::default());
        }
        let limit = validate::scan_limit(&self.limits, req.limit);
        let RegionRead { region, snapshot } = self.before_read(&req.start_key, req.consistency).await?;
        // Stop at the end of the serving region; the client continues from there.
        let mut end = req.end_key.clone();
        let mut resume_at_region_end = None;
        if !region.end_key.is_empty() && (end.is_empty() || region.end_key < end) {
            end = region.end_key.clone();
            resume_at_region_end = Some(region.end_key);
        }
        let start = req.start_key.clone();
        let end_for_scan = end.clone();
        let rows = tokio::task::spawn_blocking(move || snapshot.scan(&cf, &start, &end_for_scan, limit + 1))
            .await
            .map_err(|e| Error::Internal(format!("scan task: {e}")))??;
        let mut pairs: Vec<KvPair> = rows.into_iter().map(|(key, value)| KvPair { key, value }).collect();
        let resume_key = if pairs.len() > limit {
            pairs.truncate(limit);
            // Resume just after the last key returned.
            let mut next = pairs.last().map(|p| p.key.clone()).unwrap_or_default();
            next.push(0);
            next
        } else {
            resume_at_region_end.unwrap_or_default()
        };
        Ok(ScanResponse { header: None, pairs, resume_key })
    }

    async fn write(&self, mutations: Vec<Mutation>) -> Result<()> {
        let mutations = validate::mutations(&self.engine, &self.limits, mutations)?;
        self.store.write(mutations).await
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.serve("Get", self.get_inner(request.into_inner())).await
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let r = request.into_inner();
        let m = Mutation { op: mutation::Op::Put as i32, cf: r.cf, key: r.key, value: r.value };
        self.serve("Put", async { self.write(vec![m]).await.map(|()| PutResponse::default()) }).await
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let r = request.into_inner();
        let m = Mutation { op: mutation::Op::Delete as i32, cf: r.cf, key: r.key, value: vec![] };
        self.serve("Delete", async { self.write(vec![m]).await.map(|()| DeleteResponse::default()) }).await
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        self.serve("Scan", self.scan_inner(request.into_inner())).await
    }

    async fn batch_write(&self, request: Request<BatchWriteRequest>) -> Result<Response<BatchWriteResponse>, Status> {
        let muts = request.into_inner().mutations;
        self.serve("BatchWrite", async { self.write(muts).await.map(|()| BatchWriteResponse::default()) }).await
    }
}
