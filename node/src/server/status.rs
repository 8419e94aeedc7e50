//! The `Status` gRPC service: this store, its regions and their leaders.

use shoal_proto::status_server::Status as StatusApi;
use shoal_proto::{RegionStatus, StatusRequest, StatusResponse, StoreInfo};
use tonic::{Request, Response, Status};

use super::registry::StoreRegistry;
use crate::raftstore::store_loop::StoreHandle;

#[derive(Clone)]
pub struct StatusService {
    pub store: StoreHandle,
    pub me: StoreInfo,
    pub registry: StoreRegistry,
    pub column_families: Vec<String>,
}

#[tonic::async_trait]
impl StatusApi for StatusService {
    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let peers = self.store.status().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let regions = peers
            .into_iter()
            .map(|p| RegionStatus {
                region: Some(p.region),
                peer_id: p.peer_id,
                leader_peer_id: p.leader.as_ref().map_or(0, |l| l.id),
                leader_store_id: p.leader.as_ref().map_or(0, |l| l.store_id),
                term: p.term,
                commit_index: p.commit_index,
                applied_index: p.applied_index,
                is_leader: p.is_leader,
            })
            .collect();
        Ok(Response::new(StatusResponse {
            store: Some(self.me.clone()),
            regions,
            stores: self.registry.all(),
            column_families: self.column_families.clone(),
        }))
    }
}
