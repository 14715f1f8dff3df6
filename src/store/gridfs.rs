//! File bytes in MongoDB GridFS (bucket `codebox_files`, each file's GridFS id its file
//! id), so any executor can stage a user's files and store their outputs. Runs need the bytes
//! on this host: they are fetched once into a bounded local cache, checked against the
//! record's SHA-256 (a cache never serves bytes the store did not vouch for), and evicted
//! least recently used first.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures_util::TryStreamExt;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use mongodb::bson::{Bson, doc};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::GridFsBucketOptions;
use sha2::{Digest, Sha256};

use super::blobs::Blobs;
use super::files::{RECONCILE_GRACE, StoreError};
use super::ids::new_file_id;
use super::metadata::MetadataError;
use super::record::FileRecord;

pub const BUCKET: &str = "codebox_files";
/// Copies used this recently are never trimmed (a run may be linking them).
const CACHE_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

pub struct GridFsBlobs {
    bucket: GridFsBucket,
    /// Local copies: `<cache>/<user_id>/<file_id>.<file_type>`.
    cache: PathBuf,
    cache_max_bytes: u64,
}

fn backend(operation: &'static str) -> impl Fn(mongodb::error::Error) -> StoreError {
    move |err| {
        StoreError::Metadata(MetadataError::Backend {
            operation,
            reason: err.to_string(),
        })
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl GridFsBlobs {
    pub fn new(database: &mongodb::Database, data_dir: &Path, cache_max_bytes: u64) -> GridFsBlobs {
        let options = GridFsBucketOptions::builder()
            .bucket_name(BUCKET.to_string())
            .build();
        GridFsBlobs {
            bucket: database.gridfs_bucket(options),
            cache: data_dir.join("file_cache"),
            cache_max_bytes,
        }
    }

    fn cached(&self, record: &FileRecord) -> PathBuf {
        self.cache.join(&record.user_id).join(record.disk_name())
    }

    /// Uploads `source` as the bytes of `file_id` (also `codebox files migrate`).
    pub async fn upload(&self, file_id: &str, source: &Path) -> Result<(), StoreError> {
        let mut input = tokio::fs::File::open(source).await.map_err(io_at(source))?;
        let mut upload = self
            .bucket
            .open_upload_stream(file_id)
            .id(Bson::String(file_id.to_string()))
            .await
            .map_err(backend("open a GridFS upload"))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut input, &mut buf)
                .await
                .map_err(io_at(source))?;
            if n == 0 {
                break;
            }
            if let Err(err) = upload.write_all(&buf[..n]).await {
                let _ = upload.abort().await;
                return Err(io_at(source)(err));
            }
        }
        upload.close().await.map_err(io_at(source))
    }

    /// Whether GridFS holds bytes for `file_id`.
    pub async fn contains(&self, file_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .bucket
            .find_one(doc! {"_id": file_id})
            .await
            .map_err(backend("find a GridFS file"))?
            .is_some())
    }

    /// Fetches the bytes into `target`, checking them against the record.
    async fn download(&self, record: &FileRecord, target: &Path) -> Result<(), StoreError> {
        let mut download = self
            .bucket
            .open_download_stream(Bson::String(record.file_id.clone()))
            .await
            .map_err(backend("open a GridFS download"))?;
        let mut output = tokio::fs::File::create(target)
            .await
            .map_err(io_at(target))?;
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = download.read(&mut buf).await.map_err(io_at(target))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > record.file_size {
                break;
            }
            hasher.update(&buf[..n]);
            tokio::io::AsyncWriteExt::write_all(&mut output, &buf[..n])
                .await
                .map_err(io_at(target))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut output)
            .await
            .map_err(io_at(target))?;
        if total != record.file_size || hex::encode(hasher.finalize()) != record.sha256 {
            return Err(StoreError::Io {
                path: target.to_path_buf(),
                source: io::Error::other(format!(
                    "the stored bytes of {} do not match its record",
                    record.file_id
                )),
            });
        }
        crate::data_dir::share_with_sandbox(target).map_err(io_at(target))
    }

    /// Keeps the cache within its bound, oldest use first, sparing `keep`.
    fn trim_cache(&self, keep: &Path) {
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        // Fresh copies count against the bound but are never the ones removed.
        let mut fresh_bytes: u64 = 0;
        let Ok(users) = fs::read_dir(&self.cache) else {
            return;
        };
        for user in users.flatten() {
            let Ok(files) = fs::read_dir(user.path()) else {
                continue;
            };
            for file in files.flatten() {
                // In-progress copies (.incoming, .fetching) are another operation's.
                if file.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if let Ok(meta) = file.metadata() {
                    let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    // A copy just handed to a run may not be linked into its staging yet.
                    let fresh = SystemTime::now()
                        .duration_since(used)
                        .is_ok_and(|age| age < CACHE_GRACE);
                    if fresh {
                        fresh_bytes += meta.len();
                    } else {
                        entries.push((used, meta.len(), file.path()));
                    }
                }
            }
        }
        let mut total: u64 = fresh_bytes + entries.iter().map(|(_, size, _)| size).sum::<u64>();
        entries.sort();
        for (_, size, path) in entries {
            if total <= self.cache_max_bytes {
                break;
            }
            // A run that staged this copy holds a hard link: its bytes stay with it.
            if path != keep && fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
    }
}

impl Blobs for GridFsBlobs {
    fn incoming_dir(&self, user_id: &str) -> PathBuf {
        self.cache.join(user_id)
    }

    async fn put(&self, record: &FileRecord, incoming: &Path) -> Result<(), StoreError> {
        self.upload(&record.file_id, incoming).await?;
        // The incoming copy is the cache's copy: the first run needs no download.
        let cached = self.cached(record);
        fs::rename(incoming, &cached).map_err(io_at(&cached))?;
        self.trim_cache(&cached);
        Ok(())
    }

    async fn remove(&self, record: &FileRecord) -> Result<(), StoreError> {
        match self
            .bucket
            .delete(Bson::String(record.file_id.clone()))
            .await
        {
            Ok(()) => {}
            Err(err)
                if matches!(
                    *err.kind,
                    mongodb::error::ErrorKind::GridFs(
                        mongodb::error::GridFsErrorKind::FileNotFound { .. }
                    )
                ) => {}
            Err(err) => return Err(backend("delete a GridFS file")(err)),
        }
        let cached = self.cached(record);
        match fs::remove_file(&cached) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                path: cached,
                source,
            }),
        }
    }

    async fn local_path(&self, record: &FileRecord) -> Result<PathBuf, StoreError> {
        let cached = self.cached(record);
        if let Ok(meta) = fs::metadata(&cached)
            && meta.len() == record.file_size
        {
            // Marks the copy as recently used for the cache's eviction order.
            let _ = fs::File::open(&cached).and_then(|f| f.set_modified(SystemTime::now()));
            return Ok(cached);
        }
        let dir = self.cache.join(&record.user_id);
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let partial = dir.join(format!(".fetching-{}", new_file_id()));
        let fetched = self.download(record, &partial).await;
        if let Err(err) = fetched {
            let _ = fs::remove_file(&partial);
            return Err(err);
        }
        fs::rename(&partial, &cached).map_err(io_at(&cached))?;
        self.trim_cache(&cached);
        Ok(cached)
    }

    async fn has(&self, record: &FileRecord) -> Result<bool, StoreError> {
        self.contains(&record.file_id).await
    }

    async fn remove_orphans(&self, known: &HashSet<String>) -> Result<Vec<PathBuf>, StoreError> {
        let mut removed = Vec::new();
        let mut files = self
            .bucket
            .find(doc! {})
            .await
            .map_err(backend("list GridFS files"))?;
        let now = SystemTime::now();
        while let Some(file) = files
            .try_next()
            .await
            .map_err(backend("list GridFS files"))?
        {
            let Bson::String(id) = &file.id else { continue };
            if known.contains(id) {
                continue;
            }
            let uploaded = SystemTime::UNIX_EPOCH
                + std::time::Duration::from_millis(
                    file.upload_date.timestamp_millis().max(0) as u64
                );
            let young = now
                .duration_since(uploaded)
                .map_or(true, |age| age < RECONCILE_GRACE);
            if young {
                continue;
            }
            self.bucket
                .delete(file.id.clone())
                .await
                .map_err(backend("delete a GridFS file"))?;
            removed.push(PathBuf::from(format!("gridfs:{BUCKET}/{id}")));
        }
        Ok(removed)
    }
}
