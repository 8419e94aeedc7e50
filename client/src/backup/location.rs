//! Where backups live: a URL naming a directory of backups, or one backup in it.
//!
//! - `file:///abs/dir` — a local or mounted directory (created if missing);
//! - `s3://bucket/prefix` — S3 or any S3-compatible store, configured from the
//!   usual environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_REGION` (default `us-east-1`), `AWS_ENDPOINT_URL` for a store other
//!   than AWS, and `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint.
//!
//! A backup is the folder `<location>/<name>/`: its files, and `manifest.json`,
//! written last (see [`super::manifest`]).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use super::BackupError;

/// An object store and the folder in it that a URL names.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The URL as given, without a trailing slash.
    pub url: String,
    /// For `file://`: the directory this folder is.
    pub local: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

fn invalid(url: &str, why: &str) -> BackupError {
    BackupError::InvalidArgument(format!("backup location {url:?}: {why} (file:///DIR or s3://BUCKET/PREFIX)"))
}

impl Location {
    /// Parses `url` (see the module header); creates a local directory.
    pub fn parse(url: &str) -> Result<Location, BackupError> {
        Location::parse_with(url, &[])
    }

    /// Like [`Location::parse`], with S3 settings (`AWS_*` names, as in the
    /// environment) that override the environment's: what a Kubernetes Secret holds.
    pub fn parse_with(url: &str, settings: &[(String, String)]) -> Result<Location, BackupError> {
        let url = url.trim().trim_end_matches('/').to_string();
        if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(invalid(&url, "a file URL needs an absolute path"));
            }
            std::fs::create_dir_all(dir).map_err(|e| BackupError::Storage(format!("{dir}: {e}")))?;
            let fs = LocalFileSystem::new_with_prefix(dir).map_err(|e| BackupError::Storage(e.to_string()))?;
            return Ok(Location { store: Arc::new(fs), prefix: Path::default(), local: Some(dir.into()), url });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(&url, "no bucket"));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let region_set = |k: &str| std::env::var_os(k).is_some() || settings.iter().any(|(s, _)| s == k);
            if !region_set("AWS_REGION") && !region_set("AWS_DEFAULT_REGION") {
                builder = builder.with_region("us-east-1");
            }
            for (key, value) in settings {
                let parsed = key.to_ascii_lowercase().parse().map_err(|_| invalid(&url, &format!("unknown S3 setting {key}")))?;
                builder = builder.with_config(parsed, value);
            }
            let s3 = builder.build().map_err(|e| BackupError::Storage(e.to_string()))?;
            return Ok(Location { store: Arc::new(s3), prefix: Path::from(prefix), local: None, url });
        }
        Err(invalid(&url, "unknown scheme"))
    }

    /// The location of backup `name` in this one.
    pub fn child(&self, name: &str) -> Location {
        Location {
            store: self.store.clone(),
            prefix: self.prefix.child(name),
            url: format!("{}/{name}", self.url),
            local: self.local.as_ref().map(|d| d.join(name)),
        }
    }

    /// The object `relative` (a `/`-separated path) in this folder.
    pub fn path(&self, relative: &str) -> Path {
        relative.split('/').fold(self.prefix.clone(), |p, part| p.child(part))
    }

    /// The last part of the URL: a backup's name.
    pub fn name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/backups/", dir.path().display());
        let loc = Location::parse(&url).unwrap();
        assert!(dir.path().join("backups").is_dir(), "the directory is created");
        let b = loc.child("b1");
        assert_eq!(b.name(), "b1");
        assert_eq!(b.path("regions/2/default.sst").as_ref(), "b1/regions/2/default.sst");
        let s3 = Location::parse("s3://bucket/some/prefix").unwrap();
        assert_eq!(s3.prefix.as_ref(), "some/prefix");
        assert_eq!(s3.child("b1").path("manifest.json").as_ref(), "some/prefix/b1/manifest.json");
        for bad in ["file://relative/dir", "s3://", "http://x/y", "/plain/path"] {
            assert!(matches!(Location::parse(bad), Err(BackupError::InvalidArgument(_))), "{bad}");
        }
    }
}
