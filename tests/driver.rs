//! The tokio driver on loopback: every listener answers, plaintext IMAP refuses login
//! before STARTTLS, and shutdown says goodbye to idle sessions (421 / BYE) and returns.
#![cfg(feature = "tokio")]

mod support;

use chatmail::core::account::FixedSystemLimits;
use chatmail::tokio_driver::Server;
use chatmail::Relay;
use std::sync::Arc;
use std::time::Duration;
use support::config;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut l))
        .await
        .expect("reply within 10 s")
        .expect("read");
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_answer_and_shutdown_is_graceful() {
    let data = std::env::temp_dir().join(format!("chatmail-driver-{}", std::process::id()));
    let relay = Relay::builder(config())
        .memory()
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .build()
        .unwrap();
    let server = Server::bind_on_free_ports(Arc::new(relay), &data)
        .await
        .unwrap();
    let ports = server.ports();
    assert!(server.self_signed());
    assert!(ports.smtp.ip().is_loopback() && ports.smtp.port() != 0);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    // Port 25: greeting, STARTTLS offered, VRFY needs TLS first.
    let mut smtp = BufReader::new(TcpStream::connect(ports.smtp).await.unwrap());
    assert!(line(&mut smtp).await.starts_with("220 "));
    smtp.get_mut()
        .write_all(b"EHLO mx.example.org\r\n")
        .await
        .unwrap();
    let mut ehlo = Vec::new();
    loop {
        let l = line(&mut smtp).await;
        ehlo.push(l.clone());
        if l.starts_with("250 ") {
            break;
        }
    }
    assert!(ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
    smtp.get_mut().write_all(b"VRFY someone\r\n").await.unwrap();
    assert!(line(&mut smtp).await.starts_with("530 5.7.0"));

    // Port 143: STARTTLS and LOGINDISABLED before TLS; LOGIN refused.
    let mut imap = BufReader::new(TcpStream::connect(ports.imap).await.unwrap());
    let greeting = line(&mut imap).await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    imap.get_mut().write_all(b"a CAPABILITY\r\n").await.unwrap();
    let caps = line(&mut imap).await;
    for cap in ["STARTTLS", "LOGINDISABLED", "XCHATMAIL", "XDELTAPUSH"] {
        assert!(caps.contains(cap), "{caps}");
    }
    assert!(line(&mut imap).await.starts_with("a OK"));
    imap.get_mut()
        .write_all(b"b LOGIN abcdefghi@_chat.localhost password123\r\n")
        .await
        .unwrap();
    assert!(line(&mut imap).await.starts_with("b NO"));

    // Shutdown: both idle sessions are told goodbye, and run() returns.
    stop_tx.send(()).unwrap();
    assert!(line(&mut smtp).await.starts_with("421 4.3.2"));
    assert!(line(&mut imap).await.starts_with("* BYE"));
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run() returns after shutdown")
        .unwrap();
    // No listener accepts any more.
    assert!(TcpStream::connect(ports.smtp).await.is_err());
    let _ = std::fs::remove_dir_all(&data);
}

/// A configured port of 0 turns that listener off (an operator behind another HTTPS
/// server sets `https_port = 0`); the others listen on their configured ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_of_zero_turns_its_listener_off() {
    let data = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let imaps = free.local_addr().unwrap().port();
    drop(free);
    let mut c = config();
    c.imaps_port = imaps;
    let relay = Relay::builder(c)
        .memory()
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .build()
        .unwrap();
    let server = Server::bind(Arc::new(relay), data.path()).await.unwrap();
    let ports = server.ports();
    assert_eq!(ports.imaps.port(), imaps);
    for off in [
        ports.smtp,
        ports.submission,
        ports.submissions,
        ports.imap,
        ports.https,
    ] {
        assert_eq!(off.port(), 0, "{off} should be off");
    }
}
