//! Delivery over HTTPS (spec 3.4 step 1, the receiving side is 3.5): one `POST
//! /mxdeliv` with the envelope in headers and the raw message as body.

use super::attempt::{connect_any, sanitize, Attempt};
use bytes::Bytes;
use chatmail_policy::Reply;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_LENGTH, HOST};
use hyper::{Request, StatusCode};
use std::net::IpAddr;
use tokio_rustls::TlsConnector;

/// Most bytes of a response body read: a reply line is short.
const MAX_RESPONSE_BODY: usize = 4096;

/// What became of one `/mxdeliv` POST.
#[derive(Debug)]
pub(super) enum HttpsOutcome {
    /// `2xx`: every recipient delivered.
    Delivered,
    /// The peer refused with an SMTP reply (`400`/`413` with `NNN text`): that reply for
    /// every recipient, no fallback (the peer answered).
    Refused(Reply),
    /// No usable answer (connection, TLS, another status): fall back to SMTP.
    Unavailable(String),
}

/// POSTs the message of `attempt` to `https://<host>:<port>/mxdeliv` on the first of
/// `addresses` that connects; the whole exchange bounded by `io_timeout`.
pub(super) async fn post(
    attempt: &Attempt<'_>,
    host: &str,
    addresses: &[IpAddr],
    port: u16,
    tls: TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
) -> HttpsOutcome {
    let settings = attempt.settings;
    let request = match request(attempt, host) {
        Ok(request) => request,
        Err(e) => return HttpsOutcome::Unavailable(e),
    };
    let exchange = async {
        let tcp = connect_any(addresses, port, settings.connect_timeout).await?;
        let stream = tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(16 * 1024)
            .handshake(io)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        // The connection future does the I/O; it ends with the exchange (dropped at the
        // latest when this future is).
        let driver = async move {
            let _ = connection.await;
        };
        let send = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
            let status = response.status();
            let body = read_bounded(response.into_body()).await;
            Ok::<_, String>((status, body))
        };
        tokio::select! {
            result = send => result,
            _ = driver => Err("HTTP: connection closed".to_string()),
        }
    };
    match tokio::time::timeout(settings.io_timeout, exchange).await {
        Err(_) => HttpsOutcome::Unavailable(format!(
            "HTTPS timed out after {} s",
            settings.io_timeout.as_secs()
        )),
        Ok(Err(e)) => HttpsOutcome::Unavailable(e),
        Ok(Ok((status, body))) => judge(status, &body),
    }
}

/// The POST request: `Host`, `X-MAIL-FROM` (omitted for the null sender), one
/// `X-MAIL-TO` per recipient, the message as body.
fn request(attempt: &Attempt<'_>, host: &str) -> Result<Request<Full<Bytes>>, String> {
    let handover = &attempt.handover;
    let value = |v: &str| {
        HeaderValue::from_bytes(v.as_bytes())
            .map_err(|_| format!("address {v:?} unusable in a header"))
    };
    let authority = match host.trim_end_matches('.').parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host.trim_end_matches('.').to_string(),
    };
    let mut builder = Request::post("/mxdeliv")
        .header(HOST, value(&authority)?)
        .header(CONTENT_LENGTH, handover.message.len());
    if !handover.mail_from.is_empty() {
        builder = builder.header("X-MAIL-FROM", value(handover.mail_from)?);
    }
    for recipient in handover.recipients {
        builder = builder.header("X-MAIL-TO", value(recipient)?);
    }
    builder
        .body(Full::new(handover.message.clone()))
        .map_err(|e| format!("HTTP request: {e}"))
}

/// Reads at most [`MAX_RESPONSE_BODY`] bytes of a response body; what does not arrive
/// (an error mid-way) is simply missing.
async fn read_bounded(mut body: hyper::body::Incoming) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_RESPONSE_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = MAX_RESPONSE_BODY - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            _ => break,
        }
    }
    out
}

/// The outcome a status and body mean.
fn judge(status: StatusCode, body: &[u8]) -> HttpsOutcome {
    if status.is_success() {
        return HttpsOutcome::Delivered;
    }
    if matches!(status.as_u16(), 400 | 413) {
        if let Some(reply) = smtp_reply(body) {
            return HttpsOutcome::Refused(reply);
        }
    }
    HttpsOutcome::Unavailable(format!("HTTPS status {}", status.as_u16()))
}

/// A body that is one SMTP refusal, `NNN text` with a 4xx or 5xx code: its first line,
/// made safe by [`sanitize`].
fn smtp_reply(body: &[u8]) -> Option<Reply> {
    let line = body.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (code, rest) = (line.get(..3)?, line.get(3..)?);
    if !code.iter().all(u8::is_ascii_digit) || !matches!(code[0], b'4' | b'5') {
        return None;
    }
    let code: u16 = std::str::from_utf8(code).ok()?.parse().ok()?;
    let text = match rest.first() {
        None => &[][..],
        Some(b' ' | b'-') => &rest[1..],
        Some(_) => return None,
    };
    Some(Reply::new(code, sanitize(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies_are_judged() {
        assert!(matches!(
            judge(StatusCode::OK, b"250 OK"),
            HttpsOutcome::Delivered
        ));
        match judge(
            StatusCode::BAD_REQUEST,
            b"554 5.7.1 No DKIM signature found\n",
        ) {
            HttpsOutcome::Refused(r) => {
                assert_eq!(
                    (r.code, r.text.as_str()),
                    (554, "5.7.1 No DKIM signature found")
                )
            }
            other => panic!("{other:?}"),
        }
        match judge(
            StatusCode::PAYLOAD_TOO_LARGE,
            b"552 Message exceeds maximum size",
        ) {
            HttpsOutcome::Refused(r) => assert_eq!(r.code, 552),
            other => panic!("{other:?}"),
        }
        for (status, body) in [
            (StatusCode::BAD_REQUEST, &b"bad request"[..]),
            (StatusCode::BAD_REQUEST, b"250 OK"),
            (StatusCode::BAD_REQUEST, b"5541 x"),
            (StatusCode::NOT_FOUND, b"550 no"),
            (StatusCode::METHOD_NOT_ALLOWED, b""),
            (StatusCode::INTERNAL_SERVER_ERROR, b"451 later"),
        ] {
            assert!(
                matches!(judge(status, body), HttpsOutcome::Unavailable(_)),
                "{status} {body:?}"
            );
        }
    }

    #[test]
    fn peer_text_is_bounded_and_printable() {
        let mut body = b"550 \x1b[31mred\x00".to_vec();
        body.extend(std::iter::repeat_n(b'x', 1000));
        let reply = smtp_reply(&body).unwrap();
        assert!(reply.text.starts_with("?[31mred?x"));
        assert_eq!(reply.text.len(), 200);
    }
}
