//! The operator's Prometheus endpoint (`metrics_listen`) on a relay on loopback: real
//! clients create accounts and submit mail, and `/metrics` read over HTTP before and
//! after shows exactly those increments under the reference's mtail names.
#![cfg(feature = "tokio")]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{encrypted_data, plain, within, Running, DOMAIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "metrics-test-password";

/// One HTTP/1.1 request to `path` on `addr`; returns the status code, the
/// `content-type` and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut tcp = within(TcpStream::connect(addr)).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n");
    within(tcp.write_all(request.as_bytes()))
        .await
        .expect("write");
    let mut raw = Vec::new();
    within(tcp.read_to_end(&mut raw)).await.expect("read");
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// The samples of `/metrics`: name with labels to value.
async fn scrape(relay: &Running) -> HashMap<String, f64> {
    let (status, content_type, body) = http_get(relay.ports.metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// Scrapes until `name` has `value` (a gauge the driver updates just after the client
/// saw its answer); fails after 10 s.
async fn wait_for(relay: &Running, name: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = scrape(relay).await.get(name).copied();
        if got == Some(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {got:?}, not {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A submission session logged in as `user` (the login creates the account).
async fn submission(
    relay: &Running,
    user: &str,
) -> support::Peer<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut smtp = relay.tls(relay.ports.submissions).await;
    smtp.until("220 ").await;
    smtp.send(b"EHLO client.example\r\n").await;
    smtp.until("250 ").await;
    smtp.send(format!("AUTH PLAIN {}\r\n", plain(user, PASSWORD)).as_bytes())
        .await;
    let reply = smtp.line().await;
    assert!(reply.starts_with("235 "), "{reply}");
    smtp
}

/// Sends one message in a transaction of its own; returns the final reply.
async fn send(
    smtp: &mut support::Peer<tokio_rustls::client::TlsStream<TcpStream>>,
    from: &str,
    to: &str,
    data: &[u8],
) -> String {
    smtp.send(format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes())
        .await;
    for expected in ["250 ", "250 ", "354 "] {
        let reply = smtp.line().await;
        assert!(reply.starts_with(expected), "{reply}");
    }
    smtp.send(data).await;
    smtp.line().await
}

#[tokio::test]
async fn metrics_show_exactly_the_accounts_and_messages_of_the_clients() {
    let mut config = support::config();
    config.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let relay = support::start(config).await;
    assert_ne!(relay.ports.metrics.port(), 0, "metrics_listen is bound");

    let before = scrape(&relay).await;
    let alice = format!("ci-metric@{DOMAIN}");
    let bob = format!("metricbob@{DOMAIN}");
    let mut smtp = submission(&relay, &alice).await;
    drop(submission(&relay, &bob).await);
    for _ in 0..3 {
        let reply = send(&mut smtp, &alice, &bob, &encrypted_data(&alice, &bob)).await;
        assert!(reply.starts_with("250 "), "{reply}");
    }
    let cleartext =
        format!("From: <{alice}>\r\nTo: <{bob}>\r\nSubject: hi\r\n\r\nnot encrypted\r\n.\r\n");
    let reply = send(&mut smtp, &alice, &bob, cleartext.as_bytes()).await;
    assert!(reply.starts_with("523 "), "{reply}");
    smtp.send(b"QUIT\r\n").await;
    smtp.until("221 ").await;
    let after = scrape(&relay).await;

    let delta = |name: &str| {
        let get = |m: &HashMap<String, f64>| *m.get(name).unwrap_or_else(|| panic!("{name}"));
        get(&after) - get(&before)
    };
    for (name, expected) in [
        ("created_accounts", 2.0),
        ("created_ci_accounts", 1.0),
        ("created_nonci_accounts", 1.0),
        ("rejected_registrations", 0.0),
        ("filtered_outgoing_mail_count", 4.0),
        ("outgoing_encrypted_mail_count", 3.0),
        ("outgoing_unencrypted_mail_count", 1.0),
        ("rejected_unencrypted_mail_count", 1.0),
        ("filtered_incoming_mail_count", 0.0),
        ("incoming_encrypted_mail_count", 0.0),
        ("delivered_mail", 3.0),
        ("quota_exceeded", 0.0),
        ("dkim_signed", 0.0),
        ("chatmail_local_delivery_seconds_count", 3.0),
    ] {
        assert_eq!(delta(name), expected, "{name}");
    }

    // The gauges: an IMAP client in IDLE on 993.
    let mut imap = relay.tls(relay.ports.imaps).await;
    assert!(imap.line().await.starts_with("* OK"));
    imap.send(format!("a LOGIN {bob} {PASSWORD}\r\n").as_bytes())
        .await;
    imap.until("a OK").await;
    imap.send(b"b SELECT INBOX\r\nc IDLE\r\n").await;
    imap.until("+ ").await;
    wait_for(&relay, "chatmail_imap_idle_sessions", 1.0).await;
    wait_for(&relay, "chatmail_open_connections{port=\"imaps\"}", 1.0).await;
    imap.send(b"DONE\r\n").await;
    imap.until("c OK").await;
    wait_for(&relay, "chatmail_imap_idle_sessions", 0.0).await;
    drop(imap);
    wait_for(&relay, "chatmail_open_connections{port=\"imaps\"}", 0.0).await;

    let (status, _, _) = http_get(relay.ports.metrics, "/").await;
    assert_eq!(status, 404);
    let (status, _, _) = http_get(relay.ports.metrics, "/metrics/x").await;
    assert_eq!(status, 404);
    relay.stop().await;
}

#[tokio::test]
async fn without_metrics_listen_nothing_listens() {
    let relay = support::start(support::config()).await;
    assert_eq!(relay.ports.metrics.port(), 0);
    relay.stop().await;
}
