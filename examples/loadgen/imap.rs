//! The minimal IMAP client of loadgen: `LOGIN`, `SELECT INBOX`, `IDLE`, then the time
//! of every `* n EXISTS` increase until told to stop, then `DONE` and `LOGOUT`.
//!
//! A hand-written line reader is enough for a test client: it reads only the lines it
//! needs (tagged completions, `+` continuations, `EXISTS`/`EXPUNGE`) and bounds the
//! line length; everything else is skipped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The longest server line accepted, CRLF included.
const MAX_LINE: usize = 64 * 1024;

/// Most arrivals recorded per account: more than any bounded run sends (M ≤ 1,000,000),
/// so a server reporting absurd counts cannot exhaust memory.
const MAX_ARRIVALS: usize = 1_100_000;

/// Where and how to log in.
pub struct ImapTarget {
    /// Address to connect to (`host:port`).
    pub addr: String,
    /// TLS client configuration (implicit TLS).
    pub tls: TlsConnector,
    /// The name the certificate is checked against.
    pub server_name: ServerName<'static>,
    /// Bound on each step (connect, handshake, one command's completion, a write).
    pub io_timeout: Duration,
}

/// One account's IDLE connection, after `+ idling`: ready to record arrivals.
pub struct IdleConnection {
    reader: LineReader,
    /// EXISTS as last reported.
    exists: u32,
    /// Times at which the mailbox grew, one entry per new message.
    arrivals: Vec<Instant>,
    io_timeout: Duration,
}

impl IdleConnection {
    /// Connects, logs in as `login` (created at first login by the relay), selects
    /// INBOX and starts IDLE.
    pub async fn open(
        target: &ImapTarget,
        login: &str,
        password: &str,
    ) -> Result<IdleConnection, String> {
        let t = target.io_timeout;
        let tcp = bounded(t, "connect", TcpStream::connect(&target.addr)).await?;
        let _ = tcp.set_nodelay(true);
        let tls = bounded(
            t,
            "TLS handshake",
            target.tls.connect(target.server_name.clone(), tcp),
        )
        .await?;
        let mut reader = LineReader::new(tls);
        let greeting = bounded(t, "greeting", reader.next_line()).await?;
        if !greeting.starts_with("* OK") {
            return Err(format!("IMAP greeting: {}", greeting.trim_end()));
        }
        reader
            .write(
                t,
                format!("a1 LOGIN \"{login}\" \"{password}\"\r\n").as_bytes(),
            )
            .await?;
        bounded(t, "LOGIN", reader.until_tagged("a1", |_| {})).await?;
        reader.write(t, b"a2 SELECT INBOX\r\n").await?;
        let mut exists = 0u32;
        bounded(
            t,
            "SELECT",
            reader.until_tagged("a2", |line| {
                if let Some(Untagged::Exists(n)) = untagged(line) {
                    exists = n;
                }
            }),
        )
        .await?;
        reader.write(t, b"a3 IDLE\r\n").await?;
        loop {
            let line = bounded(t, "IDLE", reader.next_line()).await?;
            if line.starts_with('+') {
                break;
            }
            if line.starts_with("a3 ") {
                return Err(format!("IDLE refused: {}", line.trim_end()));
            }
        }
        Ok(IdleConnection {
            reader,
            exists,
            arrivals: Vec::new(),
            io_timeout: t,
        })
    }

    /// Records arrivals until `stop` turns true (or its sender goes away), counting
    /// them in `seen`; then `DONE` and `LOGOUT`, each bounded. Returns the arrival
    /// times (one per message, in order) and, if the connection broke, why.
    pub async fn record(
        mut self,
        seen: Arc<AtomicU32>,
        mut stop: watch::Receiver<bool>,
    ) -> (Vec<Instant>, Option<String>) {
        let mut error = None;
        while !*stop.borrow() {
            tokio::select! {
                read = self.reader.fill() => {
                    let now = Instant::now();
                    if let Err(e) = read {
                        error = Some(e);
                        break;
                    }
                    loop {
                        match self.reader.take_line() {
                            Ok(Some(line)) => self.on_line(&line, now, &seen),
                            Ok(None) => break,
                            Err(e) => {
                                error = Some(e);
                                break;
                            }
                        }
                    }
                    if error.is_some() {
                        break;
                    }
                }
                changed = stop.changed() => if changed.is_err() { break },
            }
        }
        if error.is_none() {
            error = self.finish().await.err();
        }
        (self.arrivals, error)
    }

    fn on_line(&mut self, line: &str, now: Instant, seen: &AtomicU32) {
        match untagged(line) {
            Some(Untagged::Exists(n)) => {
                let new = n.saturating_sub(self.exists) as usize;
                let room = MAX_ARRIVALS.saturating_sub(self.arrivals.len());
                self.arrivals
                    .extend(std::iter::repeat_n(now, new.min(room)));
                seen.fetch_add(new.min(room) as u32, Ordering::Relaxed);
                self.exists = n;
            }
            Some(Untagged::Expunge) => self.exists = self.exists.saturating_sub(1),
            None => {}
        }
    }

    /// `DONE`, the IDLE's completion, `LOGOUT`.
    async fn finish(&mut self) -> Result<(), String> {
        let t = self.io_timeout.min(crate::TEARDOWN);
        self.reader.write(t, b"DONE\r\n").await?;
        bounded(t, "DONE", self.reader.until_tagged("a3", |_| {})).await?;
        self.reader.write(t, b"a4 LOGOUT\r\n").await?;
        // The `* BYE` before the tagged OK is LOGOUT's normal answer.
        let logout = self.reader.until_tagged("a4", |_| {});
        match tokio::time::timeout(t, logout).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.starts_with("* BYE") => {}
            Ok(Err(e)) => return Err(format!("LOGOUT: {e}")),
            Err(_) => return Err("LOGOUT: no answer".into()),
        }
        let _ = tokio::time::timeout(t, self.reader.stream.shutdown()).await;
        Ok(())
    }
}

/// The untagged responses that matter here.
enum Untagged {
    Exists(u32),
    Expunge,
}

fn untagged(line: &str) -> Option<Untagged> {
    let rest = line.strip_prefix("* ")?.trim_end();
    let (number, what) = rest.split_once(' ')?;
    let n: u32 = number.parse().ok()?;
    if what.eq_ignore_ascii_case("EXISTS") {
        Some(Untagged::Exists(n))
    } else if what.eq_ignore_ascii_case("EXPUNGE") {
        Some(Untagged::Expunge)
    } else {
        None
    }
}

/// `what` within `t`, its error or timeout as text.
async fn bounded<T, E: std::fmt::Display>(
    t: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(t, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {} s", t.as_secs())),
    }
}

/// Lines from the server, at most [`MAX_LINE`] bytes each.
struct LineReader {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    start: usize,
}

impl LineReader {
    fn new(stream: TlsStream<TcpStream>) -> LineReader {
        LineReader {
            stream,
            buf: Vec::with_capacity(4096),
            start: 0,
        }
    }

    /// Reads once more from the socket (cancel-safe: nothing is lost if dropped).
    async fn fill(&mut self) -> Result<(), String> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() >= MAX_LINE {
            return Err(format!("server line longer than {MAX_LINE} bytes"));
        }
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) => Err("connection closed by the server".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// The next complete line, if one is buffered.
    fn take_line(&mut self) -> Result<Option<String>, String> {
        let unread = &self.buf[self.start..];
        match unread.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = String::from_utf8_lossy(&unread[..=i]).into_owned();
                self.start += i + 1;
                Ok(Some(line))
            }
            None if unread.len() >= MAX_LINE => {
                Err(format!("server line longer than {MAX_LINE} bytes"))
            }
            None => Ok(None),
        }
    }

    async fn next_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(line) = self.take_line()? {
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    /// Reads up to the completion of `tag`, handing every other line to `each`; an
    /// error unless it is `OK`.
    async fn until_tagged(&mut self, tag: &str, mut each: impl FnMut(&str)) -> Result<(), String> {
        loop {
            let line = self.next_line().await?;
            if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                let ok = rest.get(..2).is_some_and(|s| s.eq_ignore_ascii_case("OK"));
                return if ok {
                    Ok(())
                } else {
                    Err(line.trim_end().to_string())
                };
            }
            if line.starts_with("* BYE") {
                // After LOGOUT the tagged OK follows; anywhere else the server is leaving.
                if tag != "a4" {
                    return Err(line.trim_end().to_string());
                }
                continue;
            }
            each(&line);
        }
    }

    async fn write(&mut self, t: Duration, bytes: &[u8]) -> Result<(), String> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        bounded(t, "write", write).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_lines() {
        assert!(matches!(
            untagged("* 7 EXISTS\r\n"),
            Some(Untagged::Exists(7))
        ));
        assert!(matches!(
            untagged("* 3 exists\r\n"),
            Some(Untagged::Exists(3))
        ));
        assert!(matches!(
            untagged("* 2 EXPUNGE\r\n"),
            Some(Untagged::Expunge)
        ));
        assert!(untagged("* 0 RECENT\r\n").is_none());
        assert!(untagged("* OK [UIDVALIDITY 1] x\r\n").is_none());
        assert!(untagged("* -1 EXISTS\r\n").is_none());
        assert!(untagged("a1 OK EXISTS\r\n").is_none());
    }
}
