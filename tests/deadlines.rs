//! The driver's deadlines on loopback, with short configured values: a STARTTLS
//! handshake that never comes, clients dripping bytes before login, peers that never
//! read, per-IP connection limits, and the shared message budget over the wire.
#![cfg(feature = "tokio")]

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SLACK: Duration = Duration::from_millis(2500);

/// Reads until the relay closes; returns when (after `since`) and what it said last.
async fn closed<S>(peer: &mut Peer<S>, since: Instant) -> (Duration, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut last = String::new();
    loop {
        let line = peer.line().await;
        if line.is_empty() {
            return (since.elapsed(), last);
        }
        last = line;
    }
}

fn assert_near(took: Duration, deadline: Duration, what: &str) {
    assert!(
        took + Duration::from_millis(100) >= deadline && took <= deadline + SLACK,
        "{what}: closed after {took:?}, deadline {deadline:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_then_nothing_is_dropped_at_the_handshake_deadline() {
    let mut config = config();
    config.timeouts.tls_handshake = Duration::from_secs(1);
    let handshake = config.timeouts.tls_handshake;
    let relay = start(config).await;

    let mut smtp = Peer::new(TcpStream::connect(relay.ports.submission).await.unwrap());
    smtp.until("220 ").await;
    smtp.send(b"EHLO client.example\r\n").await;
    smtp.until("250 ").await;
    smtp.send(b"STARTTLS\r\n").await;
    assert!(smtp.line().await.starts_with("220 "));
    let (took, _) = closed(&mut smtp, Instant::now()).await;
    assert_near(took, handshake, "587 after STARTTLS");

    let mut imap = Peer::new(TcpStream::connect(relay.ports.imap).await.unwrap());
    imap.until("* OK").await;
    imap.send(b"a STARTTLS\r\n").await;
    imap.until("a OK").await;
    let (took, _) = closed(&mut imap, Instant::now()).await;
    assert_near(took, handshake, "143 after STARTTLS");

    for port in [relay.ports.imaps, relay.ports.submissions] {
        let since = Instant::now();
        let mut silent = Peer::new(TcpStream::connect(port).await.unwrap());
        let (took, _) = closed(&mut silent, since).await;
        assert_near(took, handshake, "implicit TLS, silent");
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_before_login_is_dropped_at_the_login_deadline() {
    let mut config = config();
    config.timeouts.login = Duration::from_secs(2);
    config.timeouts.command = Duration::from_secs(2);
    config.timeouts.smtp_session = Duration::from_secs(3);
    let relay = start(config).await;

    // Whole commands, one byte every 100 ms: busy, never logged in.
    for (port, script, goodbye) in [
        (relay.ports.imap, &b"a NOOP\r\n"[..], "* BYE"),
        (relay.ports.submission, &b"NOOP\r\n"[..], "421 4.4.2"),
    ] {
        let since = Instant::now();
        let tcp = TcpStream::connect(port).await.unwrap();
        let (read, mut write) = tokio::io::split(tcp);
        let script = script.repeat(20);
        let dripper = tokio::spawn(async move {
            for byte in script {
                if write.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut reader = Peer::new(tokio::io::join(read, tokio::io::sink()));
        let (took, last) = closed(&mut reader, since).await;
        assert_near(took, Duration::from_secs(2), "dripping before login");
        assert!(last.starts_with(goodbye), "{last}");
        dripper.abort();
    }

    // Port 25: a line that never ends is cut at the command deadline; whole commands
    // at the session deadline.
    let since = Instant::now();
    let mut mx = Peer::new(TcpStream::connect(relay.ports.smtp).await.unwrap());
    mx.until("220 ").await;
    mx.send(b"EHLO cli").await;
    let (took, last) = closed(&mut mx, since).await;
    assert_near(took, Duration::from_secs(2), "port 25, unfinished line");
    assert!(last.starts_with("421 4.4.2"), "{last}");
    let since = Instant::now();
    let mut mx = Peer::new(TcpStream::connect(relay.ports.smtp).await.unwrap());
    mx.until("220 ").await;
    for _ in 0..5 {
        mx.send(b"NOOP\r\n").await;
        if !mx.line().await.starts_with("250 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (took, last) = closed(&mut mx, since).await;
    assert_near(took, Duration::from_secs(3), "port 25 session");
    assert!(last.starts_with("421 4.4.2"), "{last}");
    relay.stop().await;
}

/// Pipelines `count` copies of `command` from a client at `from` that never reads, then
/// checks that the relay dropped it by `deadline` (plus slack): with one IMAP connection
/// allowed per IP, a new one from `from` is let in only once the first is gone. (Whether
/// the peer sees the end does not tell: once it reads, the engine's own deadlines would
/// close it too; while the driver is stuck in a write, they cannot.)
async fn never_reads<S>(
    relay: &Running,
    from: IpAddr,
    stream: S,
    command: &[u8],
    deadline: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (read, mut write) = tokio::io::split(stream);
    // 100 000 commands: megabytes of answers, more than the socket buffers hold.
    let script = command.repeat(100_000);
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&script).await;
    });
    tokio::time::sleep(deadline + SLACK).await;
    let mut again = Peer::new(connect_from(from, relay.ports.imap).await.unwrap());
    let greeting = again.line().await;
    assert!(
        greeting.starts_with("* OK"),
        "the relay still serves the peer that does not read ({greeting:?})"
    );
    writer.abort();
    drop(read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_dropped() {
    // Before login: the login deadline bounds the writes too (the minimum rate alone
    // would give it minutes here).
    let mut pre_login = config();
    pre_login.timeouts.login = Duration::from_secs(2);
    pre_login.max_imap_connections_per_ip = Some(1);
    let relay = start(pre_login).await;
    let from: IpAddr = "127.0.0.4".parse().unwrap();
    let tcp = connect_small_window(from, relay.ports.imap).await;
    never_reads(
        &relay,
        from,
        tcp,
        b"a CAPABILITY\r\n",
        Duration::from_secs(2),
    )
    .await;
    relay.stop().await;

    // Logged in: the writes must go at the minimum rate after the head start (a high
    // rate and a short head start for the test).
    let mut logged_in = config();
    logged_in.timeouts.command = Duration::from_secs(1);
    logged_in.timeouts.min_transfer_rate = 5_000_000;
    logged_in.max_imap_connections_per_ip = Some(1);
    let relay = start(logged_in).await;
    let from: IpAddr = "127.0.0.5".parse().unwrap();
    let tcp = connect_small_window(from, relay.ports.imaps).await;
    let mut imap = relay.tls_over(tcp).await;
    imap.until("* OK").await;
    imap.send(b"a LOGIN abcdefghi@_chat.localhost password123\r\n")
        .await;
    imap.until("a OK").await;
    let stream = imap.io.into_inner();
    never_reads(
        &relay,
        from,
        stream,
        b"b CAPABILITY\r\n",
        Duration::from_secs(2),
    )
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limits_refuse_beyond_the_limit() {
    let mut config = config();
    config.max_imap_connections_per_ip = Some(3);
    config.max_smtp_connections_per_ip = Some(2);
    let relay = start(config).await;
    let a: IpAddr = "127.0.0.2".parse().unwrap();
    let b: IpAddr = "127.0.0.3".parse().unwrap();

    // IMAP: 143 and 993 share the per-IP limit.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut p = Peer::new(connect_from(a, relay.ports.imap).await.unwrap());
        assert!(p.line().await.starts_with("* OK"));
        held.push(p);
    }
    let tcp = connect_from(a, relay.ports.imaps).await.unwrap();
    let mut tls = relay.tls_over(tcp).await;
    assert!(tls.line().await.starts_with("* OK"));
    let mut refused = Peer::new(connect_from(a, relay.ports.imap).await.unwrap());
    assert_eq!(
        refused.line().await,
        "* BYE Too many connections, try again later.\r\n",
        "a fourth connection from one IP"
    );
    assert_eq!(refused.line().await, "", "then closed");
    let mut other = Peer::new(connect_from(b, relay.ports.imap).await.unwrap());
    assert!(other.line().await.starts_with("* OK"), "another IP");
    // A slot comes back when a connection ends.
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut p = Peer::new(connect_from(a, relay.ports.imap).await.unwrap());
        if p.line().await.starts_with("* OK") {
            again = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "the freed slot is usable");

    // SMTP: per port.
    let mut smtp = Vec::new();
    for _ in 0..2 {
        let mut p = Peer::new(connect_from(a, relay.ports.submission).await.unwrap());
        assert!(p.line().await.starts_with("220 "));
        smtp.push(p);
    }
    let mut refused = Peer::new(connect_from(a, relay.ports.submission).await.unwrap());
    assert_eq!(
        refused.line().await,
        "421 4.3.2 Too many connections, try again later\r\n",
        "a third submission connection from one IP"
    );
    assert_eq!(refused.line().await, "", "then closed");
    let mut mx = Peer::new(connect_from(a, relay.ports.smtp).await.unwrap());
    assert!(
        mx.line().await.starts_with("220 "),
        "port 25 has its own count"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_budget_refuses_over_the_wire() {
    let mut config = config();
    config.max_message_memory_mb = 1;
    let relay = start(config).await;
    let user = "budget123@_chat.localhost";
    let mut smtp = relay.tls(relay.ports.submissions).await;
    smtp.until("220 ").await;
    smtp.send(b"EHLO client.example\r\n").await;
    smtp.until("250 ").await;
    smtp.send(format!("AUTH PLAIN {}\r\n", plain(user, "password123")).as_bytes())
        .await;
    assert!(smtp.line().await.starts_with("235 "));
    let envelope = format!("MAIL FROM:<{user}>\r\nRCPT TO:<{user}>\r\nDATA\r\n");
    smtp.send(envelope.as_bytes()).await;
    smtp.until("354 ").await;
    let line = [b'x'; 78]
        .iter()
        .chain(b"\r\n")
        .copied()
        .collect::<Vec<u8>>();
    let big = line.repeat(20_000); // 1.6 MB, over the 1 MB budget
    smtp.send(&big).await;
    smtp.send(b".\r\n").await;
    let reply = smtp.line().await;
    assert!(reply.starts_with("452 4.3.1"), "{reply}");
    assert_eq!(relay.relay.message_budget().used(), 0);
    // Given back: the next message fits.
    smtp.send(envelope.as_bytes()).await;
    smtp.until("354 ").await;
    smtp.send(&encrypted_data(user, user)).await;
    let reply = smtp.line().await;
    assert!(reply.starts_with("250 "), "{reply}");
    relay.stop().await;
}
