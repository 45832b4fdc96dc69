//! The spool directory: request files between their build and their upload, and the
//! cleaning of the ones a killed submit left behind.
//!
//! Every request file is held under an exclusive OS file lock (`flock`, through
//! [`File::try_lock`]) by the submit that writes and uploads it, from its creation to
//! its removal after the upload. The kernel drops the lock when the process dies, so a
//! file nobody holds is a leftover of a killed process: its job was recorded as
//! `created` (refresh marks it interrupted, `batch_retry` builds it again) or was
//! uploaded already, and the file is never read again. [`clean_stale`] removes such
//! files; a file another live process or thread is writing or uploading is locked and
//! left alone (flock locks of two `open`s conflict even within one process).
//!
//! The one gap, between creating a file and locking it, is closed by a lock on the
//! directory itself (flock works on a directory's descriptor; no extra file): creators
//! hold it shared across that gap, the cleaner holds it exclusive for its sweep (and
//! skips the sweep when it cannot get it at once). On a file system without flock,
//! nothing is ever cleaned.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ai_batch_core::requests::validate_job_id;

/// The spool directory (`AI_BATCH_SPOOL_DIR`, else `$TMPDIR/ai_batch`), created if
/// missing. The error names the directory.
pub fn dir() -> Result<PathBuf, String> {
    let dir = std::env::var_os("AI_BATCH_SPOOL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ai_batch"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The lock a live submit holds on one of its request files: released when the last
/// clone is dropped, after the file was removed.
#[derive(Debug, Clone)]
pub struct SpoolLock(#[allow(dead_code)] Arc<File>);

impl PartialEq for SpoolLock {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The directory, opened to be locked: orders file creation against a sweep.
fn open_dir_lock(dir: &Path) -> std::io::Result<File> {
    File::open(dir)
}

/// Creates the request file `<job_id>.jsonl` in `dir`, locked: the file to write and
/// the lock to keep until the file is removed.
pub fn create(dir: &Path, job_id: &str) -> std::io::Result<(PathBuf, File, Option<SpoolLock>)> {
    let path = dir.join(format!("{job_id}.jsonl"));
    // Shared: other creators go on, a sweep waits (or is skipped) until the lock
    // below is taken. Without flock (some network file systems) nothing is locked,
    // and then nothing is cleaned either.
    let order = open_dir_lock(dir).ok().filter(|f| f.lock_shared().is_ok());
    let file = File::create(&path)?;
    let lock = match file.try_lock() {
        Ok(()) => Some(SpoolLock(Arc::new(file.try_clone()?))),
        Err(_) => None,
    };
    drop(order);
    Ok((path, file, lock))
}

/// Removes the request files in `dir` that no live process holds (left by a killed
/// submit). Best effort: returns how many were removed, never fails.
pub fn clean_stale(dir: &Path) -> usize {
    let Ok(order) = open_dir_lock(dir) else {
        return 0;
    };
    if order.try_lock().is_err() {
        return 0; // a submit is creating a file right now: the next call cleans
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(job_id) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        // Only our own files, whatever else lives in the directory.
        if !job_id.starts_with("job_") || validate_job_id(job_id).is_err() {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("ai_batch_spool_test_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn only_unlocked_request_files_are_removed() {
        let d = tmp_dir("clean");
        // A live file: created and still held.
        let (live, mut f, lock) = create(&d, "job_20260101_000000_aaaaaa").unwrap();
        assert!(lock.is_some());
        f.write_all(b"{}\n").unwrap();
        // A leftover: a request file nobody holds.
        let stale = d.join("job_20260101_000000_bbbbbb.jsonl");
        std::fs::write(&stale, b"{}\n").unwrap();
        // Not ours: never touched.
        let other = d.join("notes.jsonl");
        std::fs::write(&other, b"x").unwrap();
        assert_eq!(clean_stale(&d), 1);
        assert!(live.exists() && !stale.exists() && other.exists());
        // Released (after the owner removed it, as the submit does): nothing left to do.
        std::fs::remove_file(&live).unwrap();
        drop(lock);
        assert_eq!(clean_stale(&d), 0);
        // A file whose owner is gone without removing it is cleaned.
        let (gone, _f, lock) = create(&d, "job_20260101_000000_cccccc").unwrap();
        drop(lock);
        drop(_f);
        assert_eq!(clean_stale(&d), 1);
        assert!(!gone.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn no_sweep_while_a_file_is_being_created() {
        let d = tmp_dir("order");
        let stale = d.join("job_20260101_000000_dddddd.jsonl");
        std::fs::write(&stale, b"{}\n").unwrap();
        let creating = open_dir_lock(&d).unwrap();
        creating.lock_shared().unwrap();
        assert_eq!(clean_stale(&d), 0);
        assert!(stale.exists());
        drop(creating);
        assert_eq!(clean_stale(&d), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
