//! `partition.metadata`: the id of the topic a partition directory belongs to, in Kafka's
//! file of the same name and format (`version: 0`, then `topic_id: ` and the id in Kafka's
//! text form, URL-safe base64 without padding). A directory found under a new partition's
//! name is then known to be that very partition (a cluster node catching up on the metadata
//! log applies again the creation of partitions it holds) or another topic's (what a removal
//! that failed left, which must not become the new partition's data).

use std::io;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::side_file;

pub const FILE: &str = "partition.metadata";

/// The topic id recorded in `dir`; None if there is none or it cannot be read as one.
pub async fn read(dir: &Path) -> io::Result<Option<uuid::Uuid>> {
    let Some(content) = side_file::read(&dir.join(FILE), 1024).await? else {
        return Ok(None);
    };
    Ok(parse(&String::from_utf8_lossy(&content)))
}

/// Records durably that `dir` belongs to topic `id`.
pub async fn write(dir: &Path, id: uuid::Uuid) -> io::Result<()> {
    side_file::replace(&dir.join(FILE), render(id).as_bytes()).await
}

fn render(id: uuid::Uuid) -> String {
    format!(
        "version: 0\ntopic_id: {}\n",
        URL_SAFE_NO_PAD.encode(id.as_bytes())
    )
}

fn parse(text: &str) -> Option<uuid::Uuid> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "version: 0" {
        return None;
    }
    let encoded = lines.next()?.strip_prefix("topic_id:")?.trim();
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    uuid::Uuid::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_round_trip_in_kafkas_format() {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let text = render(id);
        assert_eq!(text, "version: 0\ntopic_id: ASNFZ4mrze8BI0VniavN7w\n");
        assert_eq!(parse(&text), Some(id));
        assert_eq!(
            parse("version: 1\ntopic_id: ASNFZ4mrze8BI0VniavN7w\n"),
            None
        );
        assert_eq!(parse("garbage"), None);
    }
}
