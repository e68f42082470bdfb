//! Reading server replies (RFC 5321 4.2): single- and multi-line, bounded.

use chatmail_policy::Reply;

/// A reply as read from the wire: code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawReply {
    pub(super) code: u16,
    pub(super) lines: Vec<String>,
}

impl RawReply {
    /// The reply with its lines joined by spaces.
    pub(super) fn to_reply(&self) -> Reply {
        Reply {
            code: self.code,
            text: self.lines.join(" "),
        }
    }
}

/// Why the bytes from the server are not SMTP replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReplyError {
    /// A line does not start with a three-digit code followed by space, `-` or the end.
    Malformed,
    /// A reply line or a multi-line reply exceeds the bound.
    TooLong,
    /// The lines of one multi-line reply carry different codes.
    MixedCodes,
}

/// Assembles replies from bytes in any chunking.
#[derive(Debug)]
pub(super) struct ReplyReader {
    max_line: usize,
    max_lines: usize,
    partial: Option<RawReply>,
}

impl ReplyReader {
    pub(super) fn new(max_line: usize, max_lines: usize) -> ReplyReader {
        ReplyReader {
            max_line,
            max_lines,
            partial: None,
        }
    }

    /// Takes one complete reply from the front of `input` (removing the bytes it used),
    /// `Ok(None)` when more bytes are needed.
    pub(super) fn next(&mut self, input: &mut Vec<u8>) -> Result<Option<RawReply>, ReplyError> {
        let mut used = 0;
        let result = loop {
            let rest = &input[used..];
            let Some(lf) = memchr::memchr(b'\n', rest) else {
                if rest.len() > self.max_line {
                    break Err(ReplyError::TooLong);
                }
                break Ok(None);
            };
            if lf + 1 > self.max_line {
                break Err(ReplyError::TooLong);
            }
            let line = &rest[..lf];
            used += lf + 1;
            // Lenient on a missing CR: a client reads, it does not judge.
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (code, more, text) = match parse_line(line) {
                Some(parsed) => parsed,
                None => break Err(ReplyError::Malformed),
            };
            let reply = self.partial.get_or_insert_with(|| RawReply {
                code,
                lines: Vec::new(),
            });
            if reply.code != code {
                break Err(ReplyError::MixedCodes);
            }
            if reply.lines.len() >= self.max_lines {
                break Err(ReplyError::TooLong);
            }
            reply.lines.push(text);
            if !more {
                break Ok(self.partial.take());
            }
        };
        input.drain(..used);
        result
    }
}

/// `NNN text`, `NNN-text` or `NNN`: code, continuation flag, text.
fn parse_line(line: &[u8]) -> Option<(u16, bool, String)> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let (more, text) = match line.get(3) {
        None => (false, &[][..]),
        Some(b' ') => (false, &line[4..]),
        Some(b'-') => (true, &line[4..]),
        Some(_) => return None,
    };
    Some((code, more, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_reply_in_pieces() {
        let mut reader = ReplyReader::new(512, 10);
        let mut input = b"250-mx.example\r\n250-PIPE".to_vec();
        assert_eq!(reader.next(&mut input), Ok(None));
        input.extend_from_slice(b"LINING\r\n250 SIZE 10\r\n220");
        let reply = reader.next(&mut input).unwrap().unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines, ["mx.example", "PIPELINING", "SIZE 10"]);
        assert_eq!(input, b"220");
    }

    #[test]
    fn malformed_and_bounded() {
        let mut reader = ReplyReader::new(16, 2);
        assert_eq!(
            reader.next(&mut b"hello\r\n".to_vec()),
            Err(ReplyError::Malformed)
        );
        let mut reader = ReplyReader::new(16, 2);
        assert_eq!(reader.next(&mut vec![b'2'; 40]), Err(ReplyError::TooLong));
        let mut reader = ReplyReader::new(16, 2);
        let mut many = b"250-a\r\n250-b\r\n250 c\r\n".to_vec();
        assert_eq!(reader.next(&mut many), Err(ReplyError::TooLong));
        let mut reader = ReplyReader::new(16, 5);
        let mut mixed = b"250-a\r\n251 b\r\n".to_vec();
        assert_eq!(reader.next(&mut mixed), Err(ReplyError::MixedCodes));
        let mut reader = ReplyReader::new(16, 5);
        let reply = reader.next(&mut b"354\r\n".to_vec()).unwrap().unwrap();
        assert_eq!((reply.code, reply.lines.len()), (354, 1));
    }
}
