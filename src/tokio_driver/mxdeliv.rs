//! `POST /mxdeliv` on the HTTPS listener (spec 3.5): the envelope from the `X-MAIL-FROM`
//! and `X-MAIL-TO` headers, the message from the body, read within the size limit, the
//! relay's memory budget and a deadline; the decision is [`Relay::answer_mxdeliv`]'s.

use crate::relay::{MxDelivAnswer, Relay, MAX_MXDELIV_RECIPIENTS};
use bytes::{Bytes, BytesMut};
use chatmail_core::budget::Reservation;
use chatmail_policy::Reply;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use std::time::Duration;

/// How long a peer may take to send the whole body: the reference's 60 s read timeout,
/// plus the transfer time of `max_message_size` at the relay's minimum rate.
fn body_deadline(relay: &Relay, length: u64) -> Duration {
    relay
        .config()
        .timeouts
        .transfer(length)
        .max(Duration::from_secs(60))
}

/// Answers a request to `/mxdeliv`.
pub(crate) async fn receive(
    relay: &Relay,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST {
        return respond(405, &Reply::new(405, "Method Not Allowed: use POST"), true);
    }
    let headers = req.headers();
    let mut from = headers.get_all("x-mail-from").iter();
    let mail_from = match (from.next(), from.next()) {
        (None, _) => String::new(),
        (Some(v), None) => match v.to_str() {
            Ok(v) => v.to_string(),
            Err(_) => return refused(Reply::new(501, "5.1.7 Bad sender address syntax")),
        },
        (Some(_), Some(_)) => return refused(Reply::new(501, "5.1.7 More than one X-MAIL-FROM")),
    };
    let mut recipients = Vec::new();
    for v in headers.get_all("x-mail-to") {
        if recipients.len() >= MAX_MXDELIV_RECIPIENTS {
            return refused(Reply::new(452, "4.5.3 Error: too many recipients"));
        }
        match v.to_str() {
            Ok(v) => recipients.push(v.to_string()),
            Err(_) => return refused(Reply::new(501, "5.1.3 Bad recipient address syntax")),
        }
    }
    let max = relay.policy().config().max_message_size;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return answer(relay.mxdeliv_too_large());
    }
    let expected = declared.unwrap_or(max);
    let mut reservation = Reservation::new(Some(relay.message_budget().clone()));
    let mut body = req.into_body();
    let mut message = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(None);
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if message.len() as u64 + data.len() as u64 > max {
                return Err(Some(relay.mxdeliv_too_large()));
            }
            if !reservation.grow(data.len() as u64) {
                return Err(Some(MxDelivAnswer {
                    status: 400,
                    reply: Reply::new(452, "4.3.1 Insufficient system resources, try again later"),
                }));
            }
            message.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(body_deadline(relay, expected), read).await {
        Ok(Ok(())) => {}
        Ok(Err(Some(refusal))) => return answer(refusal),
        // A broken or too slow upload: nobody is left to read an answer that matters.
        Ok(Err(None)) | Err(_) => {
            return refused(Reply::new(
                421,
                "4.4.2 Timeout or error reading the message",
            ))
        }
    }
    let answer_ = relay
        .answer_mxdeliv(&mail_from, &recipients, message.freeze())
        .await;
    drop(reservation);
    answer(answer_)
}

fn refused(reply: Reply) -> Response<Full<Bytes>> {
    respond(400, &reply, false)
}

fn answer(a: MxDelivAnswer) -> Response<Full<Bytes>> {
    respond(a.status, &a.reply, false)
}

/// The SMTP reply as the body, one line.
fn respond(status: u16, reply: &Reply, allow_post: bool) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("cache-control", "no-store");
    if allow_post {
        builder = builder.header("allow", "POST");
    }
    builder
        .body(Full::new(Bytes::from(format!("{reply}\n"))))
        .unwrap_or_else(|_| {
            Response::new(Full::new(Bytes::from_static(b"451 4.3.0 Local error\n")))
        })
}
