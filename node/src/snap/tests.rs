//! Generate on one engine, transfer, apply on another that holds garbage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry};
use shoal_proto::{Peer, RaftApplyState, Region, RegionEpoch, RegionLocalState, SnapshotData};

use super::*;
use crate::keys;
use crate::metrics::Metrics;
use crate::storage::cf::{CF_RAFT_LOG, CF_REGION_META};

pub(crate) struct Node {
    pub _dir: tempfile::TempDir,
    pub engine: Arc<Engine>,
    pub snap: Arc<SnapManager>,
    pub metrics: Arc<Metrics>,
}

pub(crate) fn node() -> Node {
    node_with("users")
}

/// A store with `default` and the user column family `users_spec`.
pub(crate) fn node_with(users_spec: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::open(&dir.path().join("db"), &[users_spec.parse().unwrap()]).unwrap());
    let metrics = Arc::new(Metrics::new().unwrap());
    let snap = SnapManager::open(&dir.path().join("snap"), engine.clone(), metrics.clone()).unwrap();
    Node { _dir: dir, engine, snap, metrics }
}

pub(crate) fn region(id: u64, start: &str, end: &str) -> Region {
    Region {
        id,
        start_key: start.as_bytes().to_vec(),
        end_key: end.as_bytes().to_vec(),
        epoch: Some(RegionEpoch { conf_ver: 3, version: 4 }),
        peers: vec![Peer { id: 11, store_id: 1, is_learner: false }, Peer { id: 12, store_id: 2, is_learner: true }],
    }
}

/// Writes the region's descriptor, an apply state at `applied` (log truncated at
/// 5/5) and a log entry of term `term` at `applied`.
pub(crate) fn put_region(engine: &Engine, region: &Region, applied: u64, term: u64, conf_state: Vec<u8>) {
    let mut wb = engine.batch();
    let state = RegionLocalState { region: Some(region.clone()), conf_state, ..Default::default() };
    wb.put(CF_REGION_META, &keys::region_state_key(region.id), &state.encode_to_vec()).unwrap();
    let apply = RaftApplyState { applied_index: applied, truncated_index: 5, truncated_term: 5 };
    wb.put(CF_REGION_META, &keys::apply_state_key(region.id), &apply.encode_to_vec()).unwrap();
    if applied > 5 {
        let e = Entry { index: applied, term, ..Default::default() };
        wb.put(CF_RAFT_LOG, &keys::raft_log_key(region.id, applied), &e.write_to_bytes().unwrap()).unwrap();
    }
    engine.write(wb, true).unwrap();
}

fn put(engine: &Engine, cf: &str, pairs: &[(&str, &str)]) {
    let mut wb = engine.batch();
    for (k, v) in pairs {
        wb.put(cf, k.as_bytes(), v.as_bytes()).unwrap();
    }
    engine.write(wb, false).unwrap();
}

pub(crate) fn dump(engine: &Engine, cf: &str) -> Vec<(String, String)> {
    engine
        .scan(cf, b"", b"", 10_000)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

pub(crate) fn data_of(snapshot: &raft::prelude::Snapshot) -> SnapshotData {
    SnapshotData::decode(snapshot.data.as_ref()).unwrap()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn a_region_snapshot_replaces_exactly_the_region_range_on_the_receiver() {
    let src = node();
    let r = region(2, "b", "m");
    put_region(&src.engine, &r, 7, 6, vec![]);
    put(&src.engine, "default", &[("a", "out"), ("b", "1"), ("c", "2"), ("l\u{ff}", "3"), ("m", "out"), ("z", "out")]);
    put(&src.engine, "users", &[("bb", "u1"), ("q", "out")]);

    let snapshot = src.snap.generate(2).unwrap();
    let meta = snapshot.get_metadata();
    assert_eq!((meta.index, meta.term), (7, 6));
    assert_eq!(meta.get_conf_state().voters, vec![11]);
    assert_eq!(meta.get_conf_state().learners, vec![12]);
    let data = data_of(&snapshot);
    assert_eq!(data.region.as_ref(), Some(&r));
    assert_eq!(data.key, Some(shoal_proto::SnapshotKey { region_id: 2, term: 6, index: 7 }));
    let files: Vec<_> = data.files.iter().map(|f| (f.cf.as_str(), f.keys)).collect();
    assert_eq!(files, [("default", 3), ("users", 1)]);
    assert!(data.files.iter().all(|f| f.size > 0));

    let dst = node();
    put(&dst.engine, "default", &[("a", "mine"), ("b", "stale"), ("d", "gone"), ("m", "mine"), ("zz", "mine")]);
    put(&dst.engine, "users", &[("b", "gone"), ("lz", "gone"), ("x", "mine")]);
    assert!(!dst.snap.is_received(&data));
    src.snap.transfer_local(&dst.snap, &data).unwrap();
    assert!(dst.snap.is_received(&data));
    dst.snap.apply(&data).unwrap();

    let want_default = owned(&[("a", "mine"), ("b", "1"), ("c", "2"), ("l\u{ff}", "3"), ("m", "mine"), ("zz", "mine")]);
    let want_users = owned(&[("bb", "u1"), ("x", "mine")]);
    assert_eq!(dump(&dst.engine, "default"), want_default);
    assert_eq!(dump(&dst.engine, "users"), want_users);
    assert!(dst.snap.is_received(&data), "ingestion must leave the received files intact");

    // A redo after a crash (or a plain second call) gives the same result, even
    // if the region range changed in between.
    put(&dst.engine, "default", &[("c", "written-after"), ("e", "written-after")]);
    dst.snap.apply(&data).unwrap();
    assert_eq!(dump(&dst.engine, "default"), want_default);
    assert_eq!(dump(&dst.engine, "users"), want_users);
    assert_eq!(dst.metrics.snapshots.with_label_values(&["applied"]).get(), 2);
    assert_eq!(src.metrics.snapshots.with_label_values(&["generated"]).get(), 1);

    dst.snap.release_received(&data.key.unwrap());
    assert!(!dst.snap.is_received(&data));
    assert!(dst.snap.apply(&data).is_err(), "nothing to apply once released");
    assert_eq!(std::fs::read_dir(dst.snap.dir()).unwrap().count(), 0, "no file left behind");
}

#[test]
fn an_unbounded_region_snapshot_clears_everything_after_its_start() {
    let src = node();
    let r = region(3, "m", "");
    put_region(&src.engine, &r, 9, 7, vec![]);
    put(&src.engine, "default", &[("a", "out"), ("m", "1"), ("zzz", "2")]);
    let data = data_of(&src.snap.generate(3).unwrap());

    let dst = node();
    let mut wb = dst.engine.batch();
    wb.put("default", &[0xff, 0xff, 0xff], b"gone").unwrap();
    dst.engine.write(wb, false).unwrap();
    put(&dst.engine, "default", &[("l", "mine"), ("n", "gone")]);
    put(&dst.engine, "users", &[("mm", "gone"), ("b", "mine")]);
    src.snap.transfer_local(&dst.snap, &data).unwrap();
    dst.snap.apply(&data).unwrap();
    assert_eq!(dump(&dst.engine, "default"), owned(&[("l", "mine"), ("m", "1"), ("zzz", "2")]));
    assert_eq!(dump(&dst.engine, "users"), owned(&[("b", "mine")]));
}

#[test]
fn an_empty_region_snapshot_has_no_files_and_clears_the_range() {
    let src = node();
    let r = region(4, "c", "f");
    // Applied == truncated: the term is the truncated term.
    put_region(&src.engine, &r, 5, 0, vec![]);
    put(&src.engine, "default", &[("a", "out"), ("x", "out")]);
    let snapshot = src.snap.generate(4).unwrap();
    assert_eq!((snapshot.get_metadata().index, snapshot.get_metadata().term), (5, 5));
    let data = data_of(&snapshot);
    assert!(data.files.is_empty());

    let dst = node();
    put(&dst.engine, "default", &[("c", "gone"), ("e", "gone"), ("f", "mine")]);
    src.snap.transfer_local(&dst.snap, &data).unwrap();
    assert!(dst.snap.is_received(&data));
    dst.snap.apply(&data).unwrap();
    assert_eq!(dump(&dst.engine, "default"), owned(&[("f", "mine")]));
}

#[test]
fn the_meta_group_snapshot_is_the_whole_meta_cf_and_carries_a_recorded_conf_state() {
    let src = node();
    let r = region(crate::meta::META_REGION_ID, "", "");
    let joint = ConfState { voters: vec![1, 2, 4], voters_outgoing: vec![1, 2, 3], learners: vec![5], ..Default::default() };
    put_region(&src.engine, &r, 12, 9, joint.write_to_bytes().unwrap());
    put(&src.engine, CF_META, &[("\u{1}", "ids"), ("\u{2}a", "store"), ("\u{3}b", "region")]);
    put(&src.engine, "default", &[("user", "not in meta")]);
    let snapshot = src.snap.generate(crate::meta::META_REGION_ID).unwrap();
    assert_eq!(snapshot.get_metadata().get_conf_state(), &joint);
    let data = data_of(&snapshot);
    assert_eq!(data.files.len(), 1);
    assert_eq!((data.files[0].cf.as_str(), data.files[0].keys), (CF_META, 3));

    let dst = node();
    put(&dst.engine, CF_META, &[("\u{2}a", "old"), ("\u{2}z", "gone"), ("\u{9}", "gone")]);
    put(&dst.engine, "default", &[("user", "mine")]);
    src.snap.transfer_local(&dst.snap, &data).unwrap();
    dst.snap.apply(&data).unwrap();
    assert_eq!(dump(&dst.engine, CF_META), dump(&src.engine, CF_META));
    assert_eq!(dump(&dst.engine, "default"), owned(&[("user", "mine")]));
}

#[test]
fn a_corrupted_received_file_is_not_received() {
    let src = node();
    put_region(&src.engine, &region(2, "", ""), 7, 6, vec![]);
    put(&src.engine, "default", &[("a", "1"), ("b", "2")]);
    let data = data_of(&src.snap.generate(2).unwrap());
    let dst = node();
    src.snap.transfer_local(&dst.snap, &data).unwrap();
    assert!(dst.snap.is_received(&data));
    let path = files::received(dst.snap.dir(), &data.key.unwrap(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(!dst.snap.is_received(&data), "same size, one bit flipped");
    // A resend repairs it.
    src.snap.transfer_local(&dst.snap, &data).unwrap();
    assert!(dst.snap.is_received(&data));
}

#[test]
fn bad_snapshot_data_is_refused_before_anything_is_written() {
    let dst = node();
    let good = SnapshotData {
        region: Some(region(2, "a", "b")),
        files: vec![shoal_proto::SnapshotFile { cf: "default".into(), size: 10, checksum: 1, keys: 1 }],
        key: Some(shoal_proto::SnapshotKey { region_id: 2, term: 1, index: 6 }),
        backup_fence: String::new(),
    };
    assert!(dst.snap.validate(&good).is_ok());
    let mut wrong_region = good.clone();
    wrong_region.key = Some(shoal_proto::SnapshotKey { region_id: 3, term: 1, index: 6 });
    let mut no_cf = good.clone();
    no_cf.files[0].cf = "raft_log".into();
    let mut empty_file = good.clone();
    empty_file.files[0].size = 0;
    let mut no_key = good.clone();
    no_key.key = None;
    for bad in [wrong_region, no_cf, empty_file, no_key] {
        assert!(matches!(dst.snap.start_receive(1, &bad), Err(crate::Error::InvalidArgument(_))), "{bad:?}");
    }
    assert_eq!(std::fs::read_dir(dst.snap.dir()).unwrap().count(), 0);
}

#[test]
fn receiving_checks_order_and_checksums_and_resumes_a_partial_file() {
    let src = node();
    put_region(&src.engine, &region(2, "", ""), 7, 6, vec![]);
    let big = "v".repeat(1000);
    let pairs: Vec<(String, String)> = (0..200).map(|i| (format!("k{i:04}"), format!("{big}{i}"))).collect();
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    put(&src.engine, "default", &refs);
    let data = data_of(&src.snap.generate(2).unwrap());
    let key = data.key.unwrap();
    let hold = src.snap.hold(&key).unwrap();
    let bytes = std::fs::read(hold.file(0).unwrap()).unwrap();
    assert!(bytes.len() > 1000);

    let dst = node();
    let mut rx = dst.snap.start_receive(7, &data).unwrap();
    assert_eq!(rx.resume_point(), (0, 0));
    assert!(dst.snap.start_receive(7, &data).is_err(), "one stream per snapshot and sender");
    assert!(rx.write(0, 5, &bytes[5..10]).is_err(), "gap");
    rx.write(0, 0, &bytes[..1000]).unwrap();
    drop(rx); // broken stream

    let mut rx = dst.snap.start_receive(7, &data).unwrap();
    assert_eq!(rx.resume_point(), (0, 1000));
    assert_eq!(rx.remaining(), bytes.len() as u64 - 1000);
    // Another sender's partial files are its own.
    assert_eq!(dst.snap.start_receive(8, &data).unwrap().resume_point(), (0, 0));
    let mut corrupt = bytes[1000..].to_vec();
    corrupt[0] ^= 1;
    assert!(matches!(rx.write(0, 1000, &corrupt), Err(crate::Error::InvalidArgument(_))));
    drop(rx);
    assert!(!dst.snap.is_received(&data));

    let mut rx = dst.snap.start_receive(7, &data).unwrap();
    assert_eq!(rx.resume_point(), (0, 0), "a file that failed its checksum starts over");
    rx.write(0, 0, &bytes).unwrap();
    assert_eq!(rx.next_needed(), None);
    rx.finish().unwrap();
    assert!(dst.snap.is_received(&data));
    assert_eq!(dst.snap.start_receive(7, &data).unwrap().resume_point(), (1, 0), "nothing left to send");
}

/// Asks for a snapshot of `region_id` at `epoch` until the generator has one.
fn requested(snap: &SnapManager, region_id: u64, epoch: Option<RegionEpoch>) -> raft::prelude::Snapshot {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = snap.request(region_id, 0, epoch) {
            return s;
        }
        assert!(Instant::now() < deadline, "no snapshot of region {region_id} at {epoch:?} generated");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn request_generates_in_the_background_and_old_snapshots_are_collected() {
    let src = node();
    put_region(&src.engine, &region(2, "", ""), 7, 6, vec![]);
    put(&src.engine, "default", &[("a", "1")]);
    let epoch = region(2, "", "").epoch;
    assert!(src.snap.request(2, 0, epoch).is_none());
    let first = requested(&src.snap, 2, epoch);
    assert_eq!(first.get_metadata().index, 7);
    let first_key = data_of(&first).key.unwrap();
    let first_file = files::received_prefix(&first_key).replace("rcv_", "gen_");
    let gen_files = |prefix: &str| {
        std::fs::read_dir(src.snap.dir()).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().starts_with(prefix)).count()
    };
    assert_eq!(gen_files(&first_file), 1);

    // Asking for a newer index than the ready one schedules a new generation.
    put_region(&src.engine, &region(2, "", ""), 8, 6, vec![]);
    let hold = src.snap.hold(&first_key).unwrap();
    let second = src.snap.generate(2).unwrap();
    assert_eq!(second.get_metadata().index, 8);
    assert_eq!(src.snap.request(2, 8, epoch).unwrap().get_metadata().index, 8);
    src.snap.collect_garbage(false);
    assert_eq!(gen_files(&first_file), 1, "held by a send");
    drop(hold);
    // Handed out moments ago: kept a little longer for the send that may follow.
    src.snap.collect_garbage(false);
    assert_eq!(gen_files(&first_file), 1);
    assert!(src.snap.hold(&first_key).is_some());
}

/// A snapshot generated before its region split describes the old, wider
/// range: a store that holds the split-off region would refuse it forever.
#[test]
fn a_snapshot_from_before_a_split_is_not_handed_out_again() {
    let src = node();
    let before = region(2, "", "");
    put_region(&src.engine, &before, 7, 6, vec![]);
    put(&src.engine, "default", &[("a", "1"), ("m", "2")]);
    let old = src.snap.generate(2).unwrap();
    assert_eq!(src.snap.request(2, 0, before.epoch).unwrap().get_metadata().index, 7, "the same region: reused");

    let mut after = region(2, "", "k");
    after.epoch = Some(RegionEpoch { conf_ver: 3, version: 5 });
    put_region(&src.engine, &after, 8, 6, vec![]);
    assert!(src.snap.request(2, 0, after.epoch).is_none(), "the old snapshot (index {}) is not handed out", old.get_metadata().index);
    let new = requested(&src.snap, 2, after.epoch);
    assert_eq!(data_of(&new).region, Some(after));
}

#[test]
fn reopening_removes_leftovers_but_keeps_received_files() {
    let src = node();
    put_region(&src.engine, &region(2, "", ""), 7, 6, vec![]);
    put(&src.engine, "default", &[("a", "1")]);
    let data = data_of(&src.snap.generate(2).unwrap());
    let dst = node();
    src.snap.transfer_local(&dst.snap, &data).unwrap();
    std::fs::write(dst.snap.dir().join("rcv_9_1_1_0_00000000_3.part"), b"half").unwrap();
    let dir = src.snap.dir().to_path_buf();
    let reopened = SnapManager::open(&dir, src.engine.clone(), src.metrics.clone()).unwrap();
    assert_eq!(std::fs::read_dir(reopened.dir()).unwrap().count(), 0, "generated snapshots do not survive a restart");
    let reopened = SnapManager::open(dst.snap.dir(), dst.engine.clone(), dst.metrics.clone()).unwrap();
    assert!(reopened.is_received(&data));
    assert_eq!(std::fs::read_dir(reopened.dir()).unwrap().count(), data.files.len());
}
