//! Object store for listener recordings and generated audio: Cloud Storage in production, a
//! local directory for development.
//!
//! Both backends give the same contract, so code and tests written against one hold for the
//! other:
//!
//! * `put` is **durable** when it returns (GCS acknowledges after replicating; the local
//!   backend fsyncs the file and its directory) and **atomic** (readers never see a partial
//!   object).
//! * `put` is **create-only and idempotent**: keys are server-chosen unique names, so writing
//!   a key that already holds *the same bytes* succeeds (a retried request, a redelivered
//!   message), while writing *different bytes* fails with [`StoreError::AlreadyExists`] instead
//!   of silently replacing a listener's recording.
//! * keys are relative `/`-separated paths without `.`/`..` segments; anything else is
//!   rejected with [`StoreError::InvalidKey`] before any I/O.

use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::{NeverRetry, RetryPolicyExt};
use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ReadRange;
use google_cloud_storage::retry_policy::RetryableErrors;

use crate::bus::gax_error_is_transient;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Upper bound for one GCS operation, retries included. Objects are voice clips and
/// generated segments (at most a few MB), so a minute covers slow links while keeping a push
/// handler well inside its request timeout.
const GCS_OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Objects below this size are uploaded in one request, larger ones with a resumable upload.
///
/// The client's default is 16 MiB. Ours is higher so that every object this system produces
/// (voice clips and segments of a few MB) takes the single-request path in production *and*
/// against fake-gcs-server: the fake builds the resumable session URL from the `Host` header,
/// which the client sends without the port, so resumable uploads cannot be tested locally.
/// The data is in memory already, so a single request costs nothing extra.
const SINGLE_SHOT_UPLOAD_LIMIT: usize = 64 * 1024 * 1024;

/// Upper bound for [`ObjectStore::ping`]: readiness probes must answer quickly.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Object probed by [`ObjectStore::ping`]; it never needs to exist.
const PING_KEY: &str = ".radio24-ping";

/// Longest key accepted (GCS limits object names to 1024 bytes; the prefix counts too).
const MAX_KEY_LEN: usize = 900;

/// Why an object store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist (the URI is attached).
    #[error("object not found: {0}")]
    NotFound(String),
    /// The store URL passed to [`open`] is not usable.
    #[error("invalid object store URL: {0}")]
    InvalidUrl(String),
    /// The key is empty, absolute, contains `.`/`..`/empty segments or forbidden characters.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// The key already holds different bytes; objects are write-once.
    #[error("object {0} already exists with different content")]
    AlreadyExists(String),
    /// A failure that may go away on retry (network, throttling, server errors, timeouts).
    #[error("{operation} {target}: {source}")]
    Transient {
        operation: &'static str,
        target: String,
        #[source]
        source: BoxError,
    },
    /// A failure that retrying will not fix (permissions, missing bucket, bad request).
    #[error("{operation} {target}: {source}")]
    Permanent {
        operation: &'static str,
        target: String,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// `true` when the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }
}

/// A flat namespace of immutable blobs addressed by relative keys.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Stores `data` under `key`, durably and atomically; create-only and idempotent (see the
    /// module documentation).
    async fn put(&self, key: &str, data: Bytes, content_type: &str) -> Result<(), StoreError>;

    /// The object's bytes, or [`StoreError::NotFound`].
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;

    /// Whether an object exists under `key`.
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;

    /// Where the object lives, for logs and database rows: `gs://bucket/prefix/key` or
    /// `file:///abs/path/key`. Does not check that the object exists.
    fn uri(&self, key: &str) -> String;

    /// The key of an object named by [`ObjectStore::uri`], if it is in this store.
    fn key_of(&self, uri: &str) -> Option<String> {
        let root = self.uri("");
        uri.strip_prefix(root.as_str())
            .filter(|key| validate_key(key).is_ok())
            .map(str::to_owned)
    }

    /// Readiness probe: the store is reachable and the configured bucket/directory exists.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the store a URL names.
///
/// * `gs://bucket` or `gs://bucket/prefix`: Cloud Storage. With `gcs_endpoint`
///   (e.g. `http://127.0.0.1:4443`, a fake-gcs-server or emulator) the client uses that
///   endpoint and anonymous credentials; without it, production GCS and Application Default
///   Credentials.
/// * `file:///abs/dir` or `file:relative/dir`: a local directory, created if missing.
pub async fn open(
    url: &str,
    gcs_endpoint: Option<&str>,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if let Some(rest) = url.strip_prefix("gs://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let store = GcsStore::new(bucket, prefix, gcs_endpoint).await?;
        return Ok(Arc::new(store));
    }
    if let Some(rest) = url.strip_prefix("file:") {
        let path = match rest.strip_prefix("//") {
            // `file:///abs`: the authority must be empty (a host part means another machine).
            Some(abs) if abs.starts_with('/') => abs,
            Some(_) => {
                return Err(StoreError::InvalidUrl(format!(
                    "{url}: file URLs with a host are not supported; use file:///abs/dir or file:rel/dir"
                )));
            }
            None => rest,
        };
        if path.is_empty() {
            return Err(StoreError::InvalidUrl(format!("{url}: empty path")));
        }
        let store = LocalFsStore::new(path).await?;
        return Ok(Arc::new(store));
    }
    Err(StoreError::InvalidUrl(format!(
        "{url}: expected gs://bucket[/prefix] or file:path"
    )))
}

/// Checks a key lexically. Both backends share the rule so a key valid locally is valid on
/// GCS and vice versa, and so no key can name a path outside the local root.
fn validate_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && !key.starts_with('/')
        && !key.contains(['\\', '\0'])
        && !key.chars().any(char::is_control)
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(key.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------
// Cloud Storage
// ---------------------------------------------------------------------------------------

/// Cloud Storage backend (`gs://bucket[/prefix]`).
pub struct GcsStore {
    client: Storage,
    bucket: String,
    /// `projects/_/buckets/{bucket}`, the form the client expects.
    bucket_resource: String,
    /// Empty or ending in `/`.
    prefix: String,
}

impl fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsStore")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl GcsStore {
    /// A store over `bucket`, with keys under `prefix` (may be empty). `endpoint` selects an
    /// emulator or fake server and switches to anonymous credentials.
    pub async fn new(
        bucket: &str,
        prefix: &str,
        endpoint: Option<&str>,
    ) -> Result<GcsStore, StoreError> {
        if !valid_bucket_name(bucket) {
            return Err(StoreError::InvalidUrl(format!(
                "gs://{bucket}: invalid bucket name"
            )));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            validate_key(prefix).map_err(|_| {
                StoreError::InvalidUrl(format!("gs://{bucket}/{prefix}: invalid prefix"))
            })?;
            format!("{prefix}/")
        };

        let mut builder = Storage::builder()
            .with_retry_policy(RetryableErrors.with_time_limit(GCS_OPERATION_TIMEOUT))
            .with_resumable_upload_threshold(SINGLE_SHOT_UPLOAD_LIMIT);
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint.trim_end_matches('/'))
                .with_credentials(
                    google_cloud_auth::credentials::anonymous::Builder::new().build(),
                );
        }
        let client = builder.build().await.map_err(|e| StoreError::Permanent {
            operation: "build Cloud Storage client for",
            target: format!("gs://{bucket}"),
            source: Box::new(e),
        })?;
        Ok(GcsStore {
            client,
            bucket: bucket.to_owned(),
            bucket_resource: format!("projects/_/buckets/{bucket}"),
            prefix,
        })
    }

    fn object_name(&self, key: &str) -> Result<String, StoreError> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn error(&self, operation: &'static str, key: &str, e: GaxError) -> StoreError {
        let target = self.uri(key);
        if is_not_found(&e) {
            StoreError::NotFound(target)
        } else if gax_error_is_transient(&e) {
            StoreError::Transient {
                operation,
                target,
                source: Box::new(e),
            }
        } else {
            StoreError::Permanent {
                operation,
                target,
                source: Box::new(e),
            }
        }
    }

    async fn read_all(&self, key: &str, name: String) -> Result<Bytes, StoreError> {
        let mut resp = self
            .client
            .read_object(&self.bucket_resource, name)
            .send()
            .await
            .map_err(|e| self.error("read", key, e))?;
        let size = usize::try_from(resp.object().size).unwrap_or(0);
        let mut buf = Vec::with_capacity(size);
        // The client verifies the CRC32C of the whole download at the end of the stream.
        while let Some(chunk) = resp.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| self.error("read", key, e))?);
        }
        Ok(Bytes::from(buf))
    }
}

/// Bucket names: 3-222 characters of `[a-z0-9._-]`, starting and ending alphanumeric.
fn valid_bucket_name(name: &str) -> bool {
    (3..=222).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_not_found(e: &GaxError) -> bool {
    e.http_status_code() == Some(404) || e.status().is_some_and(|s| s.code == Code::NotFound)
}

fn is_precondition_failed(e: &GaxError) -> bool {
    e.http_status_code() == Some(412)
        || e.status()
            .is_some_and(|s| s.code == Code::FailedPrecondition)
}

/// Real GCS answers a read in a missing bucket with 404 and this message; an object-level 404
/// says "No such object". (fake-gcs-server answers both with a bare "Not Found".)
fn is_missing_bucket(e: &GaxError) -> bool {
    e.http_payload()
        .is_some_and(|p| String::from_utf8_lossy(p).contains("bucket does not exist"))
}

#[async_trait]
impl ObjectStore for GcsStore {
    async fn put(&self, key: &str, data: Bytes, content_type: &str) -> Result<(), StoreError> {
        let name = self.object_name(key)?;
        // Giving the checksum up front makes the client send it in the upload metadata rather
        // than as trailing data, so GCS verifies the bytes end to end and servers without
        // trailing-checksum support (fake-gcs-server) store the object unmodified.
        let crc = crc32c::crc32c(&data);
        let result = self
            .client
            .write_object(&self.bucket_resource, &name, data.clone())
            .set_content_type(content_type)
            .with_known_crc32c(crc)
            // Create-only. It also makes the upload idempotent, so the client may retry it.
            .set_if_generation_match(0)
            .send_unbuffered()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_precondition_failed(&e) => {
                // The key exists: fine if it is our own earlier (or retried) write.
                if self.read_all(key, name).await? == data {
                    Ok(())
                } else {
                    Err(StoreError::AlreadyExists(self.uri(key)))
                }
            }
            Err(e) => Err(self.error("write", key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let name = self.object_name(key)?;
        self.read_all(key, name).await
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let name = self.object_name(key)?;
        // The data-plane client has no metadata-only call over JSON; a one-byte ranged read
        // returns the same headers and costs one byte.
        let result = self
            .client
            .read_object(&self.bucket_resource, name)
            .set_read_range(ReadRange::head(1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_missing_bucket(&e) => Err(self.error("probe", key, e)),
            Err(e) if is_not_found(&e) => Ok(false),
            // A zero-byte object cannot satisfy a range: it exists.
            Err(e) if e.http_status_code() == Some(416) => Ok(true),
            Err(e) => Err(self.error("probe", key, e)),
        }
    }

    fn uri(&self, key: &str) -> String {
        format!("gs://{}/{}{key}", self.bucket, self.prefix)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let name = self.object_name(PING_KEY)?;
        let probe = self
            .client
            .read_object(&self.bucket_resource, name)
            .set_read_range(ReadRange::head(1))
            .with_retry_policy(NeverRetry)
            .send();
        let result = tokio::time::timeout(PING_TIMEOUT, probe)
            .await
            .map_err(|_| StoreError::Transient {
                operation: "ping",
                target: format!("gs://{}", self.bucket),
                source: format!("no answer within {PING_TIMEOUT:?}").into(),
            })?;
        match result {
            Ok(_) => Ok(()),
            Err(e) if !is_missing_bucket(&e) && is_not_found(&e) => Ok(()),
            Err(e) if e.http_status_code() == Some(416) => Ok(()),
            Err(e) => {
                let kind = if is_not_found(&e) {
                    StoreError::Permanent {
                        operation: "ping",
                        target: format!("gs://{}", self.bucket),
                        source: Box::new(e),
                    }
                } else {
                    self.error("ping", PING_KEY, e)
                };
                Err(kind)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Local directory
// ---------------------------------------------------------------------------------------

/// Local-directory backend (`file:` URLs) for development and tests.
///
/// Writes go to a temporary file in the destination directory, are fsynced, then hard-linked
/// into place: `link(2)` is atomic and refuses to replace an existing name, which gives the
/// same create-only semantics as the GCS precondition. The content type is not stored.
#[derive(Debug, Clone)]
pub struct LocalFsStore {
    root: PathBuf,
}

impl LocalFsStore {
    /// A store rooted at `dir` (relative paths resolve against the working directory),
    /// created if missing.
    pub async fn new(dir: impl AsRef<Path>) -> Result<LocalFsStore, StoreError> {
        let dir = dir.as_ref().to_owned();
        blocking(move || {
            fs_err(std::fs::create_dir_all(&dir), "create", &dir)?;
            // Absolute and symlink-free, so uri() is stable whatever the process's cwd.
            let root = fs_err(dir.canonicalize(), "resolve", &dir)?;
            Ok(LocalFsStore { root })
        })
        .await
    }

    /// The directory objects are stored in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl ObjectStore for LocalFsStore {
    async fn put(&self, key: &str, data: Bytes, _content_type: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let root = self.root.clone();
        let uri = self.uri(key);
        blocking(move || put_file(&root, &path, &data, uri)).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if is_missing(&e) => Err(StoreError::NotFound(self.uri(key))),
            Err(e) => Err(io_error(e, "read", &path)),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(io_error(e, "stat", &path)),
        }
    }

    fn uri(&self, key: &str) -> String {
        format!("file://{}", self.root.join(key).display())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match tokio::fs::metadata(&self.root).await {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(StoreError::Permanent {
                operation: "ping",
                target: self.root.display().to_string(),
                source: "not a directory".into(),
            }),
            Err(e) => Err(io_error(e, "ping", &self.root)),
        }
    }
}

/// The blocking part of [`LocalFsStore::put`].
fn put_file(root: &Path, path: &Path, data: &[u8], uri: String) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(root);
    create_dirs_durably(root, dir)?;

    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Dot-prefixed and unique per attempt, so concurrent writers never share a temp file.
    let tmp = dir.join(format!(".{file_name}.{}.tmp", uuid::Uuid::new_v4()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(e, "write", &tmp));
    }

    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => fsync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let existing = fs_err(std::fs::read(path), "read", path)?;
            if existing == data {
                Ok(())
            } else {
                Err(StoreError::AlreadyExists(uri))
            }
        }
        Err(e) => Err(io_error(e, "link", path)),
    }
}

/// `create_dir_all`, then fsync every directory whose entries changed, so a new object's
/// parent directories survive a crash along with the object.
fn create_dirs_durably(root: &Path, dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    // Directories from the deepest existing ancestor (inclusive) down to `dir`.
    let mut chain: Vec<&Path> = dir.ancestors().take_while(|p| !p.is_dir()).collect();
    let existing = dir.ancestors().find(|p| p.is_dir()).unwrap_or(root);
    fs_err(std::fs::create_dir_all(dir), "create", dir)?;
    chain.push(existing);
    for d in chain.into_iter().skip(1) {
        fsync_dir(d)?;
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    let f = fs_err(std::fs::File::open(dir), "open", dir)?;
    fs_err(f.sync_all(), "fsync", dir)
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn fs_err<T>(r: io::Result<T>, operation: &'static str, path: &Path) -> Result<T, StoreError> {
    r.map_err(|e| io_error(e, operation, path))
}

/// Local I/O errors are permanent when they describe the setup (permissions, read-only or
/// unsupported file system), transient otherwise (a full disk or an interrupted call may
/// clear up).
fn io_error(e: io::Error, operation: &'static str, path: &Path) -> StoreError {
    let target = path.display().to_string();
    let permanent = matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::InvalidFilename
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::Unsupported
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::IsADirectory
    );
    if permanent {
        StoreError::Permanent {
            operation,
            target,
            source: Box::new(e),
        }
    } else {
        StoreError::Transient {
            operation,
            target,
            source: Box::new(e),
        }
    }
}

/// Runs file-system work off the async worker threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|join| {
        Err(StoreError::Transient {
            operation: "run blocking task for",
            target: "local store".to_owned(),
            source: Box::new(join),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        for ok in ["a", "submissions/2026/01/abc.ogg", "a.b/c-d_e", "..a/b.."] {
            assert!(validate_key(ok).is_ok(), "{ok:?} rejected");
        }
        for bad in [
            "", "/abs", "a/../b", "..", ".", "a/./b", "a//b", "a/", "a\\b", "a\0b", "a\nb",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bucket_names() {
        assert!(valid_bucket_name("radio24-audio"));
        assert!(valid_bucket_name("my.bucket_1"));
        assert!(!valid_bucket_name("ab"));
        assert!(!valid_bucket_name("Upper"));
        assert!(!valid_bucket_name("-dash"));
        assert!(!valid_bucket_name("a/b"));
    }
}
