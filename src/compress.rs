//! The transport side of IMAP COMPRESS=DEFLATE (RFC 4978) for any driver: raw DEFLATE
//! (RFC 1951, no zlib header) both ways on one connection, after the engine's
//! [`Output::StartDeflate`](chatmail_core::engine::Output::StartDeflate).
//!
//! [`Deflate`] owns no socket. The driver hands it what it reads from the peer
//! ([`Deflate::push_received`]) and takes the plain bytes out in pieces of its own size
//! ([`Deflate::decompress`]) for [`Engine::feed`]; it compresses what the engine sends
//! ([`Deflate::compress`]) and ends each batch of responses with [`Deflate::flush`], a
//! sync flush, so the client can decode every response at once (an IDLE update is never
//! held back in the compressor).
//!
//! # Bounds
//!
//! * Decompression: output comes only in the caller's buffer, never more than it asks
//!   for; the driver asks while the engine [wants input][`Engine::wants_input`], and reads
//!   the socket again only once [`Deflate::wants_received`]. A small input that inflates
//!   to gigabytes (a decompression bomb) is held as that small input, not as its output.
//! * Memory per connection: the inflater must keep the client's window (up to 32 KiB,
//!   RFC 1951), about 40 KiB with its state, for the whole connection. The compressor
//!   (about 370 KiB with zlib-rs at the default window and memory level) exists only
//!   while a batch of responses is being written: [`Deflate::flush`] ends the batch with
//!   a sync flush and drops it, and the next batch starts a new one. The DEFLATE stream
//!   stays valid: after a sync flush the stream is at a block boundary, and a new
//!   compressor only loses back-references into earlier batches, which the format never
//!   requires. An idle connection therefore holds no compressor at all. Released
//!   compressors wait, reset, in a small process-wide pool ([`SPARE_COMPRESSORS`]) for
//!   the next batch of any connection: allocating and freeing 370 KiB per batch would
//!   fragment the heap (glibc's malloc then keeps about one compressor's worth of memory
//!   per connection; BENCHMARKS.md), and only as many compressors are in use at once as
//!   batches are being written.
//!
//! [`Engine::feed`]: chatmail_core::engine::Engine::feed
//! [`Engine::wants_input`]: chatmail_core::engine::Engine::wants_input
//! [`Engine`]: chatmail_core::engine::Engine

use std::sync::{Mutex, PoisonError};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Bytes of compressed output made room for at a time while compressing.
const OUT_STEP: usize = 8 * 1024;

/// Most compressors kept between batches for any connection (about 370 KiB each).
pub const SPARE_COMPRESSORS: usize = 16;

/// Compressors between batches, reset, shared by every connection of the process.
static SPARE: Mutex<Vec<Compress>> = Mutex::new(Vec::new());

/// A compressor for a new batch: a spare one, or a new one.
fn take_compressor() -> Compress {
    let spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner).pop();
    spare.unwrap_or_else(|| Compress::new(Compression::default(), false))
}

/// Keeps a compressor whose batch ended for the next one, unless enough are kept.
fn give_back(mut compressor: Compress) {
    compressor.reset();
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    if spare.len() < SPARE_COMPRESSORS {
        spare.push(compressor);
    }
}

/// The stream from the peer cannot be decompressed: the connection is over (nothing
/// sensible can be said to the peer, whose next bytes would be as unreadable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateError {
    /// The peer's bytes are not a valid raw DEFLATE stream (a pipelined command after
    /// COMPRESS, a zlib header, garbage).
    #[error("invalid DEFLATE stream from the peer")]
    Corrupt,
    /// The peer ended its DEFLATE stream (a final block) and sent more after it.
    #[error("data after the end of the peer's DEFLATE stream")]
    AfterEnd,
}

/// Raw DEFLATE on one connection, both directions (see the [module docs](self)).
pub struct Deflate {
    inflater: Decompress,
    /// Received bytes not yet decompressed; empty but for a read whose output did not
    /// fit the caller's buffer.
    received: Vec<u8>,
    /// How much of `received` the inflater consumed.
    consumed: usize,
    /// The last decompression filled the caller's buffer: the inflater may hold more
    /// output (the rest of a long match) even without input.
    more: bool,
    /// The peer's stream ended (a final block).
    ended: bool,
    /// The compressor of the batch being written; `None` between batches.
    deflater: Option<Compress>,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("received", &(self.received.len() - self.consumed))
            .field("in_batch", &self.deflater.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate::new()
    }
}

impl Deflate {
    /// Starts both directions; call right after the engine's tagged OK went out
    /// uncompressed.
    pub fn new() -> Deflate {
        Deflate {
            // The client's window may be the largest DEFLATE has (32 KiB): accept it.
            inflater: Decompress::new(false),
            received: Vec::new(),
            consumed: 0,
            more: false,
            ended: false,
            deflater: None,
        }
    }

    /// Whether everything received is decompressed and handed out: only then read the
    /// socket again (and [`Deflate::push_received`] what came).
    pub fn wants_received(&self) -> bool {
        self.consumed == self.received.len() && !self.more
    }

    /// Input: bytes read from the peer, compressed. Call when
    /// [`Deflate::wants_received`]; what was still held stays in front of them.
    pub fn push_received(&mut self, bytes: &[u8]) {
        if self.consumed == self.received.len() {
            self.received.clear();
            self.consumed = 0;
        }
        self.received.extend_from_slice(bytes);
    }

    /// Output: decompressed bytes into `out`, at most `out.len()`. `Ok(0)`: everything
    /// received is used up ([`Deflate::wants_received`] is then true); read the socket.
    pub fn decompress(&mut self, out: &mut [u8]) -> Result<usize, DeflateError> {
        if out.is_empty() {
            return Ok(0);
        }
        let mut produced = 0;
        while produced < out.len() && !self.wants_received() {
            if self.ended {
                return Err(DeflateError::AfterEnd);
            }
            let (in_before, out_before) = (self.inflater.total_in(), self.inflater.total_out());
            let status = self
                .inflater
                .decompress(
                    &self.received[self.consumed..],
                    &mut out[produced..],
                    FlushDecompress::None,
                )
                .map_err(|_| DeflateError::Corrupt)?;
            let used = (self.inflater.total_in() - in_before) as usize;
            let made = (self.inflater.total_out() - out_before) as usize;
            self.consumed += used;
            produced += made;
            self.more = produced == out.len();
            match status {
                Status::StreamEnd => {
                    self.ended = true;
                    self.more = false;
                }
                // No progress with input left and room for output cannot happen with a
                // valid stream; never spin on it.
                Status::Ok | Status::BufError if used == 0 && made == 0 => {
                    if self.consumed < self.received.len() {
                        return Err(DeflateError::Corrupt);
                    }
                    self.more = false;
                }
                Status::Ok | Status::BufError => {}
            }
        }
        if self.consumed == self.received.len() && self.received.capacity() > 4 * 1024 {
            // An idle connection keeps no read-sized buffer.
            self.received = Vec::new();
            self.consumed = 0;
        }
        Ok(produced)
    }

    /// Output: compresses `bytes` to send, appending to `out` (what fits the compressor's
    /// state stays in it until more comes or [`Deflate::flush`]). The caller writes `out`
    /// to the peer whenever it likes; bytes come out in order.
    pub fn compress(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        let deflater = self.deflater.get_or_insert_with(take_compressor);
        while !bytes.is_empty() {
            out.reserve(OUT_STEP);
            let before = deflater.total_in();
            // A raw DEFLATE compressor only fails on misuse (a finished stream); its
            // output is then nothing, and the loop ends on the next check.
            if deflater
                .compress_vec(bytes, out, FlushCompress::None)
                .is_err()
            {
                return;
            }
            let used = (deflater.total_in() - before) as usize;
            bytes = &bytes[used..];
        }
    }

    /// Output: ends a batch of responses with a sync flush (appended to `out`): the peer
    /// can decompress everything sent so far. Releases the compressor until the next
    /// [`Deflate::compress`]. Nothing to do (and nothing appended) if nothing was
    /// compressed since the last flush.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        let Some(mut deflater) = self.deflater.take() else {
            return;
        };
        loop {
            out.reserve(OUT_STEP);
            let room = out.capacity() - out.len();
            let before = out.len();
            if deflater
                .compress_vec(&[], out, FlushCompress::Sync)
                .is_err()
            {
                // Misused somehow: not fit for another batch.
                return;
            }
            // zlib's rule: flushing is done once a call leaves output room unused.
            if out.len() - before < room {
                return give_back(deflater);
            }
        }
    }

    /// Whether a batch is being compressed (a compressor is held).
    pub fn in_batch(&self) -> bool {
        self.deflater.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_compress(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(data.len() + 1024);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        out
    }

    fn client_decompress(inflater: &mut Decompress, mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            out.reserve(64 * 1024);
            let before = inflater.total_in();
            inflater
                .decompress_vec(data, &mut out, FlushDecompress::Sync)
                .unwrap();
            data = &data[(inflater.total_in() - before) as usize..];
            if data.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    /// Reads everything pushed, `chunk` bytes at a time.
    fn drain(d: &mut Deflate, chunk: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = d.decompress(&mut buf).unwrap();
            if n == 0 {
                assert!(d.wants_received());
                return got;
            }
            assert!(n <= chunk);
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn commands_in_small_pieces() {
        let mut d = Deflate::new();
        let wire = client_compress(b"a LOGIN x y\r\nb SELECT INBOX\r\nc IDLE\r\n");
        for byte in &wire {
            assert!(d.wants_received());
            d.push_received(std::slice::from_ref(byte));
            drain(&mut d, 3);
        }
        let mut d = Deflate::new();
        d.push_received(&wire);
        assert_eq!(
            drain(&mut d, 5),
            b"a LOGIN x y\r\nb SELECT INBOX\r\nc IDLE\r\n"
        );
    }

    #[test]
    fn a_bomb_comes_out_in_the_callers_pieces() {
        let big = vec![b'A'; 8 * 1024 * 1024];
        let wire = client_compress(&big);
        assert!(wire.len() < 64 * 1024, "{}", wire.len());
        let mut d = Deflate::new();
        d.push_received(&wire);
        let mut buf = vec![0; 16 * 1024];
        let mut total = 0;
        while !d.wants_received() {
            let n = d.decompress(&mut buf).unwrap();
            assert!(n <= buf.len());
            total += n;
        }
        assert_eq!(total, big.len());
    }

    #[test]
    fn garbage_and_data_after_the_end_are_errors() {
        let mut d = Deflate::new();
        d.push_received(b"a NOOP\r\n\xff\xff\xff\xff");
        let mut buf = [0u8; 64];
        assert_eq!(d.decompress(&mut buf), Err(DeflateError::Corrupt));

        let mut c = Compress::new(Compression::default(), false);
        let mut wire = Vec::with_capacity(256);
        c.compress_vec(b"a LOGOUT\r\n", &mut wire, FlushCompress::Finish)
            .unwrap();
        wire.extend_from_slice(b"more");
        let mut d = Deflate::new();
        d.push_received(&wire);
        let first = d.decompress(&mut buf);
        let second = d.decompress(&mut buf);
        assert!(
            first == Err(DeflateError::AfterEnd) || second == Err(DeflateError::AfterEnd),
            "{first:?} {second:?}"
        );
    }

    #[test]
    fn batches_decode_at_each_flush_across_new_compressors() {
        let mut d = Deflate::new();
        let mut client = Decompress::new(false);
        for i in 0..50 {
            let response = format!("* {i} EXISTS\r\n* {i} RECENT\r\n");
            let mut out = Vec::new();
            d.compress(response.as_bytes(), &mut out);
            assert!(d.in_batch());
            d.flush(&mut out);
            assert!(!d.in_batch(), "the compressor is released after each batch");
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush marker");
            assert_eq!(client_decompress(&mut client, &out), response.as_bytes());
        }
        let mut out = Vec::new();
        d.flush(&mut out);
        assert!(out.is_empty(), "nothing to flush without a batch");
    }

    #[test]
    fn a_large_response_round_trips() {
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut d = Deflate::new();
        let mut out = Vec::new();
        for piece in body.chunks(100_000) {
            d.compress(piece, &mut out);
        }
        d.flush(&mut out);
        let mut client = Decompress::new(false);
        assert_eq!(client_decompress(&mut client, &out), body);
    }
}
