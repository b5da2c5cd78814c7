//! STUB (replaced by the storage branch).
#![allow(dead_code, unused_variables)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType { CreateTime, LogAppendTime }
#[derive(Debug, Clone)]
pub struct BatchSummary { pub batch_bytes: usize, pub last_offset_delta: i32, pub base_timestamp: i64, pub max_timestamp: i64, pub record_count: i32, pub timestamp_type: TimestampType, pub base_offset: i64 }
#[derive(Debug, thiserror::Error)]
#[error("bad batch")]
pub struct BatchError;
impl BatchError { pub fn error_code(&self) -> i16 { 2 } }
fn i64_at(b: &[u8], o: usize) -> i64 { i64::from_be_bytes(b[o..o+8].try_into().unwrap()) }
fn i32_at(b: &[u8], o: usize) -> i32 { i32::from_be_bytes(b[o..o+4].try_into().unwrap()) }
pub fn validate(batch: &[u8]) -> Result<BatchSummary, BatchError> {
    if batch.len() < 61 || batch[16] != 2 { return Err(BatchError) }
    Ok(BatchSummary { batch_bytes: batch.len(), last_offset_delta: i32_at(batch, 23), base_timestamp: i64_at(batch, 27), max_timestamp: i64_at(batch, 35), record_count: i32_at(batch, 57), timestamp_type: TimestampType::CreateTime, base_offset: i64_at(batch, 0) })
}
pub fn batches(records: &[u8]) -> impl Iterator<Item = Result<(usize, usize), BatchError>> {
    let mut out = Vec::new(); let mut pos = 0;
    while pos < records.len() {
        if records.len() - pos < 12 { out.push(Err(BatchError)); break; }
        let len = i32_at(records, pos + 8) as usize + 12;
        if pos + len > records.len() { out.push(Err(BatchError)); break; }
        out.push(Ok((pos, len))); pos += len;
    }
    out.into_iter()
}
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {}
