//! A connection after IMAP COMPRESS: the pump's reads and writes through
//! [`Deflate`](crate::compress::Deflate) (raw DEFLATE both ways over the TLS stream).

use super::stream::Connection;
use crate::compress::Deflate;
use chatmail_core::config::Timeouts;
use std::io;
use std::time::Instant;
use tokio::io::AsyncReadExt;

/// Compressed output written to the peer as soon as this much is ready (a long FETCH
/// streams instead of piling up).
const WRITE_AT: usize = 16 * 1024;

/// Most compressed bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The compression state of one connection and its buffers.
#[derive(Debug)]
pub(crate) struct Deflated {
    codec: Deflate,
    /// Compressed bytes read from the socket; small until a read fills it.
    raw: Vec<u8>,
    /// Compressed bytes not yet written.
    out: Vec<u8>,
}

impl Deflated {
    /// Compression starts: call after the engine's tagged OK was written uncompressed.
    pub(crate) fn new() -> Deflated {
        Deflated {
            codec: Deflate::new(),
            raw: vec![0; 512],
            out: Vec::new(),
        }
    }

    /// Decompressed bytes already held, into `buf`; 0 when none (then
    /// [`Deflated::receive`]). A corrupt stream is an error.
    pub(crate) fn decompress(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.codec
            .decompress(buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Reads the socket's next compressed bytes into the codec; `false` at the end of
    /// the connection. Cancel-safe: the one await is the socket read, into `self`.
    pub(crate) async fn receive(&mut self, conn: &mut Connection) -> io::Result<bool> {
        let n = conn.read(&mut self.raw).await?;
        if n == 0 {
            return Ok(false);
        }
        self.codec.push_received(&self.raw[..n]);
        if n == self.raw.len() && self.raw.len() < READ_CHUNK {
            self.raw.resize(READ_CHUNK, 0);
        }
        Ok(true)
    }

    /// Compresses `bytes` for the peer; writes whenever enough compressed output is
    /// ready (a batch ends with [`Deflated::flush`]). Writes are bounded as
    /// [`Connection::send`] bounds them.
    pub(crate) async fn send(
        &mut self,
        conn: &mut Connection,
        bytes: &[u8],
        timeouts: &Timeouts,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        for piece in bytes.chunks(WRITE_AT) {
            self.codec.compress(piece, &mut self.out);
            if self.out.len() >= WRITE_AT {
                conn.send(&self.out, timeouts, deadline).await?;
                self.out.clear();
            }
        }
        Ok(())
    }

    /// Ends a batch of responses: sync flush, write, and release the compressor and the
    /// output buffer (an idle connection holds neither).
    pub(crate) async fn flush(
        &mut self,
        conn: &mut Connection,
        timeouts: &Timeouts,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        if !self.codec.in_batch() && self.out.is_empty() {
            return Ok(());
        }
        self.codec.flush(&mut self.out);
        let out = std::mem::take(&mut self.out);
        conn.send(&out, timeouts, deadline).await
    }
}
