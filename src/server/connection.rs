//! One client connection: a reader that frames requests and starts a task for each, and a
//! writer that awaits those tasks in request order and writes their responses.
//!
//! Invariants: responses leave in the order requests arrived; at most
//! `CONNECTION_REQUESTS_IN_FLIGHT_MAX` requests are in flight (the reader stops reading, which
//! is the backpressure); a bad frame closes only this connection, after the responses to the
//! requests before it.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures::future::{select, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::{dispatch, Response};
use crate::limits;
use crate::metrics;
use crate::runtime::{self, local_channel, JoinHandle, TcpStream};
use crate::shard::Shard;
use crate::sync::Latch;

/// Serves `stream` until the client closes it, it misbehaves, or the shard shuts down.
pub async fn serve(shard: &Rc<Shard>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.split();
    let (queue, responses) = local_channel::new_bounded(limits::CONNECTION_REQUESTS_IN_FLIGHT_MAX);
    let closing = Rc::new(Latch::default());
    let writer_task = runtime::spawn_joinable(
        shard.queues.requests,
        write_responses(shard.clone(), writer, responses, closing.clone()),
    );
    if let Some(reason) = read_requests(shard, reader, queue, &closing).await {
        tracing::warn!(%peer, "closing connection: {reason}");
    }
    if let Some(Some(reason)) = writer_task.await {
        tracing::warn!(%peer, "closing connection: {reason}");
    }
}

/// Reads frames until end of stream or shutdown, starting a handler task for each. Dropping
/// `queue` at the end lets the writer finish. Returns why it stopped, if it was an error.
async fn read_requests(
    shard: &Rc<Shard>,
    mut reader: ReadHalf<TcpStream>,
    queue: local_channel::LocalSender<JoinHandle<Response>>,
    closing: &Latch,
) -> Option<String> {
    let mut frames = FrameReader::new(shard.config.socket_request_max_bytes);
    loop {
        let stop = select(Box::pin(shard.shutdown.wait()), Box::pin(closing.wait()));
        let frame = match select(Box::pin(frames.next(&mut reader)), stop).await {
            Either::Left((Ok(Some(frame)), _)) => frame,
            Either::Left((Ok(None), _)) | Either::Right(_) => return None,
            Either::Left((Err(reason), _)) => return Some(reason),
        };
        metrics::add(&shard.metrics.bytes_received, 4 + frame.len() as u64);
        let request = match dispatch::decode(frame) {
            Ok(request) => request,
            Err(reason) => return Some(reason),
        };
        let handler_shard = shard.clone();
        let task = runtime::spawn_joinable(shard.queues.requests, async move {
            dispatch::handle(&handler_shard, request).await
        });
        if queue.send(task).await.is_err() {
            // The writer stopped (the client went away or a handler asked to close).
            return None;
        }
    }
}

/// Awaits each request's handler in order and writes its response.
async fn write_responses(
    shard: Rc<Shard>,
    mut writer: WriteHalf<TcpStream>,
    responses: local_channel::LocalReceiver<JoinHandle<Response>>,
    closing: Rc<Latch>,
) -> Option<String> {
    let result = write_in_order(&shard, &mut writer, responses).await;
    closing.raise();
    let _ = writer.close().await;
    result
}

async fn write_in_order(
    shard: &Shard,
    writer: &mut WriteHalf<TcpStream>,
    responses: local_channel::LocalReceiver<JoinHandle<Response>>,
) -> Option<String> {
    let mut out = BytesMut::with_capacity(limits::SOCKET_WRITE_COALESCE_BYTES);
    while let Some(task) = responses.recv().await {
        let chunks = match task.await {
            Some(Response::Chunks(chunks)) => chunks,
            Some(Response::Nothing) => continue,
            Some(Response::Close(reason)) => return Some(reason),
            None => return Some("request handler was cancelled".into()),
        };
        let response_bytes: usize = chunks.iter().map(Bytes::len).sum();
        metrics::add(&shard.metrics.bytes_sent, response_bytes as u64);
        for chunk in chunks {
            if out.len() + chunk.len() <= out.capacity().max(limits::SOCKET_WRITE_COALESCE_BYTES) {
                out.extend_from_slice(&chunk);
                continue;
            }
            if write_all(writer, &out).await.is_err() {
                return None;
            }
            out.clear();
            if chunk.len() >= limits::SOCKET_WRITE_COALESCE_BYTES {
                if write_all(writer, &chunk).await.is_err() {
                    return None;
                }
            } else {
                out.extend_from_slice(&chunk);
            }
        }
        if !out.is_empty() {
            if write_all(writer, &out).await.is_err() {
                return None;
            }
            out.clear();
        }
    }
    None
}

async fn write_all(writer: &mut WriteHalf<TcpStream>, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Splits the byte stream into request frames (a 4-byte big-endian length, then the body).
struct FrameReader {
    buf: BytesMut,
    frame_bytes_max: usize,
}

/// Bytes read from the socket at a time when no larger frame is pending.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Most bytes read from the socket at once while a large frame is pending.
const READ_STEP_BYTES_MAX: usize = 1024 * 1024;

impl FrameReader {
    fn new(frame_bytes_max: usize) -> FrameReader {
        FrameReader {
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            frame_bytes_max,
        }
    }

    /// The next frame's body; `Ok(None)` at a clean end of stream; `Err` for a bad length, a
    /// stream cut inside a frame, or a socket error.
    async fn next(&mut self, reader: &mut ReadHalf<TcpStream>) -> Result<Option<Bytes>, String> {
        loop {
            let needed = match self.frame_length()? {
                Some(length) if self.buf.len() >= 4 + length => {
                    let mut frame = self.buf.split_to(4 + length);
                    let _ = frame.split_to(4);
                    return Ok(Some(frame.freeze()));
                }
                Some(length) => 4 + length - self.buf.len(),
                None => 4 - self.buf.len(),
            };
            let start = self.buf.len();
            // Grow towards a large frame step by step, so a length prefix alone cannot make
            // the broker allocate the whole frame.
            let read_bytes = needed.clamp(READ_CHUNK_BYTES, READ_STEP_BYTES_MAX);
            self.buf.resize(start + read_bytes, 0);
            let read = reader.read(&mut self.buf[start..]).await;
            let count = read.as_ref().copied().unwrap_or(0);
            self.buf.truncate(start + count);
            match read {
                Ok(0) if start == 0 => return Ok(None),
                Ok(0) => return Err(format!("stream ended inside a frame ({start} bytes)")),
                Ok(_) => {}
                Err(error) => return Err(format!("read failed: {error}")),
            }
        }
    }

    /// The length of the frame at the head of the buffer, once its prefix is in.
    fn frame_length(&self) -> Result<Option<usize>, String> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let length = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if length < 0 || length as usize > self.frame_bytes_max {
            return Err(format!(
                "frame length {length} is outside 0..={} (socket.request.max.bytes)",
                self.frame_bytes_max
            ));
        }
        Ok(Some(length as usize))
    }
}
