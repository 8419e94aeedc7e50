//! A backup's `manifest.json`: what the backup holds and how to check it.
//!
//! Written last, so a backup without one is incomplete (a run that failed or
//! is still going) and is never restored. It lists every region as fenced
//! (range, epoch, the applied index of its snapshot) with its files (one SST
//! per column family that had keys: size, SHA-256, key count), and the two
//! clock readings that bound the backup point: every write acknowledged before
//! `fencing_began_unix_ms` is in the backup, and no write sent after
//! `all_fenced_unix_ms` is.

use serde::{Deserialize, Serialize};

use super::BackupError;

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub created_unix_ms: u64,
    /// When the first fence was asked for, and when the last was applied.
    pub fencing_began_unix_ms: u64,
    pub all_fenced_unix_ms: u64,
    pub regions: Vec<RegionEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionEntry {
    pub id: u64,
    /// Hex; empty: the start (end) of the key space.
    pub start_key: String,
    pub end_key: String,
    pub conf_ver: u64,
    pub version: u64,
    /// The applied index of the fenced snapshot.
    pub index: u64,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup's folder.
    pub path: String,
    pub cf: String,
    pub size: u64,
    pub sha256: String,
    pub keys: u64,
}

impl Manifest {
    pub fn total_keys(&self) -> u64 {
        self.files().map(|f| f.keys).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.files().map(|f| f.size).sum()
    }

    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        self.regions.iter().flat_map(|r| r.files.iter())
    }

    /// Column families with keys, in first-seen order.
    pub fn column_families(&self) -> Vec<String> {
        let mut cfs: Vec<String> = Vec::new();
        for f in self.files() {
            if !cfs.contains(&f.cf) {
                cfs.push(f.cf.clone());
            }
        }
        cfs
    }

    pub fn parse(bytes: &[u8]) -> Result<Manifest, BackupError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| BackupError::Corrupt(format!("{MANIFEST} does not parse: {e}")))?;
        if m.format != FORMAT {
            return Err(BackupError::Corrupt(format!("{MANIFEST} has format {}, this shoalctl reads format {FORMAT}", m.format)));
        }
        m.check()?;
        Ok(m)
    }

    /// The regions tile the key space, in order, without gaps or overlaps, and
    /// every file is named once with a well-formed checksum.
    pub fn check(&self) -> Result<(), BackupError> {
        let corrupt = |why: String| Err(BackupError::Corrupt(format!("{MANIFEST}: {why}")));
        if self.regions.is_empty() {
            return corrupt("no regions".into());
        }
        let mut expected_start = String::new();
        for (i, r) in self.regions.iter().enumerate() {
            if r.start_key != expected_start {
                return corrupt(format!(
                    "region {} starts at {:?}, expected {:?}: the regions do not cover the key space",
                    r.id, r.start_key, expected_start
                ));
            }
            if hex::decode(&r.start_key).is_err() || hex::decode(&r.end_key).is_err() {
                return corrupt(format!("region {} has keys that are not hex", r.id));
            }
            let last = i + 1 == self.regions.len();
            if r.end_key.is_empty() != last {
                return corrupt(format!("region {} ends at {:?}: the regions do not cover the key space", r.id, r.end_key));
            }
            if !last && hex::decode(&r.end_key).ok() <= hex::decode(&r.start_key).ok() && !r.start_key.is_empty() {
                return corrupt(format!("region {} is empty or reversed", r.id));
            }
            expected_start = r.end_key.clone();
        }
        let mut seen = std::collections::HashSet::new();
        for f in self.files() {
            if !seen.insert(&f.path) || f.path.contains("..") || f.path.starts_with('/') {
                return corrupt(format!("file {:?} is named twice or is not inside the backup", f.path));
            }
            if f.sha256.len() != 64 || hex::decode(&f.sha256).is_err() {
                return corrupt(format!("file {:?} has no SHA-256", f.path));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> FileEntry {
        FileEntry { path: path.into(), cf: "default".into(), size: 10, sha256: "ab".repeat(32), keys: 2 }
    }

    fn region(id: u64, start: &str, end: &str, files: Vec<FileEntry>) -> RegionEntry {
        RegionEntry { id, start_key: hex::encode(start), end_key: hex::encode(end), conf_ver: 1, version: 1, index: 6, files }
    }

    fn manifest(regions: Vec<RegionEntry>) -> Manifest {
        Manifest { format: FORMAT, name: "b".into(), created_unix_ms: 1, fencing_began_unix_ms: 1, all_fenced_unix_ms: 2, regions }
    }

    #[test]
    fn regions_must_tile_the_key_space() {
        let good = manifest(vec![region(2, "", "m", vec![file("regions/2/default.sst")]), region(3, "m", "", vec![])]);
        good.check().unwrap();
        let bytes = serde_json::to_vec(&good).unwrap();
        assert_eq!(Manifest::parse(&bytes).unwrap(), good);
        assert_eq!(good.total_keys(), 2);
        assert_eq!(good.column_families(), vec!["default".to_string()]);

        let gap = manifest(vec![region(2, "", "m", vec![]), region(3, "n", "", vec![])]);
        let missing_last = manifest(vec![region(2, "", "m", vec![])]);
        let twice = manifest(vec![region(2, "", "m", vec![file("a.sst")]), region(3, "m", "", vec![file("a.sst")])]);
        let outside = manifest(vec![region(2, "", "", vec![file("../a.sst")])]);
        let mut no_sum = manifest(vec![region(2, "", "", vec![file("a.sst")])]);
        no_sum.regions[0].files[0].sha256 = "00".into();
        for (what, m) in [("gap", gap), ("missing last", missing_last), ("twice", twice), ("outside", outside), ("no sum", no_sum)] {
            assert!(matches!(m.check(), Err(BackupError::Corrupt(_))), "{what}");
        }
        let mut newer = good.clone();
        newer.format = FORMAT + 1;
        assert!(Manifest::parse(&serde_json::to_vec(&newer).unwrap()).is_err());
        assert!(Manifest::parse(b"{\"format\": 1").is_err());
    }
}
