//! The admin HTTP listener: `GET /metrics` in Prometheus text format, on shard 0.
//!
//! A deliberately small HTTP/1.1 server: one request per connection, a bounded request head,
//! and `Connection: close`. The metrics of every shard are gathered over the shard mesh at
//! request time (`Shard::gather_metrics`), so no counter is shared between cores.

use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt};

use crate::metrics;
use crate::runtime::{self, TcpListener, TcpStream};
use crate::shard::Shard;

/// Largest request head (request line and headers) the admin listener reads.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

/// How long a client may take to send its request head.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the admin listener if one is configured. A busy admin port is logged, not fatal:
/// the broker's job is the Kafka listener.
pub fn start(shard: Rc<Shard>) {
    let Some(address) = shard.config.admin_listen else {
        return;
    };
    let listener = match runtime::listening_socket(address, false, 128) {
        Ok(socket) => {
            use std::os::fd::{FromRawFd, IntoRawFd};
            // SAFETY: a listening TCP socket we own, handed over exactly once.
            unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) }
        }
        Err(error) => {
            tracing::error!(%address, %error, "admin listener not started");
            return;
        }
    };
    let bound = listener
        .local_addr()
        .map_or(address.to_string(), |a| a.to_string());
    tracing::info!(admin = %bound, "admin listener serving /metrics");
    runtime::spawn_into(shard.queues.background, accept_loop(shard, listener));
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    super::accept_until_shutdown(&shard, listener, "admin", |stream| {
        let shard = shard.clone();
        runtime::spawn_into(shard.queues.background, async move {
            if let Err(error) = serve(&shard, stream).await {
                tracing::debug!(%error, "admin connection failed");
            }
        });
    })
    .await
}

async fn serve(shard: &Rc<Shard>, mut stream: TcpStream) -> std::io::Result<()> {
    let head = match select(
        Box::pin(read_head(&mut stream)),
        Box::pin(runtime::sleep(REQUEST_HEAD_TIMEOUT)),
    )
    .await
    {
        Either::Left((head, _)) => head?,
        Either::Right(_) => return Ok(()),
    };
    let request_line = head.lines().next().unwrap_or_default().to_string();
    let mut parts = request_line.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => {
            ("200 OK", metrics::render(&shard.gather_metrics().await))
        }
        (Some("GET"), Some(_)) => ("404 Not Found", "not found: try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET is served\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    stream.close().await
}

/// Reads until the blank line that ends the request head, within a size limit.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_BYTES_MAX {
        let read = stream.read(&mut buf).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buf[..read]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
