//! The decompressing input path of IMAP COMPRESS (`chatmail::compress::Deflate`): the
//! state around the inflater that hands decompressed bytes out in the caller's pieces.
//! Two streams per input: the raw bytes as if the client sent them (mostly corrupt:
//! an error, never a panic), and the bytes compressed by a real compressor with a sync
//! flush at fuzzed points (must come back exactly). Received and read sizes are fuzzed;
//! no read returns more than asked, and a read of 0 means everything received is used.
#![no_main]

use chatmail::compress::Deflate;
use flate2::{Compress, Compression, FlushCompress};
use libfuzzer_sys::fuzz_target;

/// Pushes `wire` in pieces of `push` bytes, reading `read` bytes at a time; returns what
/// came out, or `None` on a stream error.
fn inflate(wire: &[u8], push: usize, read: usize) -> Option<Vec<u8>> {
    let mut d = Deflate::new();
    let mut out = Vec::new();
    let mut buf = vec![0u8; read];
    for piece in wire.chunks(push) {
        assert!(d.wants_received());
        d.push_received(piece);
        loop {
            let n = d.decompress(&mut buf).ok()?;
            assert!(n <= read);
            if n == 0 {
                assert!(
                    d.wants_received(),
                    "0 only once everything received is used"
                );
                break;
            }
            out.extend_from_slice(&buf[..n]);
            // A bomb of a few KiB must not make the fuzzer run out of memory here.
            if out.len() > 64 * 1024 * 1024 {
                return Some(out);
            }
        }
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let [push, read, flush_every, rest @ ..] = data else {
        return;
    };
    let push = usize::from(*push).max(1);
    let read = usize::from(*read).max(1);
    let _ = inflate(rest, push, read);

    let mut c = Compress::new(Compression::fast(), false);
    let mut wire = Vec::new();
    for mut piece in rest.chunks(usize::from(*flush_every).max(1)) {
        // zlib's rule: done once all input is taken and output room is left over.
        loop {
            wire.reserve(piece.len() + 64);
            let before = c.total_in();
            c.compress_vec(piece, &mut wire, FlushCompress::Sync)
                .expect("compress");
            piece = &piece[(c.total_in() - before) as usize..];
            if piece.is_empty() && wire.len() < wire.capacity() {
                break;
            }
        }
    }
    assert_eq!(inflate(&wire, push, read).as_deref(), Some(rest));
});
