//! The armor check and OpenPGP packet walk (spec 3.1, armor check steps 1–7).
//!
//! Two steps over the armored text: a block-wise scan validates all of the base64 data
//! and finds where it ends (so its length is known), then the packet walk decodes only
//! the bytes it reads (tag, length, version octet); packet bodies are skipped by
//! arithmetic on the decoded offset.
//!
//! Accepted shape: `-----BEGIN PGP MESSAGE-----`, armor headers (incoming only:
//! `Version:` and `Comment:`), optional empty lines, base64 lines of any length with
//! canonical padding, an optional CRC-24 line `=XXXX` (never required, never verified:
//! RFC 9580 §6.1), `-----END PGP MESSAGE-----`. The binary must be
//! `(PKESK | SKESK)* SEIPD` with PKESK v3/v6, SKESK v4/v5/v6 and SEIPD v1/v2, in new- or
//! old-format packet headers, partial body lengths allowed on the SEIPD only.

use crate::direction::Direction;
use crate::headers::strip_eol;

const BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
const END: &[u8] = b"-----END PGP MESSAGE-----";

/// Marks a byte that is not in the standard base64 alphabet.
const INVALID: u8 = 0xFF;

/// Sextet value of each byte of the standard base64 alphabet, [`INVALID`] otherwise.
static DECODE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Why the walk stopped: the text is not an acceptable armored OpenPGP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotEncrypted;

type Walk<T> = Result<T, NotEncrypted>;

/// Checks armored text that starts at `buf[0]` (the BEGIN line). Returns the offset just
/// past the END line (its line ending included), so the caller can check what follows.
pub(crate) fn check_armor(buf: &[u8], direction: Direction) -> Walk<usize> {
    let mut lines = Lines { buf, pos: 0 };
    if lines.next_line().ok_or(NotEncrypted)? != BEGIN {
        return Err(NotEncrypted);
    }
    // Armor headers: "Key: value" lines right after BEGIN (':' is not base64, so a header
    // line can never be mistaken for data).
    loop {
        let save = lines.pos;
        let Some(line) = lines.next_line() else {
            return Err(NotEncrypted);
        };
        if !line.contains(&b':') {
            lines.pos = save;
            break;
        }
        let allowed = direction == Direction::Incoming
            && (line.starts_with(b"Version: ") || line.starts_with(b"Comment: "));
        if !allowed {
            return Err(NotEncrypted);
        }
    }
    let data = Data::scan(buf, lines.pos)?;
    walk_packets(&mut Decoder::new(data))?;
    // The data ended at a line that is not data: an optional checksum, then END.
    let mut lines = Lines {
        buf,
        pos: data.terminator,
    };
    let mut line = lines.next_non_empty().ok_or(NotEncrypted)?;
    if line.first() == Some(&b'=') {
        let crc = &line[1..];
        if crc.len() != 4 || crc.iter().any(|&b| DECODE[b as usize] == INVALID) {
            return Err(NotEncrypted);
        }
        line = lines.next_non_empty().ok_or(NotEncrypted)?;
    }
    if line != END {
        return Err(NotEncrypted);
    }
    Ok(lines.pos)
}

/// Line reader over the armor text (CRLF or LF endings).
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let end = crate::headers::line_end(self.buf, self.pos);
        let line = strip_eol(&self.buf[self.pos..end]);
        self.pos = end;
        Some(line)
    }

    fn next_non_empty(&mut self) -> Option<&'a [u8]> {
        loop {
            let line = self.next_line()?;
            if !line.is_empty() {
                return Some(line);
            }
        }
    }
}

/// The packet walk: `(PKESK | SKESK)* SEIPD`, then the end of the data.
fn walk_packets(d: &mut Decoder<'_>) -> Walk<()> {
    loop {
        let header = d.byte()?;
        if header & 0x80 == 0 {
            return Err(NotEncrypted);
        }
        let (tag, mut length) = if header & 0x40 != 0 {
            (header & 0x3F, new_format_length(d)?)
        } else {
            (header >> 2 & 0x0F, old_format_length(d, header & 0x03)?)
        };
        match tag {
            1 | 3 => {
                // Session key packets: never partial (RFC 9580 §4.2.1.4), version first.
                let Length::Final(len) = length else {
                    return Err(NotEncrypted);
                };
                let version = if len == 0 {
                    return Err(NotEncrypted);
                } else {
                    d.byte()?
                };
                let known = if tag == 1 {
                    matches!(version, 3 | 6)
                } else {
                    matches!(version, 4..=6)
                };
                if !known {
                    return Err(NotEncrypted);
                }
                d.skip(len - 1)?;
                if d.at_end() {
                    return Err(NotEncrypted); // no encrypted data after the key packets
                }
            }
            18 => {
                let mut version_read = false;
                loop {
                    let (chunk, last) = match length {
                        Length::Partial(n) => (n, false),
                        Length::Final(n) => (n, true),
                    };
                    let mut chunk = chunk;
                    if !version_read && chunk > 0 {
                        if !matches!(d.byte()?, 1 | 2) {
                            return Err(NotEncrypted);
                        }
                        version_read = true;
                        chunk -= 1;
                    }
                    d.skip(chunk)?;
                    if last {
                        break;
                    }
                    length = new_format_length(d)?;
                }
                return if version_read && d.at_end() {
                    Ok(())
                } else {
                    Err(NotEncrypted)
                };
            }
            _ => return Err(NotEncrypted),
        }
    }
}

/// A packet body length: a partial chunk (more follow) or the final part.
#[derive(Clone, Copy)]
enum Length {
    Partial(u64),
    Final(u64),
}

fn new_format_length(d: &mut Decoder<'_>) -> Walk<Length> {
    let o1 = d.byte()?;
    Ok(match o1 {
        0..=191 => Length::Final(u64::from(o1)),
        192..=223 => Length::Final(((u64::from(o1) - 192) << 8) + u64::from(d.byte()?) + 192),
        224..=254 => Length::Partial(1u64 << (o1 & 0x1F)),
        255 => Length::Final(u64::from(u32::from_be_bytes([
            d.byte()?,
            d.byte()?,
            d.byte()?,
            d.byte()?,
        ]))),
    })
}

fn old_format_length(d: &mut Decoder<'_>, length_type: u8) -> Walk<Length> {
    Ok(Length::Final(match length_type {
        0 => u64::from(d.byte()?),
        1 => u64::from(u16::from_be_bytes([d.byte()?, d.byte()?])),
        2 => u64::from(u32::from_be_bytes([
            d.byte()?,
            d.byte()?,
            d.byte()?,
            d.byte()?,
        ])),
        // Indeterminate length runs to the end of the data: never a valid shape here.
        _ => return Err(NotEncrypted),
    }))
}

/// The base64 data of the armor body, validated whole before the packet walk reads it.
///
/// The data is base64 characters and line endings (LF or CRLF; a CR anywhere else is an
/// error), empty lines included; it ends at padding (`=`/`==`, possibly split across
/// lines), at a line starting with `=` (the checksum) or `-` (END). Validation runs over
/// fixed 64-byte blocks wherever the lines break, so its cost per byte does not depend on
/// the line length and there is no per-line work in the hot loop (the line-by-line check
/// spent ~14 ns per line); the packet walk then maps the few characters it decodes to
/// their positions.
#[derive(Clone, Copy)]
struct Data<'a> {
    buf: &'a [u8],
    /// `buf[..end]`, from the first data byte on, holds only base64 characters and line
    /// endings; every character of the data lies before `end`.
    end: usize,
    /// First base64 character (meaningful when `sextets > 0`).
    first: usize,
    /// Number of base64 characters, padding excluded.
    sextets: u64,
    /// Start of the line after the data (checksum or END).
    terminator: usize,
}

/// Bytes validated per step of the bulk scan: long enough to amortise the loop, short
/// enough that the block holding the end of the data is cheap to redo byte by byte.
const BLOCK: usize = 64;

impl<'a> Data<'a> {
    /// Validates the data starting at `buf[start]` (just after the armor headers).
    fn scan(buf: &'a [u8], start: usize) -> Walk<Data<'a>> {
        let mut pos = start;
        let mut line_ending_bytes = 0u64;
        // Bulk: whole blocks of nothing but base64 and line endings (each seen with the
        // byte after it, for the CR rule).
        while let Some(window) = buf.get(pos..).and_then(|rest| rest.first_chunk()) {
            let Some(n) = block_line_ending_bytes(window) else {
                break;
            };
            line_ending_bytes += n;
            pos += BLOCK;
        }
        // Byte by byte through the block where the data ends.
        loop {
            match buf.get(pos) {
                Some(&b) if is_base64(b) => pos += 1,
                Some(b'\n') => {
                    line_ending_bytes += 1;
                    pos += 1;
                }
                Some(b'\r') if buf.get(pos + 1) == Some(&b'\n') => {
                    line_ending_bytes += 2;
                    pos += 2;
                }
                _ => break,
            }
        }
        let sextets = (pos - start) as u64 - line_ending_bytes;
        let end = pos;
        let at_line_start = pos == start || buf[pos - 1] == b'\n';
        let whole_quanta = sextets % 4 == 0;
        let terminator = match buf.get(pos) {
            Some(b'=' | b'-') if at_line_start && whole_quanta => pos,
            Some(b'=') => padding(buf, pos, sextets)?,
            // End of input, a stray character, or data that stops mid-quantum.
            _ => return Err(NotEncrypted),
        };
        // Canonical base64: the bits of the last character past the last byte are zero.
        let mut last = end;
        while last > start && buf[last - 1] < b'+' {
            last -= 1; // line endings between the last character and the padding
        }
        if sextets > 0 {
            let unused_bits = match sextets % 4 {
                2 => 0x0F,
                3 => 0x03,
                _ => 0,
            };
            if DECODE[usize::from(buf[last - 1])] & unused_bits != 0 {
                return Err(NotEncrypted);
            }
        }
        let mut first = start;
        while first < end && buf[first] < b'+' {
            first += 1; // empty lines before the first character
        }
        Ok(Data {
            buf,
            end,
            first,
            sextets,
            terminator,
        })
    }
}

/// The padding at `buf[pos] == b'='` after `sextets` characters: exactly as many `=` as
/// the last quantum needs (one after 3, two after 2), possibly split across lines, then
/// nothing else on the line. Returns the start of the next line.
fn padding(buf: &[u8], mut pos: usize, sextets: u64) -> Walk<usize> {
    let mut needed = match sextets % 4 {
        2 => 2,
        3 => 1,
        _ => return Err(NotEncrypted),
    };
    while needed > 0 {
        match buf.get(pos) {
            Some(b'=') => {
                needed -= 1;
                pos += 1;
            }
            Some(b'\n') => pos += 1,
            Some(b'\r') if buf.get(pos + 1) == Some(&b'\n') => pos += 2,
            _ => return Err(NotEncrypted),
        }
    }
    match buf.get(pos) {
        Some(b'\n') => Ok(pos + 1),
        Some(b'\r') if buf.get(pos + 1) == Some(&b'\n') => Ok(pos + 2),
        // More on the padding's line, or no END line at all.
        _ => Err(NotEncrypted),
    }
}

/// Line-ending bytes (CR, LF) in the first [`BLOCK`] bytes of `window`, or `None` when
/// they hold anything but base64 characters and line endings, or a CR not followed by LF
/// (the window's last byte is the one after the block). Branch-free over fixed-size
/// arrays with a power-of-two trip count, so that the compiler vectorises it.
#[inline(always)]
fn block_line_ending_bytes(window: &[u8; BLOCK + 1]) -> Option<u64> {
    let mut bad = 0u8;
    let mut line_ending = 0u8;
    for i in 0..BLOCK {
        let (b, next) = (window[i], window[i + 1]);
        let cr = b == b'\r';
        let eol = (b == b'\n') | cr;
        // The alphabet as two ranges (letters folded to lower case; '/' and digits) and
        // '+', which compiles to fewer vector operations than `is_base64`.
        let valid = in_range(b | 0x20, b'a', 26) | in_range(b, b'/', 11) | (b == b'+') | eol;
        bad |= u8::from(!valid) | u8::from(cr & (next != b'\n'));
        line_ending += u8::from(eol);
    }
    (bad == 0).then_some(u64::from(line_ending))
}

/// `lo <= b < lo + n`, as a signed compare after a bias (SSE2 has signed byte compares
/// only, so this avoids the extra operations of an unsigned one).
#[inline(always)]
fn in_range(b: u8, lo: u8, n: u8) -> bool {
    ((b.wrapping_sub(lo) ^ 0x80) as i8) < ((n ^ 0x80) as i8)
}

/// Line-ending bytes in validated data (base64 characters and line endings only: every
/// byte below `+` is a CR or LF).
fn count_line_endings(s: &[u8]) -> u64 {
    let mut blocks = s.chunks_exact(BLOCK);
    let mut n = 0u64;
    for block in &mut blocks {
        n += u64::from(block.iter().fold(0u8, |acc, &b| acc + u8::from(b < b'+')));
    }
    n + blocks.remainder().iter().filter(|&&b| b < b'+').count() as u64
}

/// Seeks at least this many characters ahead first try the regular-line guess.
const LONG_SEEK: u64 = 256;

/// Decoded bytes on demand, by offset into the decoded data. The walk reads only packet
/// headers; skipping a packet body is arithmetic on the offset.
struct Decoder<'a> {
    data: Data<'a>,
    /// Length of the decoded data, and the offset of the next byte the walk reads.
    len: u64,
    offset: u64,
    /// Cursor: `pos` is the position of character number `index`, in a run of base64
    /// characters (one line's worth) that ends at `run_end`.
    index: u64,
    pos: usize,
    run_end: usize,
    /// Characters of the first line, and its length with the line ending: the geometry
    /// long seeks assume (and verify).
    first_line: (u64, u64),
}

impl<'a> Decoder<'a> {
    fn new(data: Data<'a>) -> Self {
        let first = data.first;
        let run_end = run_end_from(&data, first);
        let mut next = run_end;
        while next < data.end && data.buf[next] < b'+' {
            next += 1;
        }
        Decoder {
            data,
            len: data.sextets * 6 / 8,
            offset: 0,
            index: 0,
            pos: first,
            run_end,
            first_line: ((run_end - first) as u64, (next - first) as u64),
        }
    }

    /// The next decoded byte; the data ending here is an error.
    fn byte(&mut self) -> Walk<u8> {
        if self.offset >= self.len {
            return Err(NotEncrypted);
        }
        // The byte's 8 bits start `shift` bits into character `index` and end in the
        // next one (both exist: `offset < len`).
        let bit = self.offset * 8;
        let index = bit / 6;
        let shift = (bit % 6) as u32;
        let high = u32::from(self.sextet(index)?);
        let low = u32::from(self.sextet(index + 1)?);
        self.offset += 1;
        Ok(((high << 6 | low) >> (4 - shift)) as u8)
    }

    /// Skips `n` decoded bytes; the data ending first is an error.
    fn skip(&mut self, n: u64) -> Walk<()> {
        match self.offset.checked_add(n) {
            Some(offset) if offset <= self.len => {
                self.offset = offset;
                Ok(())
            }
            _ => Err(NotEncrypted),
        }
    }

    /// Whether the decoded data ends here (its trailing bits were checked by the scan).
    fn at_end(&self) -> bool {
        self.offset == self.len
    }

    /// The value of character number `index` (below `data.sextets`).
    #[inline(always)]
    fn sextet(&mut self, index: u64) -> Walk<u8> {
        let pos = match index.checked_sub(self.index) {
            // Most reads are on the cursor's line.
            Some(ahead) if ahead < (self.run_end - self.pos) as u64 => {
                self.index = index;
                self.pos += ahead as usize;
                self.pos
            }
            _ => self.position(index)?,
        };
        Ok(DECODE[usize::from(self.data.buf[pos])])
    }

    /// Position of character number `index`. The walk only moves forward, so the cursor
    /// does too; line by line for short moves, one guess for long ones. Kept out of line
    /// so that [`Decoder::sextet`]'s common case stays small enough to inline.
    #[inline(never)]
    fn position(&mut self, index: u64) -> Walk<usize> {
        if index < self.index {
            // Not reached by the walk; kept correct rather than assumed.
            *self = Decoder::new(self.data);
        }
        let mut ahead = index - self.index;
        if ahead >= LONG_SEEK {
            if let Some(pos) = self.regular_lines_guess(index) {
                self.index = index;
                self.pos = pos;
                self.run_end = self.run_end_at(pos, index % self.first_line.0);
                return Ok(pos);
            }
        }
        loop {
            let in_run = (self.run_end - self.pos) as u64;
            if ahead < in_run {
                self.index += ahead;
                self.pos += ahead as usize;
                return Ok(self.pos);
            }
            ahead -= in_run;
            self.index += in_run;
            let mut next = self.run_end;
            while next < self.data.end && self.data.buf[next] < b'+' {
                next += 1; // the line ending, and empty lines
            }
            if next >= self.data.end {
                // Past the last character: never asked for (`index < sextets`), but an
                // error rather than an endless loop if it were.
                return Err(NotEncrypted);
            }
            self.pos = next;
            self.run_end = self.run_end_at(next, 0);
        }
    }

    /// End of the run of characters at `pos`, `column` characters into its line. Lines
    /// are usually as long as the first, so that end is tried first (no line ending up
    /// to it, one or the end of the data at it), before a search.
    fn run_end_at(&self, pos: usize, column: u64) -> usize {
        let data = &self.data;
        let rest = self.first_line.0.saturating_sub(column);
        let guess = usize::try_from(rest).map_or(data.end, |r| pos.saturating_add(r));
        let ends_there = guess == data.end || (guess < data.end && data.buf[guess] < b'+');
        if rest > 0 && ends_there && count_line_endings(&data.buf[pos..guess]) == 0 {
            return guess;
        }
        run_end_from(data, pos)
    }

    /// Where character `index` is if every line from the first on is as long as the
    /// first; `None` unless verified: the bytes from the cursor to the guess must hold
    /// exactly the characters in between (the rest are line endings), and the guess
    /// itself must be a character.
    fn regular_lines_guess(&self, index: u64) -> Option<usize> {
        let (line, line_total) = self.first_line;
        if line == 0 || line_total <= line {
            return None; // a single line: nothing to guess
        }
        let data = &self.data;
        let pos = data.first as u64 + index / line * line_total + index % line;
        let pos = usize::try_from(pos).ok()?;
        if pos >= data.end || pos < self.pos || data.buf[pos] < b'+' {
            return None;
        }
        // Fewer bytes than characters in between: the lines are shorter than guessed.
        let line_endings = ((pos - self.pos) as u64).checked_sub(index - self.index)?;
        (count_line_endings(&data.buf[self.pos..pos]) == line_endings).then_some(pos)
    }
}

/// End of the run of base64 characters starting at `pos` (a line's characters).
fn run_end_from(data: &Data<'_>, pos: usize) -> usize {
    match memchr::memchr(b'\n', &data.buf[pos..data.end]) {
        Some(i) if i > 0 && data.buf[pos + i - 1] == b'\r' => pos + i - 1,
        Some(i) => pos + i,
        None => data.end,
    }
}

/// Whether `b` is in the base64 alphabet, in a form the compiler vectorises.
#[inline(always)]
fn is_base64(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'+') | (b == b'/')
}

/// The value of one base64 alphabet character.
#[inline]
pub(crate) fn sextet(b: u8) -> Option<u8> {
    let v = DECODE[b as usize];
    (v != INVALID).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_test_agrees_with_the_table() {
        for b in 0..=255u8 {
            assert_eq!(is_base64(b), DECODE[b as usize] != INVALID, "{b}");
        }
    }

    #[test]
    fn block_check_agrees_with_the_byte_rules() {
        // One odd byte at every place of a block of valid data, with every value for
        // it and for the byte after the block.
        let base: Vec<u8> = b"QUJD\r\nRAz+/09\n"
            .iter()
            .copied()
            .cycle()
            .take(BLOCK + 1)
            .collect();
        for at in 0..=BLOCK {
            for b in 0..=255u8 {
                let mut window = [0u8; BLOCK + 1];
                window.copy_from_slice(&base);
                window[at] = b;
                let expected = (0..BLOCK).all(|i| {
                    let (c, next) = (window[i], window[i + 1]);
                    is_base64(c) || c == b'\n' || (c == b'\r' && next == b'\n')
                });
                let eols = window[..BLOCK]
                    .iter()
                    .filter(|&&c| c == b'\r' || c == b'\n');
                assert_eq!(
                    block_line_ending_bytes(&window),
                    expected.then_some(eols.count() as u64),
                    "{b} at {at}"
                );
            }
        }
    }
}
