//! Differential test of the armor check: the block-wise scan of `chatmail_policy` must
//! accept exactly what the previous line-by-line checker (kept below, verbatim apart from
//! imports, as the oracle) accepts, on valid armors of every line geometry and on random
//! edits of them. Strictness is the point: the faster check may not let anything new in
//! nor turn anything valid away.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chatmail_policy::is_encrypted_armor;
use proptest::prelude::*;

/// The previous implementation (chatmail-policy commit f7edb00, `src/armor.rs`).
#[allow(dead_code)]
mod oracle {
    use chatmail_policy::Direction;

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
    struct NotEncrypted;

    type Walk<T> = Result<T, NotEncrypted>;

    /// Checks armored text that starts at `buf[0]` (the BEGIN line). Returns the offset just
    /// past the END line (its line ending included), so the caller can check what follows.
    fn check_armor(buf: &[u8], direction: Direction) -> Walk<usize> {
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
        let mut decoder = Decoder::new(Sextets::new(buf, lines.pos));
        walk_packets(&mut decoder)?;
        // The data ended at a line that is not data: an optional checksum, then END.
        let mut lines = Lines {
            buf,
            pos: decoder.sextets.terminator_line(),
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
            let end = line_end(self.buf, self.pos);
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
                    if d.at_end()? {
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
                    return if version_read && d.at_end()? {
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

    /// Decoded bytes on demand over a sextet stream.
    struct Decoder<'a> {
        sextets: Sextets<'a>,
        /// Pending decoded bits (the low `bits` bits of `acc`).
        acc: u32,
        bits: u32,
    }

    impl<'a> Decoder<'a> {
        fn new(sextets: Sextets<'a>) -> Self {
            Decoder {
                sextets,
                acc: 0,
                bits: 0,
            }
        }

        /// The next decoded byte; the data ending here is an error.
        fn byte(&mut self) -> Walk<u8> {
            while self.bits < 8 {
                let v = self.sextets.next()?.ok_or(NotEncrypted)?;
                self.acc = (self.acc << 6) | u32::from(v);
                self.bits += 6;
            }
            self.bits -= 8;
            let b = (self.acc >> self.bits) as u8;
            self.acc &= (1 << self.bits) - 1;
            Ok(b)
        }

        /// Skips `n` decoded bytes; the data ending first is an error.
        fn skip(&mut self, n: u64) -> Walk<()> {
            let need = n.checked_mul(8).ok_or(NotEncrypted)?;
            if need <= u64::from(self.bits) {
                self.bits -= need as u32;
                self.acc &= (1 << self.bits) - 1;
                return Ok(());
            }
            let need = need - u64::from(self.bits);
            self.acc = 0;
            self.bits = 0;
            self.sextets.skip(need / 6)?;
            let rem = (need % 6) as u32;
            if rem > 0 {
                let v = self.sextets.next()?.ok_or(NotEncrypted)?;
                self.bits = 6 - rem;
                self.acc = u32::from(v) & ((1 << self.bits) - 1);
            }
            Ok(())
        }

        /// Whether the decoded data ends here. Leftover bits must be zero (canonical base64);
        /// sextets read to find out stay pending for the next [`Decoder::byte`].
        fn at_end(&mut self) -> Walk<bool> {
            while self.bits < 8 {
                match self.sextets.next()? {
                    Some(v) => {
                        self.acc = (self.acc << 6) | u32::from(v);
                        self.bits += 6;
                    }
                    None if self.acc == 0 => return Ok(true),
                    None => return Err(NotEncrypted),
                }
            }
            Ok(false)
        }
    }

    /// The base64 characters of the armor body as a stream of sextets, line by line.
    ///
    /// The data ends at padding (`=`/`==`, possibly split across lines), at a line starting
    /// with `=` (the checksum) or `-` (END), or at the end of input. Empty lines are skipped.
    struct Sextets<'a> {
        buf: &'a [u8],
        /// Next unread character of the current line, and the end of its characters.
        cur: usize,
        cur_end: usize,
        /// Start of the line after the current one.
        next_line: usize,
        /// Whether `cur_end` was found by scanning (not guessed from the previous line).
        verified: bool,
        /// Length (characters + line ending) and line-ending length of the last data line,
        /// used to guess where the next line ends.
        guess_total: usize,
        guess_eol: usize,
        /// Sextets delivered, modulo 4 (for the padding rule).
        count_mod4: u8,
        /// Set when the data has ended; `terminator` is the start of the line ending it.
        ended: bool,
        terminator: usize,
    }

    impl<'a> Sextets<'a> {
        fn new(buf: &'a [u8], pos: usize) -> Self {
            Sextets {
                buf,
                cur: pos,
                cur_end: pos,
                next_line: pos,
                verified: true,
                guess_total: 0,
                guess_eol: 0,
                count_mod4: 0,
                ended: false,
                terminator: pos,
            }
        }

        /// Start of the line after the data (checksum or END), once the data has ended.
        fn terminator_line(&self) -> usize {
            self.terminator
        }

        /// The next sextet, `None` at the end of the data.
        #[inline]
        fn next(&mut self) -> Walk<Option<u8>> {
            loop {
                if self.ended {
                    return Ok(None);
                }
                if self.cur < self.cur_end {
                    let c = self.buf[self.cur];
                    let v = DECODE[c as usize];
                    if v != INVALID {
                        self.cur += 1;
                        self.count_mod4 = (self.count_mod4 + 1) & 3;
                        return Ok(Some(v));
                    }
                    if !self.verified {
                        self.rescan_line();
                        continue;
                    }
                    if c == b'=' {
                        self.padding()?;
                        return Ok(None);
                    }
                    return Err(NotEncrypted);
                }
                self.advance_line()?;
            }
        }

        /// Skips `n` sextets, validating each; the data ending first is an error.
        fn skip(&mut self, mut n: u64) -> Walk<()> {
            while n > 0 {
                if self.ended {
                    return Err(NotEncrypted);
                }
                let avail = (self.cur_end - self.cur) as u64;
                if avail == 0 {
                    self.advance_line()?;
                    continue;
                }
                let take = avail.min(n) as usize;
                if all_base64(&self.buf[self.cur..self.cur + take]) {
                    self.cur += take;
                    self.count_mod4 = ((u64::from(self.count_mod4) + take as u64) & 3) as u8;
                    n -= take as u64;
                } else if !self.verified {
                    // The guessed line end was wrong: find the real one and retry.
                    self.rescan_line();
                } else {
                    // Padding or a bad character inside the range: the data cannot hold
                    // `n` more sextets either way.
                    return Err(NotEncrypted);
                }
            }
            Ok(())
        }

        /// Moves to the next data line, skipping empty ones; ends the data at a line that
        /// starts with `=` or `-`, or at the end of input.
        fn advance_line(&mut self) -> Walk<()> {
            loop {
                let start = self.next_line;
                if start >= self.buf.len() {
                    self.end_data(start)?;
                    return Ok(());
                }
                let first = self.buf[start];
                if first == b'=' && self.count_mod4 != 0 {
                    // Padding that a line break separated from the last quantum.
                    self.cur = start;
                    self.rescan_line();
                    return self.padding();
                }
                if first == b'=' || first == b'-' {
                    self.end_data(start)?;
                    return Ok(());
                }
                // Guess that this line is as long as the previous data line; any character
                // that fails base64 validation makes us rescan it exactly.
                let g = self.guess_total;
                let guessed = g > self.guess_eol
                    && start + g <= self.buf.len()
                    && self.buf[start + g - 1] == b'\n'
                    && (self.guess_eol == 1 || self.buf[start + g - 2] == b'\r');
                if guessed {
                    self.cur = start;
                    self.cur_end = start + g - self.guess_eol;
                    self.next_line = start + g;
                    self.verified = false;
                } else {
                    self.cur = start;
                    self.rescan_line();
                }
                if self.cur_end > self.cur {
                    return Ok(());
                }
            }
        }

        /// Finds the exact end of the line starting at `self.cur`'s line start.
        fn rescan_line(&mut self) {
            let start = self.line_start();
            let end = line_end(self.buf, start);
            let content = strip_eol(&self.buf[start..end]);
            self.cur_end = start + content.len();
            self.next_line = end;
            self.verified = true;
            if !content.is_empty() {
                self.guess_total = end - start;
                self.guess_eol = end - start - content.len();
            }
        }

        /// Start of the current line: characters before `cur` on it were all valid base64
        /// and a line ending is never valid base64, so walking back stops at the line start.
        fn line_start(&self) -> usize {
            let before = &self.buf[..self.cur];
            match before.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => 0,
            }
        }

        /// Padding at `self.cur`: exactly as many `=` as the sextet count needs (one after 3,
        /// two after 2 in the last quantum), possibly split across lines; nothing else may
        /// follow on the line.
        fn padding(&mut self) -> Walk<()> {
            let mut needed = match self.count_mod4 {
                2 => 2,
                3 => 1,
                _ => return Err(NotEncrypted),
            };
            while needed > 0 {
                if self.cur < self.cur_end {
                    if self.buf[self.cur] != b'=' {
                        return Err(NotEncrypted);
                    }
                    self.cur += 1;
                    needed -= 1;
                    continue;
                }
                // Continue on the next line, which must hold only '=' for the rest.
                let start = self.next_line;
                if start >= self.buf.len() {
                    return Err(NotEncrypted);
                }
                self.cur = start;
                self.verified = true;
                let end = line_end(self.buf, start);
                self.cur_end = start + strip_eol(&self.buf[start..end]).len();
                self.next_line = end;
            }
            if self.cur != self.cur_end {
                return Err(NotEncrypted);
            }
            self.ended = true;
            self.terminator = self.next_line;
            Ok(())
        }

        /// The data ends before the line at `line`: the sextet count must be whole quanta.
        fn end_data(&mut self, line: usize) -> Walk<()> {
            if self.count_mod4 != 0 {
                return Err(NotEncrypted);
            }
            self.ended = true;
            self.terminator = line;
            self.cur = line;
            self.cur_end = line;
            Ok(())
        }
    }

    /// Whether `b` is in the base64 alphabet, in a form the compiler vectorises.
    #[inline(always)]
    fn is_base64(b: u8) -> bool {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        letter | digit | (b == b'+') | (b == b'/')
    }

    /// Whether every byte is in the base64 alphabet (no padding, no line breaks).
    #[inline]
    fn all_base64(s: &[u8]) -> bool {
        let mut chunks = s.chunks_exact(32);
        let mut ok = true;
        for c in &mut chunks {
            ok &= c.iter().fold(true, |acc, &b| acc & is_base64(b));
        }
        ok && chunks.remainder().iter().all(|&b| is_base64(b))
    }

    /// Offset just past the `\n` ending the line that starts at `pos` (or `buf.len()`).
    fn line_end(buf: &[u8], pos: usize) -> usize {
        match buf[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => pos + i + 1,
            None => buf.len(),
        }
    }

    /// The line's content without its line ending.
    fn strip_eol(line: &[u8]) -> &[u8] {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    /// The oracle's answer for `is_encrypted_armor`.
    pub fn is_encrypted_armor(armor: &[u8], direction: Direction) -> bool {
        match check_armor(armor, direction) {
            Ok(end) => armor[end..].iter().all(|&b| b == b'\r' || b == b'\n'),
            Err(_) => false,
        }
    }
}

use chatmail_policy::Direction;

const DIRECTIONS: [Direction; 2] = [Direction::Outgoing, Direction::Incoming];

/// Asserts that the crate and the oracle agree on `armor` in both directions; returns
/// whether it was accepted outgoing.
fn agree(armor: &[u8]) -> bool {
    for direction in DIRECTIONS {
        assert_eq!(
            is_encrypted_armor(armor, direction),
            oracle::is_encrypted_armor(armor, direction),
            "{direction:?} on {:?}",
            String::from_utf8_lossy(armor)
        );
    }
    is_encrypted_armor(armor, Direction::Outgoing)
}

/// The shape of a generated OpenPGP binary.
#[derive(Debug, Clone)]
struct Shape {
    /// Session key packets: (tag, version, body length).
    session_keys: Vec<(u8, u8, usize)>,
    seipd_version: u8,
    seipd_len: usize,
    /// Partial body chunks of 2^n bytes for the SEIPD.
    partial: Option<u8>,
    /// Old-format packet headers for the session key packets.
    old_format: bool,
    seed: u64,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop::collection::vec(
            (
                prop::sample::select(vec![1u8, 3]),
                prop::sample::select(vec![3u8, 4, 5, 6]),
                1usize..300,
            ),
            0..3,
        ),
        prop::sample::select(vec![1u8, 2]),
        1usize..4000,
        prop::option::of(0u8..11),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(session_keys, seipd_version, seipd_len, partial, old_format, seed)| Shape {
                session_keys,
                seipd_version,
                seipd_len,
                partial,
                old_format,
                seed,
            },
        )
}

fn noise(seed: &mut u64, n: usize) -> impl Iterator<Item = u8> + '_ {
    (0..n).map(move |_| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed as u8
    })
}

fn new_format_length(len: usize) -> Vec<u8> {
    match len {
        0..=191 => vec![len as u8],
        192..=8383 => vec![((len - 192) >> 8) as u8 + 192, (len - 192) as u8],
        _ => [&[255][..], &(len as u32).to_be_bytes()].concat(),
    }
}

fn binary(s: &Shape) -> Vec<u8> {
    let mut seed = s.seed | 1;
    let mut out = Vec::new();
    for &(tag, version, len) in &s.session_keys {
        if s.old_format {
            out.push(0x80 | tag << 2 | 1);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0xC0 | tag);
            out.extend(new_format_length(len));
        }
        out.push(version);
        out.extend(noise(&mut seed, len - 1));
    }
    out.push(0xC0 | 18);
    let mut body = vec![s.seipd_version];
    body.extend(noise(&mut seed, s.seipd_len - 1));
    let mut rest = &body[..];
    if let Some(n) = s.partial {
        let chunk = 1usize << n;
        while rest.len() > chunk {
            out.push(0xE0 | n);
            out.extend_from_slice(&rest[..chunk]);
            rest = &rest[chunk..];
            if rest.len() > chunk {
                continue;
            }
        }
    }
    out.extend(new_format_length(rest.len()));
    out.extend_from_slice(rest);
    out
}

/// How the base64 is laid out in the armor.
#[derive(Debug, Clone)]
struct Layout {
    line: usize,
    /// Per line: CRLF (true) or LF; cycled.
    crlf: Vec<bool>,
    empty_lines_after_begin: usize,
    checksum: bool,
    header: bool,
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        prop_oneof![Just(64usize), Just(76), 1usize..130],
        prop_oneof![
            Just(vec![true]),
            Just(vec![false]),
            prop::collection::vec(any::<bool>(), 1..5)
        ],
        0usize..3,
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(line, crlf, empty_lines_after_begin, checksum, header)| Layout {
                line,
                crlf,
                empty_lines_after_begin,
                checksum,
                header,
            },
        )
}

fn armor(binary: &[u8], l: &Layout) -> Vec<u8> {
    let text = STANDARD.encode(binary);
    let mut eols = l
        .crlf
        .iter()
        .cycle()
        .map(|&c| if c { "\r\n" } else { "\n" });
    let mut out = String::from("-----BEGIN PGP MESSAGE-----\r\n");
    if l.header {
        out.push_str("Comment: generated\r\n");
    }
    for _ in 0..l.empty_lines_after_begin {
        out.push_str("\r\n");
    }
    for chunk in text.as_bytes().chunks(l.line) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push_str(eols.next().unwrap_or("\r\n"));
    }
    if l.checksum {
        out.push_str("=agR5\r\n");
    }
    out.push_str("-----END PGP MESSAGE-----\r\n");
    out.into_bytes()
}

/// Characters that matter to the armor grammar, plus a few that never do.
const EDIT_BYTES: &[u8] = b"A/+=-\r\n :\0\xff9zQ";

#[derive(Debug, Clone)]
enum Edit {
    Replace(u16, u8),
    Insert(u16, u8),
    Delete(u16),
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = prop_oneof![0u16..1000, 900u16..1000];
    let byte = prop::sample::select(EDIT_BYTES.to_vec());
    prop_oneof![
        (at.clone(), byte.clone()).prop_map(|(a, b)| Edit::Replace(a, b)),
        (at.clone(), byte).prop_map(|(a, b)| Edit::Insert(a, b)),
        at.prop_map(Edit::Delete),
    ]
}

fn apply(text: &mut Vec<u8>, e: &Edit) {
    let at = |per_mille: u16, len: usize| len * usize::from(per_mille) / 1000;
    match *e {
        Edit::Replace(p, b) if !text.is_empty() => {
            let i = at(p, text.len() - 1);
            text[i] = b;
        }
        Edit::Insert(p, b) => text.insert(at(p, text.len()), b),
        Edit::Delete(p) if !text.is_empty() => {
            text.remove(at(p, text.len() - 1));
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_armors_agree(s in shape(), l in layout()) {
        let armor = armor(&binary(&s), &l);
        agree(&armor);
    }

    #[test]
    fn edited_armors_agree(
        s in shape(),
        l in layout(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let mut armor = armor(&binary(&s), &l);
        for e in &edits {
            apply(&mut armor, e);
        }
        agree(&armor);
    }
}

/// Every single-byte replacement, insertion and deletion of a few small armors (dense
/// line structure, padding of both kinds, partial lengths) against the oracle.
#[test]
fn every_single_edit_of_small_armors_agrees() {
    let shapes = [
        (vec![(1, 3, 20)], 2, 9, None),
        (vec![], 1, 40, Some(3)),
        (vec![(3, 4, 5)], 1, 8, None),
    ];
    let mut accepted = 0;
    for (session_keys, seipd_version, seipd_len, partial) in shapes {
        let shape = Shape {
            session_keys,
            seipd_version,
            seipd_len,
            partial,
            old_format: false,
            seed: 7,
        };
        let bin = binary(&shape);
        for line in [5, 8, 64] {
            for crlf in [vec![true], vec![false, true]] {
                let layout = Layout {
                    line,
                    crlf,
                    empty_lines_after_begin: 1,
                    checksum: line == 8,
                    header: false,
                };
                let armor = armor(&bin, &layout);
                assert!(agree(&armor), "unedited armor accepted");
                for i in 0..=armor.len() {
                    for &b in EDIT_BYTES {
                        let mut inserted = armor.clone();
                        inserted.insert(i, b);
                        accepted += usize::from(agree(&inserted));
                        if i < armor.len() {
                            let mut replaced = armor.clone();
                            replaced[i] = b;
                            accepted += usize::from(agree(&replaced));
                        }
                    }
                    if i < armor.len() {
                        let mut deleted = armor.clone();
                        deleted.remove(i);
                        accepted += usize::from(agree(&deleted));
                    }
                }
            }
        }
    }
    // Line breaks and empty lines may move without changing the verdict: some edits
    // must still be accepted, or the comparison proves little.
    assert!(accepted > 0);
}

/// Every line length from 1 to 130 with CRLF, LF and mixed endings, so that line
/// endings (and a CR split from its LF) fall at every place of a 64-byte block; with
/// partial lengths, so that the walk seeks across many lines.
#[test]
fn every_line_length_is_accepted_by_both() {
    let shape = Shape {
        session_keys: vec![(1, 3, 90), (1, 6, 40)],
        seipd_version: 2,
        seipd_len: 3000,
        partial: Some(9),
        old_format: false,
        seed: 11,
    };
    let bin = binary(&shape);
    for line in 1..=130 {
        for crlf in [vec![true], vec![false], vec![true, false, false]] {
            let layout = Layout {
                line,
                crlf,
                empty_lines_after_begin: 1,
                checksum: line % 2 == 0,
                header: false,
            };
            assert!(agree(&armor(&bin, &layout)), "line length {line}");
        }
    }
}
