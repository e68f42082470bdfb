//! The operator's Prometheus endpoint on `metrics_listen`: plain HTTP, `GET /metrics`
//! answers [`Relay::render_metrics`]; every other path is `404`. Bounded as the HTTPS
//! listener is (request head size, timeouts) and by a connection limit of its own:
//! a scraper needs one connection.

use crate::relay::Relay;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a scraper may take to send its request; a connection lives at most five
/// times that.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes of one request head (a scraper sends a line and a few headers).
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Connections open at once, in all and per client IP.
pub(super) const MAX_CONNECTIONS: u32 = 16;
pub(super) const MAX_CONNECTIONS_PER_IP: u32 = 8;

/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves the metrics requests of one accepted connection.
pub(super) async fn serve_connection(tcp: TcpStream, relay: Arc<Relay>) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let relay = relay.clone();
        async move { Ok::<_, std::convert::Infallible>(respond(&relay, &req)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HTTP_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
    let _ = tokio::time::timeout(HTTP_TIMEOUT * 5, conn).await;
}

fn respond<B>(relay: &Relay, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.uri().path(), req.method()) {
        ("/metrics", &Method::GET | &Method::HEAD) => {
            (StatusCode::OK, CONTENT_TYPE, relay.render_metrics())
        }
        ("/metrics", _) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".to_string(),
        ),
    };
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
