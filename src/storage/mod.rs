//! STUB (replaced by the storage branch): an in-memory log for wiring tests.
#![allow(dead_code, unused_variables)]
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use bytes::{Bytes, BytesMut};
use crate::protocol::record_batch::BatchSummary;
pub struct LogConfig { pub segment_bytes: u64, pub segment_ms: i64, pub retention_bytes: i64, pub retention_ms: i64, pub index_interval_bytes: u64 }
#[derive(Debug, thiserror::Error)]
pub enum StorageError { #[error("io {0}")] Io(#[from] std::io::Error), #[error("oor")] OffsetOutOfRange { requested: i64, log_start: i64, high_watermark: i64 }, #[error("corrupt {0}")] Corrupt(String) }
pub struct AppendResult { pub base_offset: i64, pub last_offset: i64 }
#[derive(Default)]
pub struct Log { batches: RefCell<Vec<(i64, i64, Bytes)>>, hw: std::cell::Cell<i64>, leo: std::cell::Cell<i64> }
impl Log {
    pub async fn open(dir: PathBuf, config: LogConfig, cache: Rc<BatchCache>) -> Result<Rc<Log>, StorageError> { Ok(Rc::new(Log::default())) }
    pub fn set_config(&self, config: LogConfig) {}
    pub fn log_start_offset(&self) -> i64 { 0 }
    pub fn log_end_offset(&self) -> i64 { self.leo.get() }
    pub fn high_watermark(&self) -> i64 { self.hw.get() }
    pub fn size_bytes(&self) -> u64 { 0 }
    pub fn has_unflushed(&self) -> bool { false }
    pub fn append(&self, mut batch: BytesMut, summary: &BatchSummary, log_append_time: Option<i64>) -> Result<AppendResult, StorageError> {
        let base = self.leo.get(); batch[0..8].copy_from_slice(&base.to_be_bytes());
        let last = base + summary.last_offset_delta as i64; self.leo.set(last + 1);
        self.batches.borrow_mut().push((base, last, batch.freeze()));
        Ok(AppendResult { base_offset: base, last_offset: last })
    }
    pub async fn flush(&self) -> Result<i64, StorageError> { self.hw.set(self.leo.get()); Ok(self.hw.get()) }
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Vec<Bytes>, StorageError> {
        if offset < 0 || offset > self.hw.get() { return Err(StorageError::OffsetOutOfRange { requested: offset, log_start: 0, high_watermark: self.hw.get() }) }
        let mut out = Vec::new(); let mut total = 0;
        for (b, l, bytes) in self.batches.borrow().iter() {
            if *l < offset || *b >= self.hw.get() { continue }
            if !out.is_empty() && total + bytes.len() > max_bytes { break }
            total += bytes.len(); out.push(bytes.clone());
        }
        Ok(out)
    }
    pub async fn find_batch_by_timestamp(&self, ts: i64) -> Result<Option<Bytes>, StorageError> { Ok(None) }
    pub fn max_timestamp(&self) -> Option<(i64, i64)> { None }
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<(), StorageError> { Ok(()) }
    pub async fn close(&self) -> Result<(), StorageError> { Ok(()) }
    pub async fn remove(&self) -> Result<(), StorageError> { Ok(()) }
}
pub struct BatchCache;
impl BatchCache { pub fn new(budget_bytes: usize) -> Rc<Self> { Rc::new(BatchCache) } }
pub async fn prime_device(data_dir: &Path) -> std::io::Result<()> { Ok(()) }
