//! Restoring a backup into a new, empty cluster (the flow is in the parent
//! module's header): verify everything, then write everything.

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::{StreamExt as _, TryStreamExt as _};
use sha2::{Digest as _, Sha256};
use shoal_proto::{Mutation, mutation};
use tokio::io::AsyncWriteExt as _;

use super::manifest::Manifest;
use super::{BackupError, Location, read_manifest};
use crate::{Client, ClientError};

/// Mutations per `BatchWrite`, and bytes (well under the server's 16 MiB).
const BATCH_KEYS: usize = 1000;
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight.
const IN_FLIGHT: usize = 8;
/// Tries per batch (its puts are idempotent: a batch whose outcome was unknown
/// is simply sent again).
const TRIES: usize = 5;

#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub name: String,
    pub keys: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Restores the backup at `source` into the cluster `client` reaches, which
/// must hold no keys in the backup's column families. `scratch` is where the
/// files are downloaded (a temporary directory in it, removed after).
pub async fn restore(client: &Client, source: &Location, scratch: &Path) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let manifest = read_manifest(source).await?;
    std::fs::create_dir_all(scratch).map_err(|e| BackupError::Storage(format!("{}: {e}", scratch.display())))?;
    let work = tempfile::tempdir_in(scratch).map_err(|e| BackupError::Storage(format!("{}: {e}", scratch.display())))?;
    let files = download_verified(source, &manifest, work.path()).await?;
    for cf in manifest.column_families() {
        let found = client.scan(&cf, b"", b"", 1).await?;
        if let Some((key, _)) = found.first() {
            return Err(BackupError::NotEmpty(format!("column family {cf} holds keys (the first is {:?})", String::from_utf8_lossy(key))));
        }
    }
    let (keys, bytes) = write_all(client, &manifest, files, work.path().join("db")).await?;
    if keys != manifest.total_keys() {
        return Err(BackupError::Corrupt(format!("the files held {keys} keys, the manifest says {}", manifest.total_keys())));
    }
    Ok(RestoreReport { name: manifest.name.clone(), keys, bytes, seconds: started.elapsed().as_secs_f64() })
}

/// Downloads every file of the manifest into `dir`, checking size and
/// SHA-256; returns `(column family, local path)` for each.
async fn download_verified(source: &Location, manifest: &Manifest, dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let mut out = Vec::new();
    for (i, f) in manifest.files().enumerate() {
        let got = match source.store.get(&source.path(&f.path)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BackupError::Incomplete(format!("{} is missing from {}; nothing was restored", f.path, source.url)));
            }
            Err(e) => return Err(e.into()),
        };
        let local = dir.join(format!("{i}.sst"));
        let mut file = tokio::fs::File::create(&local).await.map_err(|e| BackupError::Storage(format!("{}: {e}", local.display())))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = got.into_stream();
        while let Some(bytes) = stream.try_next().await? {
            hasher.update(&bytes);
            size += bytes.len() as u64;
            file.write_all(&bytes).await.map_err(|e| BackupError::Storage(format!("{}: {e}", local.display())))?;
        }
        file.flush().await.map_err(|e| BackupError::Storage(e.to_string()))?;
        let sha256 = hex::encode(hasher.finalize());
        if size != f.size || sha256 != f.sha256 {
            return Err(BackupError::Corrupt(format!(
                "{}: {size} bytes with SHA-256 {sha256}, the manifest says {} bytes with {}; nothing was restored",
                f.path, f.size, f.sha256
            )));
        }
        out.push((f.cf.clone(), local));
    }
    Ok(out)
}

/// Loads the files into a scratch RocksDB at `db_path` and writes every pair
/// to the cluster; returns the keys and bytes written.
async fn write_all(
    client: &Client,
    manifest: &Manifest,
    files: Vec<(String, PathBuf)>,
    db_path: PathBuf,
) -> Result<(u64, u64), BackupError> {
    let cfs = manifest.column_families();
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Mutation>>(IN_FLIGHT * 2);
    let reader = tokio::task::spawn_blocking(move || read_batches(&db_path, &cfs, &files, &tx));
    let sent = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|batch| async move {
            let (keys, bytes) = (batch.len() as u64, batch.iter().map(|m| (m.key.len() + m.value.len()) as u64).sum::<u64>());
            let mut last: Option<ClientError> = None;
            for attempt in 0..TRIES {
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
                match client.batch_write(batch.clone()).await {
                    Ok(()) => return Ok((keys, bytes)),
                    Err(e @ ClientError::InvalidArgument(_)) => return Err(BackupError::Cluster(e)),
                    Err(e) => last = Some(e),
                }
            }
            Err(BackupError::Cluster(last.expect("tried at least once")))
        })
        .buffer_unordered(IN_FLIGHT)
        .try_fold((0u64, 0u64), |(k, b), (keys, bytes)| async move { Ok((k + keys, b + bytes)) })
        .await;
    let read = reader.await.map_err(|e| BackupError::Failed(format!("reading the backup's files: {e}")))?;
    let written = sent?;
    read?;
    Ok(written)
}

/// On a blocking thread: ingests the SST files into a scratch RocksDB and
/// sends its pairs, column family by column family, in batches.
fn read_batches(
    db_path: &Path,
    cfs: &[String],
    files: &[(String, PathBuf)],
    tx: &tokio::sync::mpsc::Sender<Vec<Mutation>>,
) -> Result<(), BackupError> {
    let corrupt = |e: rocksdb::Error| BackupError::Corrupt(format!("an SST file does not load: {e}"));
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let db = rocksdb::DB::open_cf(&opts, db_path, cfs).map_err(|e| BackupError::Storage(format!("scratch database: {e}")))?;
    for (cf, path) in files {
        let handle = db.cf_handle(cf).ok_or_else(|| BackupError::Corrupt(format!("unknown column family {cf}")))?;
        db.ingest_external_file_cf(handle, vec![path]).map_err(corrupt)?;
    }
    for cf in cfs {
        let handle = db.cf_handle(cf).ok_or_else(|| BackupError::Corrupt(format!("unknown column family {cf}")))?;
        let mut batch: Vec<Mutation> = Vec::new();
        let mut size = 0;
        for item in db.iterator_cf(handle, rocksdb::IteratorMode::Start) {
            let (key, value) = item.map_err(corrupt)?;
            size += key.len() + value.len();
            batch.push(Mutation { op: mutation::Op::Put as i32, cf: cf.clone(), key: key.into_vec(), value: value.into_vec() });
            if batch.len() >= BATCH_KEYS || size >= BATCH_BYTES {
                if tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                    return Ok(()); // the writer failed; it reports why
                }
                size = 0;
            }
        }
        if !batch.is_empty() && tx.blocking_send(batch).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
