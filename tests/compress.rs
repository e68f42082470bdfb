//! IMAP COMPRESS=DEFLATE through the tokio driver over TLS: a client that compresses with
//! flate2 (raw DEFLATE, as Delta Chat's async-imap does) logs in, selects, idles, hears
//! of a delivery at once, fetches the message and logs out, every byte after the OK
//! compressed both ways; a corrupt stream ends the connection.
#![cfg(feature = "tokio")]

mod support;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use support::{config, lines_until, start, within, Running};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A client's side of a compressed connection.
struct Deflating<S> {
    io: S,
    deflater: Compress,
    inflater: Decompress,
    /// Decompressed bytes not yet returned as lines.
    plain: Vec<u8>,
    /// Compressed bytes received in all.
    received: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Deflating<S> {
    fn new(io: S) -> Self {
        Deflating {
            io,
            deflater: Compress::new(Compression::default(), false),
            inflater: Decompress::new(false),
            plain: Vec::new(),
            received: 0,
        }
    }

    /// Sends `bytes` compressed, with a sync flush (what a client does per command).
    async fn send(&mut self, mut bytes: &[u8]) {
        let mut out = Vec::new();
        loop {
            out.reserve(bytes.len() + 1024);
            let before = self.deflater.total_in();
            self.deflater
                .compress_vec(bytes, &mut out, FlushCompress::Sync)
                .expect("compress");
            bytes = &bytes[(self.deflater.total_in() - before) as usize..];
            if bytes.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        self.send_raw(&out).await;
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        within(async {
            self.io.write_all(bytes).await.expect("write");
            self.io.flush().await.expect("flush");
        })
        .await
    }

    /// The next decompressed line, `""` at the end of the stream.
    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.plain.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.plain.drain(..=end).collect();
                return String::from_utf8_lossy(&line).into_owned();
            }
            let mut raw = [0u8; 4096];
            // A reset counts as the end of the stream.
            let n: usize = within(self.io.read(&mut raw)).await.unwrap_or_default();
            if n == 0 {
                return String::new();
            }
            self.received += n as u64;
            let mut input = &raw[..n];
            loop {
                self.plain.reserve(16 * 1024);
                let before = self.inflater.total_in();
                self.inflater
                    .decompress_vec(input, &mut self.plain, FlushDecompress::Sync)
                    .expect("the relay's stream decompresses");
                input = &input[(self.inflater.total_in() - before) as usize..];
                if input.is_empty() && self.plain.len() < self.plain.capacity() {
                    break;
                }
            }
        }
    }

    /// Lines up to and including the first that starts with `prefix`.
    async fn until(&mut self, prefix: &str) -> Vec<String> {
        lines_until(async || self.line().await, prefix).await
    }
}

async fn compressing_relay() -> Running {
    let mut c = config();
    c.imap_compress = true;
    start(c).await
}

/// Logs in on 993 and starts compression; the OK comes uncompressed.
async fn logged_in_and_compressed(
    relay: &Running,
    user: &str,
) -> Deflating<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut imap = relay.tls(relay.ports.imaps).await;
    let greeting = imap.line().await;
    assert!(
        greeting.starts_with("* OK") && !greeting.contains("COMPRESS"),
        "{greeting}"
    );
    imap.send(format!("a LOGIN {user} password-1234\r\n").as_bytes())
        .await;
    let login = imap.until("a ").await.concat();
    assert!(
        login.contains("a OK") && login.contains("COMPRESS=DEFLATE"),
        "{login}"
    );
    imap.send(b"z COMPRESS DEFLATE\r\n").await;
    assert_eq!(imap.line().await, "z OK DEFLATE active.\r\n");
    assert!(
        imap.io.buffer().is_empty(),
        "nothing after the OK before a command"
    );
    Deflating::new(imap.io.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_select_idle_fetch_compressed() {
    let relay = compressing_relay().await;
    let user = format!("compress1@{}", support::DOMAIN);
    let mut imap = logged_in_and_compressed(&relay, &user).await;

    imap.send(b"b SELECT INBOX\r\n").await;
    let select = imap.until("b ").await.concat();
    assert!(
        select.contains("* 0 EXISTS") && select.contains("b OK"),
        "{select}"
    );
    // Counted before the first compressed response went out.
    assert_eq!(relay.relay.metrics().imap_compress_sessions(), 1);
    imap.send(b"y COMPRESS DEFLATE\r\n").await;
    assert_eq!(
        imap.line().await,
        "y NO [COMPRESSIONACTIVE] DEFLATE is already active.\r\n"
    );
    imap.send(b"c IDLE\r\n").await;
    imap.until("+ ").await;

    // A delivery reaches the idling client at once: the batch was flushed.
    support::submit_to_self(&relay, &user, "password-1234").await;
    imap.until("* 1 EXISTS").await;

    imap.send(b"DONE\r\n").await;
    imap.until("c OK").await;
    let before = imap.received;
    imap.send(b"d FETCH 1 BODY.PEEK[]\r\n").await;
    let fetched = imap.until("d ").await.concat();
    assert!(fetched.contains("-----BEGIN PGP MESSAGE-----"), "{fetched}");
    assert!(fetched.contains("d OK"), "{fetched}");
    let on_wire = imap.received - before;
    assert!(
        (on_wire as usize) < fetched.len(),
        "compressed {on_wire} bytes for {} plain",
        fetched.len()
    );
    imap.send(b"e LOGOUT\r\n").await;
    let bye = imap.until("e OK").await.concat();
    assert!(bye.contains("* BYE"), "{bye}");
    assert_eq!(imap.line().await, "", "the relay closes after LOGOUT");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_commands_in_one_write_and_large_literals() {
    let relay = compressing_relay().await;
    let user = format!("compress2@{}", support::DOMAIN);
    let mut imap = logged_in_and_compressed(&relay, &user).await;
    // Pipelined commands in one compressed write, then an APPEND with a literal of
    // 200 KB that compresses to little: decompressed in bounded pieces.
    imap.send(b"a NOOP\r\nb SELECT INBOX\r\nc NOOP\r\n").await;
    imap.until("c OK").await;
    let body = format!(
        "Subject: x\r\n\r\n{}\r\n",
        "line of text in a long message\r\n".repeat(6000)
    );
    imap.send(format!("d APPEND INBOX {{{}+}}\r\n", body.len()).as_bytes())
        .await;
    imap.send(body.as_bytes()).await;
    imap.send(b"\r\n").await;
    let append = imap.until("d ").await.concat();
    assert!(append.contains("d OK"), "{append}");
    // The delivery is announced by the next command; then the whole message comes back.
    imap.send(b"e NOOP\r\n").await;
    imap.until("e OK").await;
    imap.send(b"f FETCH 1 BODY.PEEK[]\r\n").await;
    let fetched = imap.until("f ").await.concat();
    assert!(
        fetched.contains("f OK") && fetched.contains(&body),
        "{append} {fetched}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stream_ends_the_connection() {
    let relay = compressing_relay().await;
    let user = format!("compress3@{}", support::DOMAIN);
    let mut imap = logged_in_and_compressed(&relay, &user).await;
    // Uncompressed bytes where compressed ones belong: BTYPE 3 is invalid.
    imap.send_raw(b"\xff\xff\xff\xff a NOOP\r\n").await;
    assert_eq!(imap.line().await, "", "the relay closes a corrupt stream");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_offered_by_default() {
    let relay = start(config()).await;
    let mut imap = relay.tls(relay.ports.imaps).await;
    imap.line().await;
    let user = format!("compress4@{}", support::DOMAIN);
    imap.send(format!("a LOGIN {user} password-1234\r\n").as_bytes())
        .await;
    let login = imap.until("a ").await.concat();
    assert!(
        login.contains("a OK") && !login.contains("COMPRESS"),
        "{login}"
    );
    imap.send(b"z COMPRESS DEFLATE\r\n").await;
    assert!(imap.line().await.starts_with("z BAD"));
    imap.send(b"b NOOP\r\n").await;
    assert!(imap.line().await.starts_with("b OK"), "still plain");
    assert_eq!(relay.relay.metrics().imap_compress_sessions(), 0);
    relay.stop().await;
}
