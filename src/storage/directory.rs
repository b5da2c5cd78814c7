//! Removing a log's directory so that a crash at any moment leaves either the directory whole
//! under its own name or a directory whose name says it is being deleted. Start-up removes
//! the latter, and any partition directory the metadata does not know, so a deletion never
//! resurfaces under a re-created topic of the same name.
//!
//! The deletion name has Kafka's shape, `<topic>-<partition>.<unique>-delete`, with the topic
//! cut short when the whole would exceed `FILE_NAME_BYTES_MAX`, as Kafka cuts it: the
//! directory of a topic of the longest legal name is already 251-254 bytes long, and renaming
//! it to itself plus a suffix failed with ENAMETOOLONG, which left its data for a re-created
//! topic of the same name. The topic part is only for people reading a listing; the suffix
//! is what start-up looks for, and the unique part keeps two deletions apart.

use std::io;
use std::path::Path;

use crate::limits::{FILE_NAME_BYTES_MAX, PARTITION_INDEX_DIGITS_MAX};
use crate::storage::file;

/// How the name of a directory being deleted ends.
pub const DELETION_SUFFIX: &str = "-delete";

/// Length of the unique part: a v4 UUID in hex without dashes, as Kafka uses.
const UNIQUE_BYTES: usize = 32;

/// The longest part of a deletion name that is kept whatever the topic's length:
/// `-<partition>.<unique>-delete`.
const DELETION_TAIL_BYTES_MAX: usize =
    1 + PARTITION_INDEX_DIGITS_MAX + 1 + UNIQUE_BYTES + DELETION_SUFFIX.len();

// The tail fits with room for a topic prefix that still tells a reader what was deleted.
const _: () = assert!(DELETION_TAIL_BYTES_MAX + 100 <= FILE_NAME_BYTES_MAX);

/// Whether `name` is that of a directory whose deletion started.
pub fn is_deletion_name(name: &str) -> bool {
    name.ends_with(DELETION_SUFFIX)
}

/// The name the directory named `live` (`<topic>-<partition>`) takes while it is deleted:
/// `<topic>-<partition>.<unique>-delete`, the topic cut short so that the whole fits a file
/// name. Never a live partition's name, which ends in digits.
pub fn deletion_name(live: &str, unique: &str) -> String {
    let (topic, partition) = live.rsplit_once('-').unwrap_or((live, ""));
    let tail = format!("-{partition}.{unique}{DELETION_SUFFIX}");
    let mut keep = topic
        .len()
        .min(FILE_NAME_BYTES_MAX.saturating_sub(tail.len()));
    while !topic.is_char_boundary(keep) {
        keep -= 1;
    }
    let name = format!("{}{tail}", &topic[..keep]);
    assert!(
        name.len() <= FILE_NAME_BYTES_MAX && is_deletion_name(&name),
        "deletion name {name:?} of {live:?}"
    );
    name
}

/// Removes directory `dir` and everything in it: renamed to its deletion name first, the
/// rename made durable, then deleted, so that a crash midway never leaves part of it under its
/// own name.
pub async fn remove_dir(dir: &Path) -> io::Result<()> {
    let live = dir
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no directory", dir.display()),
            )
        })?;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let doomed = dir.with_file_name(deletion_name(live, &unique));
    file::rename(dir, &doomed).await?;
    if let Some(parent) = dir.parent() {
        file::sync_directory(parent).await?;
    }
    // Blocking, but deletion is rare and a log directory holds few files.
    file::remove_dir_all(&doomed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{PARTITIONS_PER_TOPIC_MAX, TOPIC_NAME_BYTES_MAX};

    /// The deletion name of every legal partition directory (topic names of every length up
    /// to 249, the first and last partition) fits a file name, ends in the deletion suffix,
    /// keeps the partition, and keeps as much of the topic as fits (all of it when it can).
    #[test]
    fn deletion_names_fit_for_every_legal_directory() {
        let unique = "0123456789abcdef0123456789abcdef";
        assert_eq!(unique.len(), UNIQUE_BYTES);
        let legal = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
        for length in 1..=TOPIC_NAME_BYTES_MAX {
            let topic: String = legal.chars().cycle().take(length).collect();
            for partition in [0, 7, PARTITIONS_PER_TOPIC_MAX - 1] {
                let partition = crate::ids::PartitionId(partition);
                let live = crate::metadata::partition_dir_name(&topic, partition);
                assert!(live.len() <= FILE_NAME_BYTES_MAX, "{live}");
                let name = deletion_name(&live, unique);
                assert!(name.len() <= FILE_NAME_BYTES_MAX, "{length}: {name}");
                assert!(is_deletion_name(&name) && !is_deletion_name(&live));
                let tail = format!("-{partition}.{unique}{DELETION_SUFFIX}");
                assert!(name.ends_with(&tail), "{name}");
                let kept = name.len() - tail.len();
                assert_eq!(kept, length.min(FILE_NAME_BYTES_MAX - tail.len()));
                assert!(topic.starts_with(&name[..kept]));
            }
        }
    }

    /// A directory is removed whole, and nothing named for its deletion stays behind.
    #[test]
    fn remove_dir_leaves_nothing() {
        let long_topic: String = "t".repeat(TOPIC_NAME_BYTES_MAX);
        let live = crate::metadata::partition_dir_name(&long_topic, crate::ids::PartitionId(9));
        crate::storage::tests::run_in_root("corelog-remove-dir", move |root| async move {
            let dir = root.join(&live);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("00000000000000000000.log"), b"data").unwrap();
            remove_dir(&dir).await.unwrap();
            let left: Vec<_> = std::fs::read_dir(&root)
                .unwrap()
                .map(|entry| entry.unwrap().file_name())
                .filter(|name| name != ".corelog-device-probe")
                .collect();
            assert!(left.is_empty(), "{left:?}");
        });
    }
}
