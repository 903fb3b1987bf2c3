//! The recorder's local spool: segment files named after their start, sealed and uploaded
//! to object storage, removed only once the store has them.
//!
//! A spool file is `<spool>/<channel>/<start>[-<n>].ogg`, `<start>` as `%Y%m%dT%H%M%SZ`; the
//! object key is derived from the name alone, so a file left by a crash is uploaded under
//! the key it would have had.

use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use shared::store::{ObjectStore, StoreError};
use tokio::sync::Semaphore;

use super::ogg::{FLAG_BOS, FLAG_EOS, pages};
use crate::metrics::Metrics;

/// How a segment's start is written in file names and keys.
const STAMP: &str = "%Y%m%dT%H%M%SZ";
const EXTENSION: &str = "ogg";
pub const CONTENT_TYPE: &str = "audio/ogg";

/// The name stem of a segment starting at `start` (whole seconds).
pub fn stem(start: DateTime<Utc>) -> String {
    start.format(STAMP).to_string()
}

/// The object key of spool file stem `stem` of `channel`:
/// `recordings/<channel>/<YYYY>/<MM>/<DD>/<stem>.ogg`, or `None` if `stem` is not a name
/// this spool gives.
pub fn key_for(channel: &str, stem: &str) -> Option<String> {
    let stamp = stem.get(..16)?;
    let suffix = &stem[16..];
    let valid_suffix = suffix.is_empty()
        || suffix
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let start = NaiveDateTime::parse_from_str(stamp, STAMP).ok()?;
    valid_suffix.then(|| {
        format!(
            "recordings/{channel}/{}/{stem}.{EXTENSION}",
            start.format("%Y/%m/%d")
        )
    })
}

/// The spool file for `stem` in `dir`.
pub fn path_for(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.{EXTENSION}"))
}

/// The segment files waiting in `dir`, oldest first.
pub fn waiting_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == EXTENSION) && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// What a spool file held once sealed.
#[derive(Debug)]
pub enum Sealed {
    /// A complete Ogg/Opus stream, ready to upload.
    Ready(Bytes),
    /// Headers only, or less: nothing worth keeping.
    NoAudio,
    /// Not an Ogg stream at all.
    NotOgg,
}

/// Makes a spool file a complete stream: cuts off a page torn by a crash and flags the last
/// page end-of-stream, in place. Idempotent, and a no-op on a file the recorder closed, so
/// every upload runs it.
///
/// Cutting happens before the flag is written; if a crash interrupts either, the next run
/// finds a shorter but still consistent file (at worst the last page fails its CRC and goes
/// too).
pub fn seal(path: &Path) -> io::Result<Sealed> {
    let mut bytes = std::fs::read(path)?;
    if !bytes.is_empty() && !bytes.starts_with(&b"OggS"[..bytes.len().min(4)]) {
        return Ok(Sealed::NotOgg);
    }
    let mut complete = 0;
    let mut count = 0;
    let mut last: Option<(usize, u8)> = None;
    for page in pages(&bytes) {
        if count == 0 && page.flags & FLAG_BOS == 0 {
            return Ok(Sealed::NotOgg);
        }
        last = Some((complete, page.flags));
        complete += page.bytes.len();
        count += 1;
    }
    // OpusHead, OpusTags, then at least one page of audio.
    let Some((last_at, last_flags)) = last.filter(|_| count >= 3) else {
        return Ok(Sealed::NoAudio);
    };
    if complete == bytes.len() && last_flags & FLAG_EOS != 0 {
        return Ok(Sealed::Ready(Bytes::from(bytes)));
    }
    bytes.truncate(complete);
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(complete as u64)?;
    if last_flags & FLAG_EOS == 0 {
        let page = pages(&bytes[last_at..])
            .next()
            .ok_or_else(|| io::Error::other("the last page no longer reads"))?;
        let flagged = page.with_flags(FLAG_EOS);
        file.seek(SeekFrom::Start(last_at as u64))?;
        file.write_all(&flagged)?;
        bytes[last_at..].copy_from_slice(&flagged);
    }
    file.sync_all()?;
    Ok(Sealed::Ready(Bytes::from(bytes)))
}

/// What an upload needs besides the file.
#[derive(Clone)]
pub struct Uploader {
    pub store: Arc<dyn ObjectStore>,
    pub metrics: Arc<Metrics>,
    pub channel: String,
    /// Uploads read whole files into memory, so only this many run at once.
    pub slots: Arc<Semaphore>,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// What became of a spool file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Uploaded,
    /// Nothing to upload; the file was removed.
    Empty,
    /// Not a segment file; set aside as `*.corrupt`.
    SetAside,
}

impl Uploader {
    /// Seals and uploads `path`, retrying with backoff until the store has it, then removes
    /// the file. A failed attempt leaves the file where it is, so a process that dies while
    /// retrying uploads it at its next start.
    pub async fn upload(&self, mut path: PathBuf) -> Outcome {
        let mut attempt = 0u32;
        loop {
            let Some(stem) = file_stem(&path) else {
                return self.set_aside(&path, "not a segment file name").await;
            };
            let Some(key) = key_for(&self.channel, &stem) else {
                return self.set_aside(&path, "not a segment file name").await;
            };
            let result = {
                let _slot = self.slots.acquire().await;
                self.try_upload(&path, &key).await
            };
            let error = match result {
                Ok(outcome) => return outcome,
                Err(Failure::Rename(next)) => {
                    path = next;
                    continue;
                }
                Err(Failure::SetAside(why)) => return self.set_aside(&path, &why).await,
                Err(Failure::Retry(error)) => error,
            };
            attempt += 1;
            Metrics::add(&self.metrics.recording_failures, 1);
            let delay = shared::retry::delay_for_attempt(attempt, self.retry_min, self.retry_max);
            tracing::warn!(
                file = %path.display(), key, attempt, retry_in_ms = delay.as_millis() as u64,
                error = %error, "recording upload failed; kept in the spool"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn try_upload(&self, path: &Path, key: &str) -> Result<Outcome, Failure> {
        let sealed = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || seal(&path))
                .await
                .map_err(|e| Failure::Retry(e.to_string()))?
        };
        let bytes = match sealed {
            Ok(Sealed::Ready(bytes)) => bytes,
            Ok(Sealed::NoAudio) => {
                tracing::info!(file = %path.display(), "recording spool file without audio removed");
                remove(path).await;
                return Ok(Outcome::Empty);
            }
            Ok(Sealed::NotOgg) => return Err(Failure::SetAside("not an Ogg stream".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Empty),
            Err(e) => return Err(Failure::Retry(format!("sealing: {e}"))),
        };
        let size = bytes.len();
        match self.store.put(key, bytes, CONTENT_TYPE).await {
            Ok(()) => {
                remove(path).await;
                Metrics::add(&self.metrics.recordings_uploaded, 1);
                tracing::info!(
                    uri = self.store.uri(key),
                    bytes = size,
                    "recording segment uploaded"
                );
                Ok(Outcome::Uploaded)
            }
            // Another file already took the key (a restart within the same second): this
            // one moves to the next free name rather than replace it.
            Err(StoreError::AlreadyExists(_)) => match next_free_name(path).await {
                Ok(next) => Err(Failure::Rename(next)),
                Err(e) => Err(Failure::Retry(format!("renaming: {e}"))),
            },
            Err(e) => Err(Failure::Retry(e.to_string())),
        }
    }

    async fn set_aside(&self, path: &Path, why: &str) -> Outcome {
        let mut aside = path.as_os_str().to_owned();
        aside.push(".corrupt");
        let renamed = tokio::fs::rename(path, &aside).await;
        tracing::error!(file = %path.display(), why, renamed = renamed.is_ok(),
            "recording spool file cannot be uploaded; set aside");
        Outcome::SetAside
    }
}

enum Failure {
    /// Try again after a delay.
    Retry(String),
    /// Try again at once under this name.
    Rename(PathBuf),
    SetAside(String),
}

fn file_stem(path: &Path) -> Option<String> {
    path.file_stem()?.to_str().map(str::to_owned)
}

async fn remove(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %e, "could not remove a recording spool file");
    }
}

/// Moves `path` to `<start>-<n>.ogg` for the first free `n` above its own, without
/// replacing any file.
async fn next_free_name(path: &Path) -> io::Result<PathBuf> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let stem = file_stem(&path).ok_or_else(|| io::Error::other("no file name"))?;
        let base = stem.get(..16).unwrap_or(&stem).to_owned();
        // Counting on from the current suffix, so two taken keys cannot swap names forever.
        let current: u32 = stem.get(17..).and_then(|n| n.parse().ok()).unwrap_or(0);
        let dir = path.parent().unwrap_or(Path::new("."));
        for n in current + 1..current + 1000 {
            let next = path_for(dir, &format!("{base}-{n}"));
            // A hard link fails rather than replace an existing file.
            match std::fs::hard_link(&path, &next) {
                Ok(()) => {
                    std::fs::remove_file(&path)?;
                    return Ok(next);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("no free name"))
    })
    .await
    .map_err(io::Error::other)?
}

/// Creates a new spool file for a segment starting at `start`: `<start>.ogg`, or
/// `<start>-<n>.ogg` when that name is taken (a restart within the same second, a leftover
/// still waiting for its upload).
pub async fn create(dir: &Path, start: DateTime<Utc>) -> io::Result<(PathBuf, tokio::fs::File)> {
    let base = stem(start);
    for n in 0..1000 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let path = path_for(dir, &name);
        match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "no free spool file name for {base}"
    )))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::output::ogg::{OggWriter, OpusHeaders, Page};

    #[test]
    fn keys_come_from_file_names() {
        let start = Utc.with_ymd_and_hms(2026, 3, 9, 7, 5, 0).unwrap();
        assert_eq!(stem(start), "20260309T070500Z");
        assert_eq!(
            key_for("main", "20260309T070500Z").as_deref(),
            Some("recordings/main/2026/03/09/20260309T070500Z.ogg")
        );
        assert_eq!(
            key_for("main", "20260309T070500Z-2").as_deref(),
            Some("recordings/main/2026/03/09/20260309T070500Z-2.ogg")
        );
        for bad in [
            "notes",
            "20260309T070500Z-",
            "20260309T070500Z.x",
            "20261309T070500Z",
        ] {
            assert_eq!(key_for("main", bad), None, "{bad}");
        }
    }

    fn stream(audio_packets: usize) -> (Vec<u8>, Vec<usize>) {
        let mut w = OggWriter::new(5, &OpusHeaders::new(312)).with_packets_per_page(2);
        let mut bytes = w.headers().to_vec();
        let mut ends = vec![bytes.len()];
        for i in 0..audio_packets {
            if let Some(page) = w.push(&[i as u8; 100], 960).unwrap() {
                bytes.extend_from_slice(&page);
                ends.push(bytes.len());
            }
        }
        (bytes, ends)
    }

    #[test]
    fn sealing_cuts_a_torn_page_and_ends_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ogg");
        let (bytes, ends) = stream(7); // pages of 2 + 2 + 2 packets written, 1 pending
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let Sealed::Ready(sealed) = seal(&path).unwrap() else {
            panic!("not sealed")
        };
        assert_eq!(sealed.len(), ends[ends.len() - 2]);
        assert_eq!(std::fs::read(&path).unwrap(), sealed);
        let all: Vec<Page<'_>> = pages(&sealed).collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].flags, FLAG_EOS);
        assert_eq!(all[3].granule, 4 * 960);
        // Sealing again changes nothing.
        let Sealed::Ready(again) = seal(&path).unwrap() else {
            panic!("not sealed")
        };
        assert_eq!(again, sealed);
    }

    #[test]
    fn sealing_refuses_files_without_audio_or_not_ogg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ogg");
        let (bytes, ends) = stream(1);
        std::fs::write(&path, &bytes[..ends[0]]).unwrap();
        assert!(matches!(seal(&path).unwrap(), Sealed::NoAudio));
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert!(matches!(seal(&path).unwrap(), Sealed::NoAudio));
        std::fs::write(&path, b"RIFF....WAVE").unwrap();
        assert!(matches!(seal(&path).unwrap(), Sealed::NotOgg));
    }
}
