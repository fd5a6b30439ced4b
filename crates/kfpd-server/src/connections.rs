//! Limits on client connections, the same for the REST and the gRPC listener: a
//! cap on open connections (extra ones are shed at once, served ones keep going),
//! a deadline for a request's head once its first byte arrived, a deadline for a
//! connection with no request in flight, and a minimum rate for request bodies.
//!
//! A slow or idle client costs a socket and a few hundred bytes, never a worker:
//! the timers live in the connection's own I/O wrapper and request body.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The limits, as configured (`docs/configuration.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open connections per listener; more are closed as soon as accepted.
    pub max_connections: usize,
    /// From the first byte of a request's head to its end (HTTP/1), or from the
    /// first byte of a connection to its first request (HTTP/2).
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Grace for a request body: it must arrive within this long, plus one second
    /// for every `min_body_rate` bytes received.
    pub body_read_timeout: Duration,
    /// Bytes per second a body must keep up after `body_read_timeout`; 0: the
    /// whole body within `body_read_timeout`.
    pub min_body_rate: u64,
}

pub const DEFAULT_LIMITS: Limits = Limits {
    max_connections: 10_000,
    header_read_timeout: Duration::from_secs(30),
    idle_timeout: Duration::from_secs(120),
    body_read_timeout: Duration::from_secs(60),
    min_body_rate: 1024,
};

impl Default for Limits {
    fn default() -> Limits {
        DEFAULT_LIMITS
    }
}

/// Counts for `/metrics`: connections open now and shed since start, per listener.
#[derive(Debug, Default)]
pub struct Counts {
    pub open: AtomicUsize,
    pub shed: AtomicU64,
    pub timed_out: AtomicU64,
}

/// The REST and gRPC counts, process-wide (one server per process).
pub static REST_COUNTS: Counts = Counts {
    open: AtomicUsize::new(0),
    shed: AtomicU64::new(0),
    timed_out: AtomicU64::new(0),
};
pub static GRPC_COUNTS: Counts = Counts {
    open: AtomicUsize::new(0),
    shed: AtomicU64::new(0),
    timed_out: AtomicU64::new(0),
};

/// What a connection is doing, shared by its I/O wrapper and its requests.
#[derive(Debug)]
struct State {
    in_flight: usize,
    /// When the last request ended (or the connection opened).
    idle_since: Instant,
    /// When the first byte of the next request's head arrived, while idle.
    head_started: Option<Instant>,
    requests: u64,
}

/// One accepted connection's activity.
#[derive(Debug, Clone)]
pub struct Activity(Arc<Mutex<State>>);

impl Activity {
    fn new() -> Activity {
        Activity(Arc::new(Mutex::new(State {
            in_flight: 0,
            idle_since: Instant::now(),
            head_started: None,
            requests: 0,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counts inconsistent
        // in a way that matters more than closing the connection a little late.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks a request in flight until the returned guard is dropped (with the
    /// response body, so a long stream is not idle).
    pub fn begin(&self) -> RequestGuard {
        let mut state = self.state();
        state.in_flight += 1;
        state.requests += 1;
        state.head_started = None;
        RequestGuard(self.clone())
    }
}

/// Held while a request (and its response body) is in flight.
#[derive(Debug)]
pub struct RequestGuard(Activity);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            state.head_started = None;
        }
    }
}

/// The protocol a connection speaks, told from its first bytes: HTTP/2 sends
/// control frames while idle, which must not start the header clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Unknown,
    Http1,
    Http2,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A TCP connection that closes itself when a limit is passed; holds its slot
/// of the listener's connection cap.
pub struct Guarded {
    stream: TcpStream,
    activity: Activity,
    limits: Limits,
    protocol: Protocol,
    timer: Pin<Box<Sleep>>,
    counts: &'static Counts,
    _permit: OwnedSemaphorePermit,
    local_addr: Option<std::net::SocketAddr>,
    remote_addr: Option<std::net::SocketAddr>,
}

impl Guarded {
    fn new(
        stream: TcpStream,
        limits: Limits,
        permit: OwnedSemaphorePermit,
        counts: &'static Counts,
    ) -> Guarded {
        counts.open.fetch_add(1, Ordering::Relaxed);
        let local_addr = stream.local_addr().ok();
        let remote_addr = stream.peer_addr().ok();
        Guarded {
            stream,
            activity: Activity::new(),
            limits,
            protocol: Protocol::Unknown,
            timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            counts,
            _permit: permit,
            local_addr,
            remote_addr,
        }
    }

    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// When this connection must be closed if nothing changes, and why; `None`
    /// while a request is in flight.
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        let state = self.activity.state();
        if state.in_flight > 0 {
            return None;
        }
        match state.head_started {
            Some(started) => Some((
                started + self.limits.header_read_timeout,
                "request head not complete within the header read timeout",
            )),
            None => Some((
                state.idle_since + self.limits.idle_timeout,
                "no request within the idle timeout",
            )),
        }
    }

    /// Notes bytes that arrived while no request was in flight.
    fn saw_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.protocol == Protocol::Unknown {
            let prefix = bytes.len().min(H2_PREFACE.len());
            self.protocol = if bytes[..prefix] == H2_PREFACE[..prefix] {
                Protocol::Http2
            } else {
                Protocol::Http1
            };
        }
        let mut state = self.activity.state();
        if state.in_flight > 0 || state.head_started.is_some() {
            return;
        }
        // HTTP/2 peers send settings, pings and window updates between requests;
        // only the bytes before the first request are its "head".
        let counts = match self.protocol {
            Protocol::Http2 => state.requests == 0,
            _ => true,
        };
        if counts {
            state.head_started = Some(Instant::now());
        }
    }

    /// Arms the timer for the current deadline; `Err` once it has passed.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        let (deadline, reason) = match self.deadline() {
            Some(deadline) => deadline,
            // Look again later: the request may end without this side reading.
            None => (
                Instant::now() + self.limits.idle_timeout,
                "request in flight",
            ),
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        if self.deadline().is_none() {
            self.timer
                .as_mut()
                .reset(Instant::now() + self.limits.idle_timeout);
            let _ = self.timer.as_mut().poll(cx);
            return Ok(());
        }
        self.counts.timed_out.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = ?self.remote_addr, reason, "closing connection");
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, reason))
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.counts.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw_bytes(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match this.check_deadline(cx) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// What gRPC requests see of their connection (tonic puts it in the request's
/// extensions).
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub activity: Activity,
    pub local_addr: Option<std::net::SocketAddr>,
    pub remote_addr: Option<std::net::SocketAddr>,
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        ConnectionInfo {
            activity: self.activity(),
            local_addr: self.local_addr,
            remote_addr: self.remote_addr,
        }
    }
}

/// How a listener turns away a connection over the cap.
#[derive(Clone, Copy, Debug)]
pub enum Shed {
    /// Answer `503` (one write, never waited on) and close.
    Http,
    /// Close at once: an HTTP/2 client sees the connection refused and retries.
    Close,
}

const SHED_BODY: &str = "{\"code\":14,\"message\":\"too many open connections: the server is at its connection limit (--max-connections); retry later\",\"details\":[]}";

fn shed(stream: TcpStream, how: Shed, counts: &'static Counts) {
    counts.shed.fetch_add(1, Ordering::Relaxed);
    if let Shed::Http = how {
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{SHED_BODY}",
            SHED_BODY.len()
        );
        let _ = stream.try_write(answer.as_bytes());
    }
}

/// Accepts connections up to the cap, shedding the rest; waits out errors such
/// as running out of file descriptors instead of spinning or stopping.
pub struct Acceptor {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    limits: Limits,
    how: Shed,
    counts: &'static Counts,
}

impl Acceptor {
    pub fn new(
        listener: TcpListener,
        limits: Limits,
        how: Shed,
        counts: &'static Counts,
    ) -> Acceptor {
        Acceptor {
            listener,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            how,
            counts,
        }
    }

    pub async fn accept(&self) -> Guarded {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    if !is_connection_error(&error) {
                        tracing::warn!(error = %error, "cannot accept a connection; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                tracing::debug!("connection limit reached; shedding a connection");
                shed(stream, self.how, self.counts);
                continue;
            };
            let _ = stream.set_nodelay(true);
            return Guarded::new(stream, self.limits, permit, self.counts);
        }
    }
}

/// Errors of one connection that the accept loop skips without waiting.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Set when a request body fell below its minimum rate, so the transport can
/// answer 408 whatever the handler made of the failed read.
#[derive(Clone, Debug, Default)]
pub struct SlowBody(Arc<AtomicBool>);

impl SlowBody {
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a body read failed: the client sent it too slowly.
#[derive(Debug, thiserror::Error)]
#[error("request body arrived too slowly: {received} bytes in {elapsed:?}, below the minimum of {rate} bytes per second after {grace:?} (--min-body-rate, --body-read-timeout)")]
pub struct BodyTooSlow {
    received: u64,
    elapsed: Duration,
    rate: u64,
    grace: Duration,
}

/// A request body that fails once it falls behind its deadline: `started +
/// body_read_timeout + received / min_body_rate`.
pub struct RateLimited<B> {
    inner: B,
    started: Instant,
    received: u64,
    limits: Limits,
    timer: Option<Pin<Box<Sleep>>>,
    slow: SlowBody,
}

impl<B> RateLimited<B> {
    pub fn new(inner: B, limits: Limits, slow: SlowBody) -> RateLimited<B> {
        RateLimited {
            inner,
            started: Instant::now(),
            received: 0,
            limits,
            timer: None,
            slow,
        }
    }

    fn deadline(&self) -> Instant {
        let earned = match self.limits.min_body_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(self.received as f64 / rate as f64),
        };
        self.started + self.limits.body_read_timeout + earned
    }
}

impl<B> Body for RateLimited<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.slow.0.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTooSlow {
                    received: this.received,
                    elapsed: this.started.elapsed(),
                    rate: this.limits.min_body_rate,
                    grace: this.limits.body_read_timeout,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in flight until it ends.
pub struct Tracked<B> {
    inner: B,
    guard: Option<RequestGuard>,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, guard: Option<RequestGuard>) -> Tracked<B> {
        Tracked { inner, guard }
    }
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The tower layer gRPC requests pass through: counts them in flight on their
/// connection and holds their bodies to the minimum rate.
#[derive(Clone, Copy, Debug)]
pub struct GrpcLayer(pub Limits);

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcService<S>;

    fn layer(&self, inner: S) -> GrpcService<S> {
        GrpcService {
            inner,
            limits: self.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcService<S> {
    inner: S,
    limits: Limits,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ResBody> tower::Service<http::Request<tonic::body::Body>> for GrpcService<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Unpin,
{
    type Response = http::Response<Tracked<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let guard = request
            .extensions()
            .get::<ConnectionInfo>()
            .map(|info| info.activity.begin());
        let limits = self.limits;
        let slow = SlowBody::default();
        let request = request.map({
            let slow = slow.clone();
            move |body| tonic::body::Body::new(RateLimited::new(body, limits, slow))
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            if slow.happened() {
                // A unary call reads its whole message before answering, so the
                // status of a body that came too slowly is in these headers.
                let message = too_slow_message(limits);
                if let Ok(value) = http::HeaderValue::from_str(&message) {
                    let headers = response.headers_mut();
                    headers.insert("grpc-status", http::HeaderValue::from_static("4"));
                    headers.insert("grpc-message", value);
                }
            }
            resource_exhausted_for_large_messages(response.headers_mut());
            Ok(response.map(|body| Tracked::new(body, guard)))
        })
    }
}

/// tonic answers a request message over the size limit with OUT_OF_RANGE;
/// gRPC's own servers answer RESOURCE_EXHAUSTED, which is what clients expect
/// (and what REST's 413 maps to). The limit stays in the message.
fn resource_exhausted_for_large_messages(headers: &mut http::HeaderMap) {
    if headers.get("grpc-status").map(|value| value.as_bytes()) != Some(b"11") {
        return;
    }
    let Some(message) = headers
        .get("grpc-message")
        .and_then(|value| value.to_str().ok())
        .map(percent_decode)
    else {
        return;
    };
    if !message.contains("decoded message length too large") {
        return;
    }
    let number_after = |marker: &str| -> Option<u64> {
        let rest = &message[message.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let (Some(found), Some(limit)) = (number_after("found "), number_after("limit is: ")) else {
        return;
    };
    let text = format!(
        "request message of {found} bytes is larger than the limit of {limit} bytes (--grpc-max-message-bytes)"
    );
    let Ok(value) = http::HeaderValue::from_str(&text) else {
        return;
    };
    headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    headers.insert("grpc-message", value);
}

/// `%XX` sequences of a `grpc-message` header back to bytes.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves REST on `listener` with `router` until `shutdown` completes, then
/// lets the requests in flight finish.
pub async fn serve_rest(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;

    let acceptor = Acceptor::new(listener, limits, Shed::Http, &REST_COUNTS);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let io = tokio::select! {
            io = acceptor.accept() => io,
            () = &mut shutdown => break,
        };
        let service = RestService {
            router: router.clone(),
            activity: io.activity(),
            limits,
            remote_addr: io.remote_addr,
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection ended with an error");
            }
        });
    }
    drop(acceptor);
    graceful.shutdown().await;
}

/// One REST connection's service: the router, with its requests counted and
/// their bodies held to the minimum rate.
#[derive(Clone)]
struct RestService {
    router: axum::Router,
    activity: Activity,
    limits: Limits,
    /// The peer, as `ConnectInfo` for the handlers (multi-user mode believes a
    /// user header only from trusted proxies).
    remote_addr: Option<std::net::SocketAddr>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for RestService {
    type Response = http::Response<Tracked<axum::body::Body>>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        use tower::ServiceExt;

        let guard = self.activity.begin();
        let slow = SlowBody::default();
        let limits = self.limits;
        let mut request = request.map({
            let slow = slow.clone();
            move |body| axum::body::Body::new(RateLimited::new(body, limits, slow))
        });
        if let Some(peer) = self.remote_addr {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let router = self.router.clone();
        Box::pin(async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let response = if slow.happened() {
                too_slow(limits)
            } else {
                response
            };
            Ok(response.map(|body| Tracked::new(body, Some(guard))))
        })
    }
}

/// 408 for a body that fell below the minimum rate; the connection closes.
fn too_slow(limits: Limits) -> axum::response::Response {
    use axum::response::IntoResponse;

    let message = too_slow_message(limits);
    let mut response =
        crate::error::Error::new(crate::error::Code::DeadlineExceeded, message).into_response();
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

fn too_slow_message(limits: Limits) -> String {
    format!(
        "request body arrived too slowly: it must arrive within {:?} plus one second for every {} bytes received (--body-read-timeout, --min-body-rate)",
        limits.body_read_timeout, limits.min_body_rate
    )
}

/// The gRPC listener's connections, capped and guarded like REST's.
pub fn grpc_incoming(
    listener: TcpListener,
    limits: Limits,
) -> impl futures::Stream<Item = std::io::Result<Guarded>> + Send + 'static {
    let acceptor = Arc::new(Acceptor::new(listener, limits, Shed::Close, &GRPC_COUNTS));
    futures::stream::unfold(acceptor, |acceptor| async move {
        let io = acceptor.accept().await;
        Some((Ok(io), acceptor))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_message_statuses_become_resource_exhausted() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("11"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "Error,%20decoded%20message%20length%20too%20large:%20found%202097162%20bytes,%20the%20limit%20is:%201048576%20bytes",
            ),
        );
        resource_exhausted_for_large_messages(&mut headers);
        assert_eq!(headers["grpc-status"], "8");
        assert_eq!(
            headers["grpc-message"],
            "request message of 2097162 bytes is larger than the limit of 1048576 bytes (--grpc-max-message-bytes)"
        );
        let mut other = http::HeaderMap::new();
        other.insert("grpc-status", http::HeaderValue::from_static("11"));
        other.insert(
            "grpc-message",
            http::HeaderValue::from_static("page out of range"),
        );
        resource_exhausted_for_large_messages(&mut other);
        assert_eq!(other["grpc-status"], "11");
    }

    #[test]
    fn body_deadline_grows_with_what_arrived() {
        let limits = Limits {
            body_read_timeout: Duration::from_secs(10),
            min_body_rate: 1000,
            ..DEFAULT_LIMITS
        };
        let mut body = RateLimited::new((), limits, SlowBody::default());
        let start = body.started;
        assert_eq!(body.deadline(), start + Duration::from_secs(10));
        body.received = 5000;
        assert_eq!(body.deadline(), start + Duration::from_secs(15));
        body.limits.min_body_rate = 0;
        assert_eq!(body.deadline(), start + Duration::from_secs(10));
    }
}
