//! A second driver, the proof that any runtime can assemble the server: blocking
//! `std::net` sockets, one thread per connection, `futures::executor::block_on` for the
//! relay's answers, rustls' blocking `StreamOwned` for implicit TLS. [`drive`] is the
//! whole driver (the drive loop of `chatmail_core::engine`); it runs the SMTP and the
//! IMAP engine alike. The test sends a message through it and sees it reach an IDLE
//! session as `* N EXISTS`. (The test borrows the tokio driver's certificate helper and
//! the shared test support, hence the feature; `drive` itself uses no tokio.)
#![cfg(feature = "tokio")]

mod support;

use chatmail::core::engine::{Engine, Output};
use chatmail::core::store::ChangeSubscription;
use chatmail::imap::Session;
use chatmail::smtp::server::{Role, ServerSession, Transport};
use chatmail::{Relay, RequestHandler};
use futures::executor::block_on;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a read waits before the driver looks at the feed and the timer again.
const TICK: Duration = Duration::from_millis(5);

/// Serves one connection with `engine` until it closes or the peer leaves.
fn drive<E, S>(relay: &Relay, mut engine: E, mut stream: S, peer: IpAddr)
where
    E: Engine,
    S: Read + Write,
    Relay: RequestHandler<E>,
{
    let mut feed: Option<ChangeSubscription> = None;
    let mut buf = [0u8; 16 * 1024];
    loop {
        while let Some(output) = engine.poll() {
            match output {
                Output::Send(bytes) => {
                    if stream
                        .write_all(&bytes)
                        .and_then(|()| stream.flush())
                        .is_err()
                    {
                        return;
                    }
                }
                Output::Request(id, request) => {
                    let answer = block_on(relay.handle(request, Some(peer)));
                    engine
                        .answer(id, answer, Instant::now())
                        .expect("answers fit");
                }
                // This driver serves implicit TLS only.
                Output::StartTls => return,
                // Nor does it compress (the relay's default offers no COMPRESS).
                Output::StartDeflate => return,
                Output::Subscribe(account) => feed = Some(relay.subscribe(&account)),
                Output::Event(_) => {}
                Output::Close => return,
            }
        }
        if let Some(change) = feed.as_mut().and_then(ChangeSubscription::try_next) {
            engine.handle_change(change, Instant::now());
            continue;
        }
        if engine.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            engine.handle_timeout(Instant::now());
            continue;
        }
        if !engine.wants_input() {
            std::thread::sleep(TICK);
            continue;
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => engine.feed(&buf[..n], Instant::now()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// Accepts connections on a free loopback port; each gets TLS and a fresh engine.
fn listen<E: Engine + Send + 'static>(
    relay: Arc<Relay>,
    tls: Arc<rustls::ServerConfig>,
    engine: impl Fn(&Relay) -> E + Send + 'static,
) -> u16
where
    Relay: RequestHandler<E>,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (relay, tls) = (relay.clone(), tls.clone());
            let session = engine(&relay);
            std::thread::spawn(move || {
                let peer = tcp.peer_addr().expect("peer").ip();
                tcp.set_read_timeout(Some(TICK)).expect("timeout");
                let conn = rustls::ServerConnection::new(tls).expect("TLS");
                drive(&relay, session, rustls::StreamOwned::new(conn, tcp), peer);
            });
        }
    });
    port
}

/// A blocking TLS client of `port`, reading lines.
struct Client(BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>);

impl Client {
    fn connect(port: u16, tls: &Arc<rustls::ClientConfig>) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let name = "localhost".try_into().expect("name");
        let conn = rustls::ClientConnection::new(tls.clone(), name).expect("TLS");
        Client(BufReader::new(rustls::StreamOwned::new(conn, tcp)))
    }

    fn send(&mut self, text: &str) {
        let stream = self.0.get_mut();
        stream.write_all(text.as_bytes()).expect("write");
        stream.flush().expect("flush");
    }

    /// Reads lines up to and including the first that starts with `prefix`.
    fn until(&mut self, prefix: &str) -> String {
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.0.read_line(&mut line).expect("read") > 0,
                "EOF: {seen}"
            );
            seen.push_str(&line);
            if line.starts_with(prefix) {
                return seen;
            }
        }
    }
}

#[test]
fn a_blocking_driver_serves_smtp_and_imap_through_the_same_contract() {
    let data = tempfile::tempdir().expect("temp dir");
    let config = support::config();
    let tls = chatmail::tokio_driver::tls::load_or_create(&config, data.path()).expect("TLS");
    let relay = support::memory_relay(config);
    let smtp = listen(relay.clone(), tls.clients.clone(), |relay: &Relay| {
        let config = Arc::new(relay.smtp_config(Role::Submission));
        ServerSession::new(
            config,
            relay.policy().clone(),
            Transport::Tls,
            Instant::now(),
        )
    });
    let imap = listen(relay.clone(), tls.clients.clone(), |relay: &Relay| {
        Session::new(Arc::new(relay.imap_config(true)), Instant::now())
    });
    let client_tls = support::client_tls_config(support::relay_certificate(data.path()));
    let user = format!("blocking1@{}", support::DOMAIN);
    let password = "a-long-enough-password";

    let mut bob = Client::connect(imap, &client_tls);
    bob.until("* OK");
    bob.send(&format!("a LOGIN {user} {password}\r\nb SELECT INBOX\r\n"));
    bob.until("b OK");
    bob.send("c IDLE\r\n");
    bob.until("+ ");

    let mut alice = Client::connect(smtp, &client_tls);
    alice.until("220 ");
    alice.send("EHLO client.example\r\n");
    alice.until("250 ");
    alice.send(&format!(
        "AUTH PLAIN {}\r\n",
        support::plain(&user, password)
    ));
    assert!(alice.until("2").starts_with("235 "));
    alice.send(&format!(
        "MAIL FROM:<{user}>\r\nRCPT TO:<{user}>\r\nDATA\r\n"
    ));
    alice.until("354 ");
    alice.send(&String::from_utf8(support::encrypted_data(&user, &user)).expect("text"));
    assert!(alice.until("250 ").contains("250 2.0.0 Ok"));

    // The delivery reaches the idling session through the feed the engine subscribed to.
    bob.until("* 1 EXISTS");
    bob.send("DONE\r\nd FETCH 1 BODY.PEEK[]\r\n");
    let fetched = bob.until("d OK");
    assert!(fetched.contains("-----BEGIN PGP MESSAGE-----"), "{fetched}");
    alice.send("QUIT\r\n");
    alice.until("221 ");
    bob.send("e LOGOUT\r\n");
    bob.until("e OK");
}
