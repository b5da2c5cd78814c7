//! The admin HTTP listener: `GET /metrics` in Prometheus text format, on shard 0.
//!
//! A deliberately small HTTP/1.1 server: one request per connection, a bounded request head,
//! and `Connection: close`. The metrics of every shard are gathered over the shard mesh at
//! request time (`Shard::gather_metrics`), so no counter is shared between cores.
//! With the test-only `--enable-fault-injection` flag it also serves `/faults`: `POST` arms
//! the storage faults in its text body, `DELETE` clears them, `GET` lists them (see
//! `storage::faults`); without the flag `/faults` is 404.

use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt};

use crate::metrics;
use crate::runtime::{self, TcpListener, TcpStream};
use crate::shard::Shard;
use crate::storage::faults;

/// Largest request head (request line and headers) the admin listener reads.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

/// How long a client may take to send its request head.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest `/faults` request body: a few lines of fault plan.
const FAULTS_BODY_BYTES_MAX: usize = 4 * 1024;

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
        (Some(method), Some("/faults")) if shard.config.fault_injection => {
            let method = method.to_string();
            match read_body(&mut stream, &head).await? {
                Some(text) => faults_endpoint(&method, &text),
                None => ("400 Bad Request", "body missing or too large\n".to_string()),
            }
        }
        (_, Some("/faults")) => ("404 Not Found", "not found: try /metrics\n".to_string()),
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

/// The test-only fault plan: POST arms the faults in `text`, DELETE clears, GET lists.
fn faults_endpoint(method: &str, text: &str) -> (&'static str, String) {
    match method {
        "POST" => match faults::arm(text) {
            Ok(armed) => {
                tracing::warn!(plan = %text.trim(), "storage faults armed");
                ("200 OK", format!("{armed} faults armed\n"))
            }
            Err(error) => ("400 Bad Request", format!("{error}\n")),
        },
        "DELETE" => {
            faults::clear();
            tracing::warn!("storage faults cleared");
            ("200 OK", "faults cleared\n".to_string())
        }
        "GET" => ("200 OK", faults::describe()),
        _ => (
            "405 Method Not Allowed",
            "POST, DELETE or GET\n".to_string(),
        ),
    }
}

/// The request body after `received` (the head and whatever followed it), as announced by
/// Content-Length, within `FAULTS_BODY_BYTES_MAX` and `REQUEST_HEAD_TIMEOUT`. None if too large,
/// cut short or late.
async fn read_body(stream: &mut TcpStream, received: &str) -> std::io::Result<Option<String>> {
    let (head, start) = received.split_once("\r\n\r\n").unwrap_or((received, ""));
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if length > FAULTS_BODY_BYTES_MAX || start.len() > length {
        return Ok(None);
    }
    let mut body = start.as_bytes().to_vec();
    body.resize(length, 0);
    let filled = start.len();
    let read = select(
        Box::pin(stream.read_exact(&mut body[filled..])),
        Box::pin(runtime::sleep(REQUEST_HEAD_TIMEOUT)),
    )
    .await;
    match read {
        Either::Left((Ok(()), _)) => Ok(Some(String::from_utf8_lossy(&body).into_owned())),
        Either::Left((Err(error), _)) if error.kind() != std::io::ErrorKind::UnexpectedEof => {
            Err(error)
        }
        _ => Ok(None),
    }
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
