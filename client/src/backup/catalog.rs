//! The backups in a location: list them, read one's manifest, delete one.

use futures::TryStreamExt as _;
use object_store::path::Path;

use super::manifest::{MANIFEST, Manifest};
use super::{BackupError, Location};

/// A backup found in a location: complete (with its manifest) or not.
#[derive(Clone, Debug)]
pub struct BackupSummary {
    pub name: String,
    /// `None`: no readable manifest (a backup that failed or is still being written).
    pub manifest: Option<Manifest>,
    /// Why the manifest is missing or unreadable.
    pub problem: Option<String>,
}

fn folder(loc: &Location) -> Option<&Path> {
    (!loc.prefix.as_ref().is_empty()).then_some(&loc.prefix)
}

/// The backups in `loc`, by name.
pub async fn list(loc: &Location) -> Result<Vec<BackupSummary>, BackupError> {
    let listing = loc.store.list_with_delimiter(folder(loc)).await?;
    let mut out = Vec::new();
    for p in listing.common_prefixes {
        let Some(name) = p.filename().map(str::to_string) else { continue };
        let (manifest, problem) = match read_manifest(&loc.child(&name)).await {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(BackupSummary { name, manifest, problem });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The manifest of the backup at `backup`.
pub async fn read_manifest(backup: &Location) -> Result<Manifest, BackupError> {
    match backup.store.get(&backup.path(MANIFEST)).await {
        Ok(got) => Manifest::parse(&got.bytes().await?),
        Err(object_store::Error::NotFound { .. }) => {
            Err(BackupError::Incomplete(format!("{}: no {MANIFEST} (the backup did not finish, or this is not a backup)", backup.url)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes every object of the backup at `backup` (the manifest first, so a
/// deletion cut short leaves an incomplete backup, never a damaged complete
/// one); returns how many were deleted. A folder holding anything but a
/// backup's manifest and region files (a location of backups) is refused.
pub async fn delete(backup: &Location) -> Result<usize, BackupError> {
    let objects: Vec<Path> = backup.store.list(Some(&backup.prefix)).map_ok(|m| m.location).try_collect().await?;
    if objects.is_empty() {
        return Err(BackupError::NotFound(format!("no backup at {}", backup.url)));
    }
    // Only a backup's own objects: a location holding backups is not one.
    let manifest = backup.path(MANIFEST);
    let regions = backup.path("regions");
    if let Some(other) = objects.iter().find(|p| **p != manifest && !p.prefix_matches(&regions)) {
        return Err(BackupError::InvalidArgument(format!(
            "{} is not a backup (it holds {other}); name one backup: LOCATION/NAME",
            backup.url
        )));
    }
    if objects.contains(&manifest) {
        backup.store.delete(&manifest).await?;
    }
    for p in objects.iter().filter(|p| **p != manifest) {
        backup.store.delete(p).await?;
    }
    // A directory keeps its (now empty) folders; they would list as a backup.
    if let Some(dir) = &backup.local {
        std::fs::remove_dir_all(dir).map_err(|e| BackupError::Storage(format!("{}: {e}", dir.display())))?;
    }
    Ok(objects.len())
}
