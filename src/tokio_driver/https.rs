//! The HTTPS listener: [`crate::web::Site`] and `POST /mxdeliv` behind hyper and rustls.

use super::limits::RequestRate;
use super::tls::{TlsConfigs, ACME_TLS_ALPN};
use crate::relay::Relay;
use crate::web::Site;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;

/// How long a client may take for the TLS handshake and its request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// The most bytes hyper buffers for one request head (request line and headers): the
/// relay's requests are a line and a few short headers, and hyper's default (about
/// 400 KB) lets every connection hold far more. Past it: `431` (`414` for the URI).
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How long, and for how many bytes, a refused client's unread request is drained
/// before the socket closes (see [`lingering_close`]).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 1024 * 1024;

/// Serves HTTPS requests on one accepted connection from `peer`.
pub(crate) async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: TlsConfigs,
    relay: Arc<Relay>,
    site: Arc<Site>,
    new_rate: Arc<RequestRate>,
) {
    // A second handle on the socket outlives hyper's, for the lingering close.
    let Some((tcp, linger)) = duplicate(tcp) else {
        return;
    };
    // The ClientHello decides the configuration: a CA's TLS-ALPN-01 validator offers
    // `acme-tls/1` and gets the challenge certificate, everyone else the relay's.
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let acme = start
            .client_hello()
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        let config = if acme {
            tls.challenge.clone()
        } else {
            tls.clients.clone()
        };
        start.into_stream(config).await.map(|stream| (stream, acme))
    };
    let stream = match tokio::time::timeout(HTTP_TIMEOUT, handshake).await {
        Ok(Ok((stream, false))) => stream,
        Ok(Ok((mut stream, true))) => {
            // The validator only checks the certificate (RFC 8737 section 3).
            use tokio::io::AsyncWriteExt;
            let _ = tokio::time::timeout(HTTP_TIMEOUT, stream.shutdown()).await;
            return;
        }
        _ => return,
    };
    let certs = tls.certs.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (relay, site, new_rate) = (relay.clone(), site.clone(), new_rate.clone());
        let self_signed = certs.self_signed();
        async move {
            let response = if req.uri().path() == "/mxdeliv" {
                super::mxdeliv::receive(&relay, req).await
            } else {
                handle(&site, &new_rate, self_signed, peer, req)
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HTTP_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let _ = tokio::time::timeout(HTTP_TIMEOUT * 5, conn).await;
    lingering_close(linger).await;
}

/// The socket as two handles: one for TLS and hyper, one kept for [`lingering_close`].
fn duplicate(tcp: TcpStream) -> Option<(TcpStream, TcpStream)> {
    let std = tcp.into_std().ok()?;
    let copy = std.try_clone().ok()?;
    Some((
        TcpStream::from_std(std).ok()?,
        TcpStream::from_std(copy).ok()?,
    ))
}

/// Closes like nginx's `lingering_close`: hyper answers a request it refuses (`431` for
/// a 100 KB header) before reading all of it, and closing a socket with unread input
/// sends a reset that destroys the answer in the client's buffers. So: end our side
/// (FIN after everything written), then read and drop what the client still sends,
/// within [`LINGER`] and [`LINGER_BYTES`], and only then close.
async fn lingering_close(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut sink = tokio::io::sink();
    let mut unread = (&mut tcp).take(LINGER_BYTES);
    let drain = tokio::io::copy(&mut unread, &mut sink);
    let _ = tokio::time::timeout(LINGER, drain).await;
}

fn handle(
    site: &Site,
    new_rate: &RequestRate,
    self_signed: bool,
    peer: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let is_new = path == "/new" || path == "/cgi-bin/newemail.py";
    let web = if is_new && self_signed && !new_rate.allow(peer.ip(), Instant::now()) {
        crate::web::WebResponse {
            status: 503,
            content_type: "text/plain; charset=utf-8",
            location: None,
            body: b"Too many requests, try again in a second\n".to_vec(),
        }
    } else {
        site.respond(req.method().as_str(), path)
    };
    let mut builder = Response::builder()
        .status(web.status)
        .header("content-type", web.content_type)
        .header("cache-control", "no-store");
    if let Some(location) = &web.location {
        builder = builder.header("location", location.as_str());
    }
    let body = if req.method() == hyper::Method::HEAD {
        Vec::new()
    } else {
        web.body
    };
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::from_static(b"internal error\n")));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}
