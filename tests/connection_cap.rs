//! Issue 14: connections on all listeners together are capped (below the descriptor
//! budget; here lower, with `Server::with_max_connections`). A connection beyond the cap
//! is refused at once with its protocol's goodbye on a cleartext port, and the clients
//! already connected never notice: they keep working, and a freed slot is usable again.
#![cfg(feature = "tokio")]

mod support;

use std::time::Duration;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn line(stream: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut l))
        .await
        .expect("a line within 10 s")
        .expect("read");
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_cleanly_and_others_go_on() {
    let relay = memory_relay(config());
    let running = start_with(relay, |server| server.with_max_connections(3)).await;
    let ports = running.ports;

    // Three connections on different listeners take the whole cap.
    let mut imap = BufReader::new(TcpStream::connect(ports.imap).await.unwrap());
    assert!(line(&mut imap).await.starts_with("* OK"));
    let mut smtp = BufReader::new(TcpStream::connect(ports.smtp).await.unwrap());
    assert!(line(&mut smtp).await.starts_with("220 "));
    let mut submission = BufReader::new(TcpStream::connect(ports.submission).await.unwrap());
    assert!(line(&mut submission).await.starts_with("220 "));

    // The fourth is told why, on either protocol, and closed.
    let mut refused = BufReader::new(TcpStream::connect(ports.imap).await.unwrap());
    assert_eq!(
        line(&mut refused).await,
        "* BYE Too many connections, try again later.\r\n"
    );
    assert_eq!(line(&mut refused).await, "", "closed");
    let mut refused = BufReader::new(TcpStream::connect(ports.smtp).await.unwrap());
    assert_eq!(
        line(&mut refused).await,
        "421 4.3.2 Too many connections, try again later\r\n"
    );
    assert_eq!(line(&mut refused).await, "", "closed");

    // The connected clients noticed nothing.
    imap.get_mut().write_all(b"a NOOP\r\n").await.unwrap();
    assert!(line(&mut imap).await.starts_with("a OK"));
    smtp.get_mut()
        .write_all(b"EHLO mx.example.org\r\n")
        .await
        .unwrap();
    assert!(line(&mut smtp).await.starts_with("250"));

    // A slot freed is a slot usable again.
    submission.get_mut().write_all(b"QUIT\r\n").await.unwrap();
    assert!(line(&mut submission).await.starts_with("221"));
    drop(submission);
    let mut again = None;
    for _ in 0..100 {
        let mut c = BufReader::new(TcpStream::connect(ports.imap).await.unwrap());
        if line(&mut c).await.starts_with("* OK") {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "the freed slot was never admitted");
    running.stop().await;
}
