//! Kafka framing for corelog's own clients (`bench`, `topic`): length-prefixed frames over any
//! async byte stream, request headers with correlation ids, and typed responses.
//!
//! A connection can be split into a [`FrameWriter`] and a [`FrameReader`] so that one task
//! pipelines requests while another reads the answers; Kafka brokers answer in request order,
//! and the reader checks every correlation id against the one the writer recorded.

use std::io;

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, Request, StrBytes};

use crate::limits::BENCH_RESPONSE_BYTES_MAX;

/// The client id sent unless another is set, so that broker logs can tell corelog apart.
const CLIENT_ID: &str = "corelog-bench";

/// Writes request frames; owns the correlation-id counter of its connection.
pub struct FrameWriter<W> {
    stream: W,
    correlation_id: i32,
    buffer: BytesMut,
    client_id: &'static str,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(stream: W) -> FrameWriter<W> {
        FrameWriter {
            stream,
            correlation_id: 0,
            buffer: BytesMut::new(),
            client_id: CLIENT_ID,
        }
    }

    /// The client id this writer puts in request headers.
    pub fn set_client_id(&mut self, client_id: &'static str) {
        self.client_id = client_id;
    }

    /// Encodes and writes `request` at `version` as one frame; returns its correlation id.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> io::Result<i32> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)));
        self.buffer.clear();
        // Room for the length prefix, patched once the body's size is known.
        self.buffer.extend_from_slice(&[0u8; 4]);
        encode_request_header_into_buffer(&mut self.buffer, &header).map_err(io::Error::other)?;
        request
            .encode(&mut self.buffer, version)
            .map_err(io::Error::other)?;
        let body_bytes = i32::try_from(self.buffer.len() - 4).map_err(io::Error::other)?;
        self.buffer[..4].copy_from_slice(&body_bytes.to_be_bytes());
        self.stream.write_all(&self.buffer).await?;
        self.stream.flush().await?;
        Ok(self.correlation_id)
    }
}

/// Reads response frames and decodes them.
pub struct FrameReader<R> {
    stream: R,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(stream: R) -> FrameReader<R> {
        FrameReader { stream }
    }

    /// Reads one whole frame; a length outside `0..=BENCH_RESPONSE_BYTES_MAX` is an error.
    pub async fn recv_frame(&mut self) -> io::Result<Bytes> {
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).await?;
        let length = i32::from_be_bytes(length);
        if length < 0 || length as usize > BENCH_RESPONSE_BYTES_MAX {
            return Err(io::Error::other(format!(
                "response frame of {length} bytes"
            )));
        }
        let mut body = vec![0u8; length as usize];
        self.stream.read_exact(&mut body).await?;
        Ok(Bytes::from(body))
    }

    /// Reads the response to the request `correlation_id`, sent as `Q` at `version`.
    pub async fn recv<Q: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> io::Result<Q::Response> {
        let mut body = self.recv_frame().await?;
        let key = ApiKey::try_from(Q::KEY).map_err(|()| io::Error::other("unknown api key"))?;
        // ApiVersions answers with header v0 whatever the request version.
        let header_version = if key == ApiKey::ApiVersions {
            0
        } else {
            key.response_header_version(version)
        };
        let header = ResponseHeader::decode(&mut body, header_version).map_err(io::Error::other)?;
        if header.correlation_id != correlation_id {
            return Err(io::Error::other(format!(
                "response carries correlation id {}, expected {correlation_id}",
                header.correlation_id
            )));
        }
        Q::Response::decode(&mut body, version).map_err(io::Error::other)
    }
}

/// A connection used one request at a time (setup and control plane).
pub struct Connection<S> {
    pub writer: FrameWriter<futures::io::WriteHalf<S>>,
    pub reader: FrameReader<futures::io::ReadHalf<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Connection<S> {
        let (reader, writer) = stream.split();
        Connection {
            writer: FrameWriter::new(writer),
            reader: FrameReader::new(reader),
        }
    }

    /// One request/response round trip.
    pub async fn request<Q: Request>(
        &mut self,
        request: &Q,
        version: i16,
    ) -> io::Result<Q::Response> {
        let correlation_id = self.writer.send(request, version).await?;
        self.reader.recv::<Q>(correlation_id, version).await
    }
}
