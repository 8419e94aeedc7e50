//! The backup coordinator: fence every region, lift (checking that every
//! fence held until then), export, write the manifest (the flow is in the
//! parent module's header). On any failure every fence it may have set is
//! lifted and the stores forget the snapshots they keep for it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use object_store::{PutPayload, WriteMultipart};
use sha2::{Digest as _, Sha256};
use shoal_proto::backup_client::BackupClient;
use shoal_proto::{ExportRequest, FenceRequest, FenceResponse, Region, RegionInfo};
use tonic::Code;

use super::manifest::{FORMAT, FileEntry, MANIFEST, Manifest, RegionEntry};
use super::{BackupError, Location, now_ms};
use crate::Client;

/// Fencing must finish within this, else the fences are lifted and the
/// backup fails; well inside a fence's lease (30 s by default). Should a lease
/// lift a fence first anyway, the lift says so and the backup fails.
pub const FENCE_WITHIN: Duration = Duration::from_secs(10);
/// Stores tried per call to a region's leader (following leader hints).
const HOPS: usize = 5;
/// Each fence or lift call.
const CALL_TIMEOUT: Duration = Duration::from_secs(6);
/// Regions exported at once.
const EXPORTS_IN_FLIGHT: usize = 4;

/// A region as fenced, and the store that keeps its snapshot.
#[derive(Clone, Debug)]
struct Fenced {
    region: Region,
    index: u64,
    addr: String,
}

/// Why one region could not be fenced this round; `fatal` ends the backup.
struct Refused {
    fatal: bool,
    why: String,
}

/// Backs the cluster up as `name` in `destination`; returns the manifest written.
pub async fn create(client: &Client, destination: &Location, name: &str) -> Result<Manifest, BackupError> {
    check_name(name)?;
    let backup = destination.child(name);
    if backup.store.head(&backup.path(MANIFEST)).await.is_ok() {
        return Err(BackupError::Exists(format!("a backup named {name} exists at {}", backup.url)));
    }
    let stores: HashMap<u64, String> = client.list_stores().await?.into_iter().filter_map(|d| d.store).map(|s| (s.id, s.address)).collect();
    let began = now_ms();
    let (fenced, listed) = match fence_all(client, &stores, name).await {
        Ok(f) => f,
        Err((fenced, listed, e)) => {
            // A fence whose answer was lost may be in place too: lift every
            // region listed (a no-op where this backup holds no fence).
            release_all(client, &stores, &fenced, &listed, name).await;
            return Err(e);
        }
    };
    let all_fenced = now_ms();
    let lost = lift_all(client, &stores, &fenced, name).await;
    if !lost.is_empty() {
        release_all(client, &stores, &fenced, &listed, name).await;
        return Err(BackupError::Failed(format!(
            "the fences of regions {lost:?} were gone (lifted by their lease) or could not be confirmed when lifted: the cut may be broken; nothing was written"
        )));
    }
    tracing::info!(backup = name, regions = fenced.len(), fence_ms = all_fenced - began, "every region fenced and lifted; exporting");

    // Collected first: a stream holding the closure would not be Send for every lifetime.
    let exports: Vec<_> = fenced.values().map(|f| export(client, &backup, name, f)).collect();
    let exports = futures::stream::iter(exports).buffered(EXPORTS_IN_FLIGHT);
    let regions: Vec<RegionEntry> = match exports.try_collect().await {
        Ok(r) => r,
        Err(e) => {
            release_all(client, &stores, &fenced, &[], name).await;
            return Err(e);
        }
    };
    let manifest = Manifest {
        format: FORMAT,
        name: name.to_string(),
        created_unix_ms: now_ms(),
        fencing_began_unix_ms: began,
        all_fenced_unix_ms: all_fenced,
        regions,
    };
    manifest.check()?;
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Failed(format!("manifest: {e}")))?;
    backup.store.put(&backup.path(MANIFEST), PutPayload::from(bytes)).await?;
    Ok(manifest)
}

/// A backup name: 1 to 128 bytes of `[A-Za-z0-9._-]`, not starting with a dot.
fn check_name(name: &str) -> Result<(), BackupError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BackupError::InvalidArgument(format!("backup name {name:?}: 1 to 128 bytes of [A-Za-z0-9._-], not starting with a dot")))
    }
}

/// Whether the regions (by start key) tile the whole key space.
fn covers(fenced: &BTreeMap<Vec<u8>, Fenced>) -> bool {
    let mut next: &[u8] = b"";
    for (start, f) in fenced {
        if start.as_slice() != next {
            return false;
        }
        if f.region.end_key.is_empty() {
            return true;
        }
        next = &f.region.end_key;
    }
    false
}

type FencedRegions = BTreeMap<Vec<u8>, Fenced>;
type FenceResult = Result<(FencedRegions, Vec<RegionInfo>), (FencedRegions, Vec<RegionInfo>, BackupError)>;

/// Fences regions until the fenced ones tile the key space, within
/// [`FENCE_WITHIN`]; also returns every region listed on the way.
async fn fence_all(client: &Client, stores: &HashMap<u64, String>, backup_id: &str) -> FenceResult {
    let deadline = Instant::now() + FENCE_WITHIN;
    let mut fenced: FencedRegions = BTreeMap::new();
    let mut listed: Vec<RegionInfo> = Vec::new();
    let mut last = String::from("no region listed");
    while !covers(&fenced) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            let why = format!("could not fence every region within {FENCE_WITHIN:?} (last: {last})");
            return Err((fenced, listed, BackupError::Failed(why)));
        };
        let regions = match client.scan_regions(b"", b"", 0).await {
            Ok(r) => r,
            Err(e) => return Err((fenced, listed, e.into())),
        };
        for r in &regions {
            if !listed.iter().any(|l| l.region.as_ref().map(|g| g.id) == r.region.as_ref().map(|g| g.id)) {
                listed.push(r.clone());
            }
        }
        let done: Vec<u64> = fenced.values().map(|f| f.region.id).collect();
        let todo: Vec<&RegionInfo> = regions.iter().filter(|r| r.region.as_ref().is_some_and(|g| !done.contains(&g.id))).collect();
        let round = futures::future::join_all(todo.iter().map(|info| fence_one(client, stores, info, backup_id)));
        let Ok(answers) = tokio::time::timeout(left, round).await else {
            let why = format!("could not fence every region within {FENCE_WITHIN:?} (a round did not finish)");
            return Err((fenced, listed, BackupError::Failed(why)));
        };
        let mut fatal = None;
        for answer in answers {
            match answer {
                // A fenced region cannot split, so two fenced regions never overlap.
                Ok(f) => {
                    fenced.insert(f.region.start_key.clone(), f);
                }
                Err(Refused { fatal: true, why }) => fatal = Some(why),
                Err(Refused { why, .. }) => last = why,
            }
        }
        if let Some(why) = fatal {
            return Err((fenced, listed, BackupError::Failed(why)));
        }
        if !covers(&fenced) {
            // Meta learns of splits from heartbeats; give it a moment.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok((fenced, listed))
}

/// The addresses to try for a region: its reported leader's store, then its voters' stores.
fn candidates(stores: &HashMap<u64, String>, leader_store_id: u64, region: &Region) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let ids = std::iter::once(leader_store_id).chain(region.peers.iter().filter(|p| !p.is_learner).map(|p| p.store_id));
    for addr in ids.filter_map(|id| stores.get(&id)) {
        if !out.contains(addr) {
            out.push(addr.clone());
        }
    }
    out
}

/// Calls `call` on the region's leader: tries `candidates` in turn, follows
/// `not_leader` hints, gives each call [`CALL_TIMEOUT`]. Returns the answer
/// and the address that gave it.
async fn at_leader<F, Fut>(
    stores: &HashMap<u64, String>,
    region_id: u64,
    candidates: Vec<String>,
    call: F,
) -> Result<(FenceResponse, String), Refused>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<FenceResponse, tonic::Status>>,
{
    let retry = |why: String| Refused { fatal: false, why: format!("region {region_id}: {why}") };
    let mut queue: std::collections::VecDeque<String> = candidates.into();
    let mut why = String::from("no known store holds it");
    let mut hops = 0;
    while let Some(addr) = queue.pop_front() {
        hops += 1;
        if hops > HOPS {
            break;
        }
        let answer = match tokio::time::timeout(CALL_TIMEOUT, call(addr.clone())).await {
            Ok(answer) => answer,
            Err(_) => Err(tonic::Status::deadline_exceeded(format!("no answer in {CALL_TIMEOUT:?}"))),
        };
        match answer {
            Ok(resp) => {
                let Some(err) = resp.header.as_ref().and_then(|h| h.region_error.clone()) else { return Ok((resp, addr)) };
                why = format!("{addr}: {}", err.message);
                if let Some(leader) = err.not_leader.and_then(|nl| nl.leader).and_then(|l| stores.get(&l.store_id))
                    && *leader != addr
                {
                    queue.push_front(leader.clone());
                }
            }
            Err(s)
                if matches!(s.code(), Code::PermissionDenied | Code::FailedPrecondition | Code::InvalidArgument | Code::Unimplemented) =>
            {
                return Err(Refused { fatal: true, why: format!("region {region_id}: {addr}: {}", s.message()) });
            }
            Err(s) => why = format!("{addr}: {}", s.message()),
        }
    }
    Err(retry(why))
}

/// Fences one region at its leader.
async fn fence_one(client: &Client, stores: &HashMap<u64, String>, info: &RegionInfo, backup_id: &str) -> Result<Fenced, Refused> {
    let region = info.region.clone().unwrap_or_default();
    let targets = candidates(stores, info.leader_store_id, &region);
    let call = |addr: String| async move {
        let channel = client.channel(&addr).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let req = FenceRequest { region_id: region.id, backup_id: backup_id.to_string(), release: false };
        BackupClient::new(channel).fence_region(req).await.map(tonic::Response::into_inner)
    };
    let (resp, addr) = at_leader(stores, region.id, targets, call).await?;
    let fenced = resp.region.ok_or_else(|| Refused { fatal: false, why: format!("region {}: answer without the region", region.id) })?;
    Ok(Fenced { region: fenced, index: resp.index, addr })
}

/// Lifts one region's fence at its leader; whether the fence was still this backup's.
async fn lift_one(
    client: &Client,
    stores: &HashMap<u64, String>,
    region: &Region,
    first: Option<&str>,
    backup_id: &str,
    release: bool,
) -> Result<bool, Refused> {
    let mut targets: Vec<String> = first.map(str::to_string).into_iter().collect();
    for a in candidates(stores, 0, region) {
        if !targets.contains(&a) {
            targets.push(a);
        }
    }
    let call = |addr: String| async move {
        let channel = client.channel(&addr).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let req = FenceRequest { region_id: region.id, backup_id: backup_id.to_string(), release };
        BackupClient::new(channel).lift_fence(req).await.map(tonic::Response::into_inner)
    };
    at_leader(stores, region.id, targets, call).await.map(|(resp, _)| resp.held)
}

/// Lifts every fence of the backup; returns the regions whose fence was not
/// confirmed held until then (gone, or no answer).
async fn lift_all(client: &Client, stores: &HashMap<u64, String>, fenced: &FencedRegions, backup_id: &str) -> Vec<u64> {
    let lifts = fenced.values().map(|f| async move {
        match lift_one(client, stores, &f.region, Some(&f.addr), backup_id, false).await {
            Ok(true) => None,
            Ok(false) => Some(f.region.id),
            Err(r) => {
                tracing::warn!(region = f.region.id, backup = backup_id, error = %r.why, "could not lift a backup fence; its lease will");
                Some(f.region.id)
            }
        }
    });
    futures::future::join_all(lifts).await.into_iter().flatten().collect()
}

/// After a failure: lifts the backup's fence on every region fenced or
/// listed, and has the stores forget the snapshots they keep for it.
async fn release_all(client: &Client, stores: &HashMap<u64, String>, fenced: &FencedRegions, listed: &[RegionInfo], backup_id: &str) {
    let mut regions: Vec<(Region, Option<&str>)> = fenced.values().map(|f| (f.region.clone(), Some(f.addr.as_str()))).collect();
    for info in listed {
        if let Some(r) = &info.region
            && !regions.iter().any(|(g, _)| g.id == r.id)
        {
            regions.push((r.clone(), None));
        }
    }
    let lifts = regions.iter().map(|(region, first)| async move {
        if let Err(r) = lift_one(client, stores, region, *first, backup_id, true).await {
            tracing::warn!(region = region.id, backup = backup_id, error = %r.why, "could not lift a backup fence; its lease will");
        }
    });
    futures::future::join_all(lifts).await;
}

/// Streams one region's kept snapshot into `backup`, one object per file.
async fn export(client: &Client, backup: &Location, backup_id: &str, f: &Fenced) -> Result<RegionEntry, BackupError> {
    let failed = |why: String| BackupError::Failed(format!("export of region {} from {}: {why}", f.region.id, f.addr));
    let channel = client.channel(&f.addr)?;
    let req = ExportRequest { backup_id: backup_id.to_string(), region_id: f.region.id };
    let mut stream = BackupClient::new(channel)
        .max_decoding_message_size(8 << 20)
        .export_region(req)
        .await
        .map_err(|s| failed(s.message().to_string()))?
        .into_inner();
    let mut files = Vec::new();
    let mut current: Option<(FileEntry, WriteMultipart, Sha256)> = None;
    while let Some(chunk) = stream.message().await.map_err(|s| failed(s.message().to_string()))? {
        if let Some(c) = current.as_ref().filter(|c| c.0.cf != chunk.cf) {
            return Err(failed(format!("file of {} ended without its last chunk", c.0.cf)));
        }
        if current.is_none() {
            let path = format!("regions/{}/{}.sst", f.region.id, chunk.cf);
            let upload = backup.store.put_multipart(&backup.path(&path)).await?;
            let entry = FileEntry { path, cf: chunk.cf.clone(), size: 0, sha256: String::new(), keys: 0 };
            current = Some((entry, WriteMultipart::new(upload), Sha256::new()));
        }
        let Some((entry, writer, hasher)) = current.as_mut() else { continue };
        hasher.update(&chunk.data);
        entry.size += chunk.data.len() as u64;
        writer.write(&chunk.data);
        if chunk.eof {
            let (mut entry, writer, hasher) = current.take().expect("a file is being written");
            writer.finish().await?;
            entry.sha256 = hex::encode(hasher.finalize());
            entry.keys = chunk.keys;
            files.push(entry);
        }
    }
    if let Some((entry, writer, _)) = current {
        let _ = writer.abort().await;
        return Err(failed(format!("the stream ended inside the file of {}", entry.cf)));
    }
    let epoch = f.region.epoch.unwrap_or_default();
    Ok(RegionEntry {
        id: f.region.id,
        start_key: hex::encode(&f.region.start_key),
        end_key: hex::encode(&f.region.end_key),
        conf_ver: epoch.conf_ver,
        version: epoch.version,
        index: f.index,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fenced(start: &str, end: &str) -> (Vec<u8>, Fenced) {
        let region = Region { start_key: start.into(), end_key: end.into(), ..Default::default() };
        (start.as_bytes().to_vec(), Fenced { region, index: 6, addr: String::new() })
    }

    #[test]
    fn fenced_regions_must_tile_the_key_space() {
        assert!(!covers(&BTreeMap::new()));
        assert!(covers(&BTreeMap::from([fenced("", "")])));
        assert!(covers(&BTreeMap::from([fenced("", "m"), fenced("m", "")])));
        assert!(!covers(&BTreeMap::from([fenced("", "m"), fenced("n", "")])), "a gap");
        assert!(!covers(&BTreeMap::from([fenced("", "m")])), "no end");
        assert!(!covers(&BTreeMap::from([fenced("a", "")])), "no start");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("nightly-2026-12-07.1").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
