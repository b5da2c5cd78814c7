//! Small files beside a partition's segments that are replaced whole: the log-start checkpoint
//! (`log_start`) and the partition layer's producer-state snapshots. A file is written under a
//! temporary name (its name plus `.tmp`), fdatasynced, renamed into place, and the directory
//! synced, so that a crash leaves the old content or the new one, never a torn file.
//! Files named by an offset (`<20 digits>.<extension>`, like segments) are listed in order.

use crate::ids::Offset;
use std::io;
use std::path::{Path, PathBuf};

use crate::storage::file;
use crate::storage::segment::{read_small_file, segment_path, write_small_file};

/// The path of the file named by `offset` with `extension` in `dir`.
pub fn offset_path(dir: &Path, offset: Offset, extension: &str) -> PathBuf {
    segment_path(dir, offset, extension)
}

/// Offsets of the files in `dir` named `<20 digits>.<extension>`, ascending.
pub fn list_offsets(dir: &Path, extension: &str) -> io::Result<Vec<Offset>> {
    let mut offsets = Vec::new();
    for name in file::list_dir(dir)? {
        let Some(stem) = name
            .to_str()
            .and_then(|name| name.strip_suffix(extension))
            .and_then(|name| name.strip_suffix('.'))
        else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|byte| byte.is_ascii_digit()) {
            if let Ok(offset) = stem.parse::<i64>() {
                offsets.push(Offset(offset));
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Replaces the content of `path` with `data` durably (see the module doc).
pub async fn replace(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    write_small_file(&temporary, data).await?;
    file::rename(&temporary, path).await?;
    let dir = path
        .parent()
        .expect("side files live in a partition directory");
    file::sync_directory(dir).await
}

/// The whole content of `path`, or None if it does not exist or is larger than `bytes_max`.
pub async fn read(path: &Path, bytes_max: u64) -> io::Result<Option<Vec<u8>>> {
    read_small_file(path, bytes_max).await
}

/// Removes `path` durably: a crash afterwards does not bring it back.
pub async fn remove_durably(path: &Path) -> io::Result<()> {
    remove_if_exists(path).await?;
    let dir = path
        .parent()
        .expect("side files live in a partition directory");
    file::sync_directory(dir).await
}

/// Removes `path`; one already gone is no error.
pub async fn remove_if_exists(path: &Path) -> io::Result<()> {
    match file::remove_file(path).await {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
