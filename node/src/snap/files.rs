//! File names in the snapshot directory, and checksums of files.
//!
//! | file                                     | what                                             |
//! |------------------------------------------|--------------------------------------------------|
//! | `gen_R_T_I_SEQ_N.sst`                    | file `N` of a snapshot generated here            |
//! | `gen_R_T_I_SEQ_N.sst.tmp`                | being generated                                  |
//! | `rcv_R_T_I_N_CRC_FROM.part`              | file `N` being received from store `FROM`        |
//! | `rcv_R_T_I_N.sst`                        | file `N`, received whole and verified            |
//! | `ingest_R_T_I_N.tmp`                     | hard link of a received file, handed to RocksDB  |
//!
//! `R_T_I` is the snapshot's key: region id, term, index. A partial file's name
//! carries the checksum the sender announced, so a different file under the same
//! key (another sender's) never resumes from it.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use shoal_proto::SnapshotKey;

/// Bytes read at a time when checksumming a file.
const READ_BUF: usize = 1 << 20;

fn key_prefix(key: &SnapshotKey) -> String {
    format!("{}_{}_{}", key.region_id, key.term, key.index)
}

pub(crate) fn generated(dir: &Path, key: &SnapshotKey, seq: u64, n: usize) -> PathBuf {
    dir.join(format!("gen_{}_{seq}_{n}.sst", key_prefix(key)))
}

pub(crate) fn temp(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

pub(crate) fn received(dir: &Path, key: &SnapshotKey, n: usize) -> PathBuf {
    dir.join(format!("rcv_{}_{n}.sst", key_prefix(key)))
}

/// Name prefix of every received or partial file of `key`.
pub(crate) fn received_prefix(key: &SnapshotKey) -> String {
    format!("rcv_{}_", key_prefix(key))
}

pub(crate) fn partial(dir: &Path, key: &SnapshotKey, n: usize, checksum: u32, from_store: u64) -> PathBuf {
    dir.join(format!("rcv_{}_{n}_{checksum:08x}_{from_store}.part", key_prefix(key)))
}

pub(crate) fn ingest(dir: &Path, key: &SnapshotKey, n: usize) -> PathBuf {
    dir.join(format!("ingest_{}_{n}.tmp", key_prefix(key)))
}

/// Whether a file left by an earlier run is never needed again: generated
/// snapshots (no send survives a restart), partial and temporary files.
pub(crate) fn is_leftover(name: &str) -> bool {
    name.starts_with("gen_") || name.ends_with(".part") || name.ends_with(".tmp")
}

/// Size and CRC-32 of the first `len` bytes of `path` (all of it when `len` is None).
pub(crate) fn checksum(path: &Path, len: Option<u64>) -> io::Result<(u64, crc32fast::Hasher)> {
    let file = File::open(path)?;
    let mut reader = file.take(len.unwrap_or(u64::MAX));
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hasher))
}

/// Whether `path` exists with exactly `size` bytes and CRC-32 `crc`.
pub(crate) fn verify(path: &Path, size: u64, crc: u32) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == size => {}
        _ => return false,
    }
    match checksum(path, None) {
        Ok((n, h)) => n == size && h.finalize() == crc,
        Err(_) => false,
    }
}

/// Makes renames and new files in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_keys_apart_and_leftovers_are_recognised() {
        let dir = Path::new("/s");
        let k = |i| SnapshotKey { region_id: 2, term: 5, index: i };
        let a = received(dir, &k(10), 0);
        let b = received(dir, &k(100), 0);
        let a_name = a.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let b_name = b.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(a_name.starts_with(&received_prefix(&k(10))));
        assert!(!b_name.starts_with(&received_prefix(&k(10))), "index 100 is not index 10");
        assert!(!is_leftover(a_name));
        for p in [generated(dir, &k(1), 3, 0), temp(&a), partial(dir, &k(1), 0, 7, 3), ingest(dir, &k(1), 0)] {
            assert!(is_leftover(p.file_name().and_then(|n| n.to_str()).unwrap_or_default()), "{p:?}");
        }
    }

    #[test]
    fn checksum_of_a_prefix_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello world").unwrap();
        let (n, h) = checksum(&p, Some(5)).unwrap();
        assert_eq!((n, h.finalize()), (5, crc32fast::hash(b"hello")));
        assert!(verify(&p, 11, crc32fast::hash(b"hello world")));
        assert!(!verify(&p, 11, crc32fast::hash(b"hello worle")));
        assert!(!verify(&p, 12, crc32fast::hash(b"hello world")));
        assert!(!verify(&dir.path().join("missing"), 0, 0));
    }
}
