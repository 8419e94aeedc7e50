//! [`Receiving`]: the files of one incoming snapshot, written as they arrive.
//!
//! [`SnapManager::start_receive`] refuses a second stream of the same snapshot
//! from the same store while one is open, and works out where to resume: files
//! already received and verified are skipped, and a partial file kept from a
//! broken earlier stream (same sender, same key, same announced checksum)
//! continues at its length. [`Receiving::write`] takes the bytes of each chunk
//! at exactly the next offset; when a file reaches its announced size its
//! CRC-32 is checked, it is synced and renamed to its received name. Nothing
//! is written outside the snapshot directory.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use shoal_proto::{SnapshotData, SnapshotKey};

use super::files;
use super::manager::{SnapManager, lock};
use crate::error::{Error, Result};

/// Most files one snapshot may have (one per column family).
pub const MAX_SNAPSHOT_FILES: usize = 256;
/// Largest file one snapshot may carry.
pub const MAX_SNAPSHOT_FILE_SIZE: u64 = 1 << 40;

/// One snapshot being received from one store.
pub struct Receiving {
    dir: PathBuf,
    from_store: u64,
    key: SnapshotKey,
    data: SnapshotData,
    /// Next file and offset expected.
    file: usize,
    offset: u64,
    hasher: crc32fast::Hasher,
    out: Option<File>,
    registry: Arc<Mutex<std::collections::HashSet<(u64, SnapshotKey)>>>,
}

impl SnapManager {
    /// Checks that `data` describes a snapshot this store can take: a key that
    /// matches the region, a sane number of non-empty files, each for a column
    /// family this store has.
    pub fn validate(&self, data: &SnapshotData) -> Result<SnapshotKey> {
        let bad = |s: String| Err(Error::InvalidArgument(s));
        let Some(key) = data.key else { return bad("snapshot data has no key".into()) };
        let Some(region) = data.region.as_ref() else { return bad("snapshot data has no region".into()) };
        if region.id != key.region_id || key.region_id == 0 {
            return bad(format!("snapshot key is for region {} but the region is {}", key.region_id, region.id));
        }
        if data.files.len() > MAX_SNAPSHOT_FILES {
            return bad(format!("snapshot has {} files (at most {MAX_SNAPSHOT_FILES})", data.files.len()));
        }
        let ranges = super::data_ranges(&self.engine, region);
        for (n, f) in data.files.iter().enumerate() {
            if f.size == 0 || f.size > MAX_SNAPSHOT_FILE_SIZE {
                return bad(format!("snapshot file {n} has size {}", f.size));
            }
            if !ranges.iter().any(|(cf, _, _)| *cf == f.cf) {
                return bad(format!("snapshot file {n} is for column family {:?}, which this region does not have here", f.cf));
            }
        }
        Ok(key)
    }

    /// Starts receiving `data` from `from_store`, resuming what an earlier stream
    /// left. Fails while another stream receives the same snapshot from there.
    pub fn start_receive(&self, from_store: u64, data: &SnapshotData) -> Result<Receiving> {
        let key = self.validate(data)?;
        if !lock(&self.receiving).insert((from_store, key)) {
            return Err(Error::Unavailable(format!("snapshot {key:?} from store {from_store} is already being received")));
        }
        let mut rx = Receiving {
            dir: self.dir.clone(),
            from_store,
            key,
            data: data.clone(),
            file: 0,
            offset: 0,
            hasher: crc32fast::Hasher::new(),
            out: None,
            registry: self.receiving.clone(),
        };
        rx.seek_resume_point()?;
        Ok(rx)
    }
}

impl Receiving {
    fn partial_path(&self, n: usize) -> PathBuf {
        files::partial(&self.dir, &self.key, n, self.data.files[n].checksum, self.from_store)
    }

    /// Skips complete files and opens the first incomplete one where it ends.
    fn seek_resume_point(&mut self) -> Result<()> {
        while self.file < self.data.files.len() {
            let n = self.file;
            let f = &self.data.files[n];
            if files::verify(&files::received(&self.dir, &self.key, n), f.size, f.checksum) {
                self.file += 1;
                continue;
            }
            let partial = self.partial_path(n);
            let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
            if kept == f.size && files::verify(&partial, f.size, f.checksum) {
                // Complete before the stream broke, not yet renamed.
                std::fs::rename(&partial, files::received(&self.dir, &self.key, n))?;
                self.file += 1;
                continue;
            }
            let (offset, hasher) =
                if kept > 0 && kept < f.size { files::checksum(&partial, Some(kept))? } else { (0, crc32fast::Hasher::new()) };
            let mut out = OpenOptions::new().create(true).write(true).truncate(false).open(&partial)?;
            out.set_len(offset)?;
            out.seek(SeekFrom::Start(offset))?;
            self.offset = offset;
            self.hasher = hasher;
            self.out = Some(out);
            return Ok(());
        }
        Ok(())
    }

    /// The key of the snapshot being received.
    pub fn key(&self) -> SnapshotKey {
        self.key
    }

    /// The next (file, offset) expected; `None` when every file is here.
    pub fn next_needed(&self) -> Option<(u32, u64)> {
        (self.file < self.data.files.len()).then_some((self.file as u32, self.offset))
    }

    /// Where the sender should start: the next needed position, or one past the
    /// last file when nothing is missing.
    pub fn resume_point(&self) -> (u32, u64) {
        self.next_needed().unwrap_or((self.data.files.len() as u32, 0))
    }

    /// Bytes still to come.
    pub fn remaining(&self) -> u64 {
        let rest: u64 = self.data.files.iter().skip(self.file).map(|f| f.size).sum();
        rest.saturating_sub(self.offset)
    }

    /// Takes the (uncompressed, verified) bytes of one chunk of file `file` at `offset`.
    pub fn write(&mut self, file: u32, offset: u64, bytes: &[u8]) -> Result<()> {
        let Some((want_file, want_offset)) = self.next_needed() else {
            return Err(Error::InvalidArgument("chunk after the last file was complete".into()));
        };
        if file != want_file || offset != want_offset {
            return Err(Error::InvalidArgument(format!(
                "chunk at file {file} offset {offset}, expected file {want_file} offset {want_offset}"
            )));
        }
        let size = self.data.files[self.file].size;
        if bytes.is_empty() || offset + bytes.len() as u64 > size {
            return Err(Error::InvalidArgument(format!(
                "chunk of {} bytes at {offset} does not fit file {file} of {size} bytes",
                bytes.len()
            )));
        }
        let out = self.out.as_mut().ok_or_else(|| Error::Internal("receiving file is not open".into()))?;
        out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.offset += bytes.len() as u64;
        if self.offset == size {
            self.complete_file()?;
            self.seek_resume_point()?;
        }
        Ok(())
    }

    /// Checks the whole current file, syncs it and gives it its received name.
    fn complete_file(&mut self) -> Result<()> {
        let n = self.file;
        let want = self.data.files[n].checksum;
        let got = std::mem::take(&mut self.hasher).finalize();
        let out = self.out.take().ok_or_else(|| Error::Internal("receiving file is not open".into()))?;
        let partial = self.partial_path(n);
        if got != want {
            drop(out);
            let _ = std::fs::remove_file(&partial);
            self.offset = 0;
            return Err(Error::InvalidArgument(format!("snapshot file {n}: checksum {got:08x}, announced {want:08x}")));
        }
        out.sync_all()?;
        std::fs::rename(&partial, files::received(&self.dir, &self.key, n))?;
        self.file += 1;
        self.offset = 0;
        Ok(())
    }

    /// Ends a complete receive: makes the renames durable.
    pub fn finish(self) -> Result<()> {
        if let Some((file, offset)) = self.next_needed() {
            return Err(Error::Unavailable(format!("snapshot incomplete: file {file} at offset {offset}")));
        }
        files::sync_dir(&self.dir)?;
        Ok(())
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        // What arrived stays in the partial file for a retry to resume.
        lock(&self.registry).remove(&(self.from_store, self.key));
    }
}
