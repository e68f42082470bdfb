//! Maildir file names (Dovecot's `<time>.M<usec>P<pid>.<host>,S=<size>:2,<flags>`), the
//! durable write of a new message, and reading a message back (plain, or gzip when
//! Dovecot wrote it).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;

use super::durability::Durability;
use crate::store::error::StoreError;
use crate::types::{Flag, Flags};

/// The two maildir subdirectories that hold messages (`tmp/` holds none yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sub {
    /// `new/`: delivered, not yet seen by a client session.
    New,
    /// `cur/`: seen by a client session; the name carries `:2,<flags>`.
    Cur,
}

impl Sub {
    pub(super) fn dir(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Sub> {
        match s {
            "new" => Some(Sub::New),
            "cur" => Some(Sub::Cur),
            _ => None,
        }
    }
}

/// The part of a maildir file name that never changes: everything before `:`.
pub(crate) fn base_of(file_name: &str) -> &str {
    file_name.split(':').next().unwrap_or(file_name)
}

/// The system flags in the `:2,<letters>` info of a file name. Lower-case letters are
/// Dovecot keywords numbered in its own `dovecot-keywords` file, read by
/// [`DovecotKeywords`](super::dovecot::DovecotKeywords).
pub(crate) fn info_flags(file_name: &str) -> Flags {
    let Some((_, info)) = file_name.split_once(":2,") else {
        return Flags::new();
    };
    info.chars()
        .filter_map(|c| match c {
            'D' => Some(Flag::Draft),
            'F' => Some(Flag::Flagged),
            'R' => Some(Flag::Answered),
            'S' => Some(Flag::Seen),
            'T' => Some(Flag::Deleted),
            _ => None,
        })
        .collect()
}

/// The logical (uncompressed) size Dovecot records as `,S=<size>` in the base name.
pub(crate) fn size_field(base: &str) -> Option<u64> {
    base.split(',')
        .skip(1)
        .find_map(|field| field.strip_prefix("S="))
        .and_then(|s| s.parse().ok())
}

/// The size Dovecot serves a message with, `,W=<size>` in the base name: the size with
/// CRLF line ends (Dovecot stores LF line ends, `,S=` counts those).
pub(crate) fn served_size_field(base: &str) -> Option<u64> {
    base.split(',')
        .skip(1)
        .find_map(|field| field.strip_prefix("W="))
        .and_then(|s| s.parse().ok())
}

/// The size a message file is served with over IMAP (RFC822.SIZE, SEARCH LARGER and
/// SMALLER, and the index). A file this store wrote is served as stored: `,S=`. Another
/// program's (Dovecot's, stored with LF line ends) is served with CRLF line ends
/// ([`crlf_line_ends`]), so its size is Dovecot's `,W=`, the size Dovecot served it with;
/// `None` when the name does not say (the caller then measures the served bytes).
pub(crate) fn served_size(base: &str) -> Option<u64> {
    if written_by_this_store(base) {
        size_field(base)
    } else {
        served_size_field(base)
    }
}

/// The delivery time a maildir name starts with (`<unix-time>.`), used to order
/// messages found on disk.
pub(crate) fn name_time(base: &str) -> Option<i64> {
    base.split('.').next().and_then(|s| s.parse().ok())
}

/// The file name a message has in `sub` with `flags`: in `cur/` it carries the info
/// letters in ASCII order, as maildir readers expect.
pub(crate) fn file_name(base: &str, sub: Sub, flags: &Flags) -> String {
    match sub {
        Sub::New => base.to_string(),
        Sub::Cur => cur_name(base, flags, ""),
    }
}

/// The file name a message has in `cur/` with `flags` and Dovecot's keyword letters
/// `keyword_letters` (lowercase, see `DovecotKeywords::info_letters`): all info letters
/// in ASCII order, system flags first, as Dovecot writes them.
pub(crate) fn cur_name(base: &str, flags: &Flags, keyword_letters: &str) -> String {
    let mut letters: Vec<char> = flags
        .iter()
        .filter_map(Flag::maildir_letter)
        .chain(keyword_letters.chars().filter(char::is_ascii_lowercase))
        .collect();
    letters.sort_unstable();
    letters.dedup();
    let mut name = String::with_capacity(base.len() + 3 + letters.len());
    name.push_str(base);
    name.push_str(":2,");
    name.extend(letters);
    name
}

/// Makes the entries of a directory (created, renamed, removed files) durable.
pub(crate) use crate::account::fsutil::sync_dir;

/// Replaces `dir/name` with `contents` durably: `<name>.tmp` is written and fsynced,
/// renamed over `name`, and `dir` fsynced. The caller is the file's only writer.
pub(crate) fn write_replace(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    write_replace_like(dir, name, contents, None)
}

/// [`write_replace`], the new file getting the owner, group and permissions of `like`
/// when given: a file of another program (Dovecot's) that this store changes, which
/// that program must go on reading. If the owner cannot be given, nothing is replaced.
pub(crate) fn write_replace_like(
    dir: &Path,
    name: &str,
    contents: &[u8],
    like: Option<&std::fs::Metadata>,
) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    // A temp file left by a crash is stale.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = (|| {
        let mut file = create_new_file(&tmp)?;
        file.write_all(contents)?;
        #[cfg(unix)]
        if let Some(like) = like {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            std::os::unix::fs::fchown(&file, Some(like.uid()), Some(like.gid()))?;
            file.set_permissions(std::fs::Permissions::from_mode(like.mode() & 0o7777))?;
        }
        #[cfg(not(unix))]
        let _ = like;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &target)?;
    sync_dir(dir)
}

/// Creates `dir` with `cur/ new/ tmp/` (owner-only, as Dovecot does), if missing. Every
/// directory created is durable (its parent fsynced) before this returns: a message
/// fsynced into `new/` is lost all the same if `new/` or the account directory is.
pub(crate) fn create_maildir(dir: &Path) -> io::Result<()> {
    for sub in ["cur", "new", "tmp"] {
        crate::account::fsutil::create_dir_all_durable(&dir.join(sub), Some(0o700))?;
    }
    Ok(())
}

/// Opens a new file for writing, owner-only, failing if it exists.
pub(crate) fn create_new_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Seconds since the epoch as a file time (negative dates are clamped to the epoch).
pub(crate) fn system_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0).unsigned_abs())
}

/// Seconds since the epoch of a file time.
pub(crate) fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Writes a message the maildir way: into `tmp_path`, made durable, mtime = internal
/// date (Dovecot keeps INTERNALDATE as the mtime, and expiry reads it), renamed to
/// `final_path`. Leaves nothing behind on failure.
///
/// Where `durability` covers the file (group commit), the data is made durable by a
/// shared barrier before the rename, and the rename is left to the caller's next
/// barrier: the answer is `true` then. Otherwise the file and then its directory are
/// fsynced here, and the answer is `false`.
pub(crate) fn write_message(
    tmp_path: &Path,
    final_path: &Path,
    message: &[u8],
    internal_date: i64,
    durability: &Durability,
) -> io::Result<bool> {
    let result = (|| {
        let mut file = create_new_file(tmp_path)?;
        file.write_all(message)?;
        file.set_modified(system_time(internal_date))?;
        let grouped = durability.covers(&file)?;
        if grouped {
            drop(file);
            durability.barrier()?;
        } else {
            file.sync_all()?;
            drop(file);
        }
        std::fs::rename(tmp_path, final_path)?;
        match final_path.parent() {
            Some(dir) if !grouped => sync_dir(dir)?,
            _ => {}
        }
        Ok(grouped)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp_path);
    }
    result
}

/// The gzip magic (RFC 1952): Dovecot's `zlib_save = gz` files start with it.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether this store wrote the file with base name `base`: its names carry
/// `M<usec>P<pid>Q<seq>` as the second dot-separated part (see `MaildirStore::new_base`),
/// which Dovecot's never do (`M<usec>P<pid>`, issue 9 hole 1).
pub(crate) fn written_by_this_store(base: &str) -> bool {
    let Some(unique) = base.split('.').nth(1) else {
        return false;
    };
    let digits_then = |s: &str, next: char| -> Option<usize> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (n > 0 && s[n..].starts_with(next)).then_some(n + 1)
    };
    let Some(rest) = unique.strip_prefix('M') else {
        return false;
    };
    let Some(p) = digits_then(rest, 'P') else {
        return false;
    };
    let Some(q) = digits_then(&rest[p..], 'Q') else {
        return false;
    };
    let seq = &rest[p + q..];
    !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit())
}

/// How many LF bytes of `message` are not preceded by a CR: the bytes
/// [`crlf_line_ends`] adds.
fn bare_lf_count(message: &[u8]) -> usize {
    let mut previous = 0u8;
    message
        .iter()
        .filter(|&&b| {
            let bare = b == b'\n' && previous != b'\r';
            previous = b;
            bare
        })
        .count()
}

/// `message` as Dovecot serves a file it stored with LF line ends (its `istream-crlf`):
/// every LF not preceded by a CR gets one. Nothing else changes: a CRLF stays, a lone
/// CR stays a lone CR, and a last line without a line end gets none (measured with
/// Debian's Dovecot 2.3.19, `tests/e2e/test_dovecot_adoption.py`). The result is at
/// most twice as long as `message`, whose size the message limit bounds; a message
/// without a bare LF is returned as it is, without a copy.
pub(crate) fn crlf_line_ends(message: Vec<u8>) -> Vec<u8> {
    let added = bare_lf_count(&message);
    if added == 0 {
        return message;
    }
    let mut served = Vec::with_capacity(message.len() + added);
    let mut previous = 0u8;
    for &b in &message {
        if b == b'\n' && previous != b'\r' {
            served.push(b'\r');
        }
        served.push(b);
        previous = b;
    }
    served
}

/// Reads the message file named `name`, at most `limit` bytes (after decompression), in
/// the form it is served in over IMAP.
///
/// A file this store wrote is served exactly as stored: its bytes are what the policy
/// checked (stored as received, with CRLF line ends), and decompressing them would serve
/// a message the policy never saw (a gzip member whose comment field holds a valid
/// PGP/MIME message and whose data holds cleartext). A file another program wrote
/// (Dovecot's) is served as Dovecot served it: decompressed when it starts with the
/// gzip magic (`zlib_save = gz`), and with CRLF line ends ([`crlf_line_ends`]; Dovecot
/// stores LF), which may make it up to twice `limit` long. The file is not rewritten.
pub(crate) fn read_message(file: File, name: &str, limit: u64) -> Result<Bytes, StoreError> {
    let own = written_by_this_store(base_of(name));
    // A file of this store holds at most `limit` appended bytes, or a COPY of another
    // program's message in its served form: at most twice `limit`.
    let limit = if own { limit.saturating_mul(2) } else { limit };
    let on_disk = file
        .metadata()
        .map_err(|e| StoreError::io("reading message metadata", e))?
        .len();
    if on_disk > limit {
        return Err(StoreError::MessageTooLarge {
            size: on_disk,
            limit,
        });
    }
    let mut raw = Vec::with_capacity(on_disk as usize);
    file.take(limit + 1)
        .read_to_end(&mut raw)
        .map_err(|e| StoreError::io("reading message", e))?;
    if own {
        return Ok(Bytes::from(raw));
    }
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(Bytes::from(crlf_line_ends(raw)));
    }
    let mut plain = Vec::with_capacity(raw.len().saturating_mul(3));
    MultiGzDecoder::new(raw.as_slice())
        .take(limit + 1)
        .read_to_end(&mut plain)
        .map_err(|e| StoreError::Corrupt(format!("gzip-compressed message: {e}")))?;
    if plain.len() as u64 > limit {
        return Err(StoreError::MessageTooLarge {
            size: plain.len() as u64,
            limit,
        });
    }
    Ok(Bytes::from(crlf_line_ends(plain)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_names() {
        let name = "1700000000.M123P456.host,S=1234,W=1260:2,FS";
        let base = base_of(name);
        assert_eq!(base, "1700000000.M123P456.host,S=1234,W=1260");
        assert_eq!(size_field(base), Some(1234));
        assert_eq!(name_time(base), Some(1_700_000_000));
        assert_eq!(info_flags(name), Flags::from([Flag::Seen, Flag::Flagged]));
        assert_eq!(info_flags(base), Flags::new());
        assert_eq!(size_field("1700000000.M1P2.host"), None);
        let flags = Flags::from([Flag::Seen, Flag::Draft, Flag::Keyword("$x".into())]);
        assert_eq!(file_name(base, Sub::Cur, &flags), format!("{base}:2,DS"));
        assert_eq!(file_name(base, Sub::New, &flags), base);
    }

    #[test]
    fn dovecot_files_are_served_with_crlf_as_dovecot_serves_them() {
        // Stored by Dovecot 2.3.19 -> served by it (tests/e2e/test_dovecot_adoption.py).
        for (stored, served) in [
            (&b"a\nb\n"[..], &b"a\r\nb\r\n"[..]),
            // A CRLF stays, a lone CR stays lone (LMTP keeps one in the middle).
            (b"a\r\nb\nc\rd\n", b"a\r\nb\r\nc\rd\r\n"),
            // A last line without a line end gets none.
            (b"Subject: x\n\nno end", b"Subject: x\r\n\r\nno end"),
            (b"\n\n", b"\r\n\r\n"),
            (b"\r", b"\r"),
            (b"", b""),
        ] {
            assert_eq!(crlf_line_ends(stored.to_vec()), served, "{stored:?}");
            assert_eq!(bare_lf_count(stored), served.len() - stored.len());
        }
        // At most twice as long.
        assert_eq!(crlf_line_ends(vec![b'\n'; 1000]).len(), 2000);
    }

    proptest::proptest! {
        #[test]
        fn the_served_form_has_no_bare_lf_and_only_adds_crs(
            message in proptest::collection::vec(
                proptest::sample::select(vec![b'\r', b'\n', b'a']), 0..64)
        ) {
            let served = crlf_line_ends(message.clone());
            proptest::prop_assert_eq!(bare_lf_count(&served), 0);
            proptest::prop_assert_eq!(served.len(), message.len() + bare_lf_count(&message));
            // Serving it again changes nothing; only CRs were added.
            let again = crlf_line_ends(served.clone());
            proptest::prop_assert_eq!(&again, &served);
            let without_crs: Vec<u8> = served.iter().copied().filter(|b| *b != b'\r').collect();
            let original_without_crs: Vec<u8> =
                message.iter().copied().filter(|b| *b != b'\r').collect();
            proptest::prop_assert_eq!(without_crs, original_without_crs);
        }
    }

    #[test]
    fn the_served_size_is_dovecots_w_for_its_files_and_s_for_ours() {
        assert_eq!(
            served_size("1700000000.M1P2.host,S=1234,W=1260"),
            Some(1260)
        );
        assert_eq!(
            served_size("1700000000.M1P2.host,W=1260,S=1234"),
            Some(1260)
        );
        assert_eq!(served_size("1700000000.M1P2.host,S=1234"), None);
        assert_eq!(served_size("1700000000.M1P2.host"), None);
        assert_eq!(served_size("1700000000.M1P2Q3.host,S=1234"), Some(1234));
        // A W= in a name of ours would not be ours: S= is what we stored and serve.
        assert_eq!(served_size("1700000000.M1P2Q3.host,S=1234,W=9"), Some(1234));
    }

    #[test]
    fn dovecot_files_are_read_in_served_form_and_ours_as_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let message = b"Subject: x\n\nline\r\nlast\n";
        let served = b"Subject: x\r\n\r\nline\r\nlast\r\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(message).unwrap();
        let gz = gz.finish().unwrap();
        for (name, bytes, expected) in [
            ("1.M1P2.host,S=22", &message[..], &served[..]),
            ("2.M1P2.host,S=22:2,S", &gz[..], &served[..]),
            // Ours: as stored, never converted nor decompressed.
            ("3.M1P2Q3.host,S=22", &message[..], &message[..]),
            ("4.M1P2Q3.host,S=22", &gz[..], &gz[..]),
        ] {
            let path = tmp.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let read = read_message(File::open(&path).unwrap(), name, 1000).unwrap();
            assert_eq!(&read[..], expected, "{name}");
        }
        // The limit bounds what is read; the served form may be up to twice as long.
        let lines = vec![b'\n'; 600];
        let path = tmp.path().join("5.M1P2.host");
        std::fs::write(&path, &lines).unwrap();
        let read = read_message(File::open(&path).unwrap(), "5.M1P2.host", 600).unwrap();
        assert_eq!(read.len(), 1200);
        assert!(matches!(
            read_message(File::open(&path).unwrap(), "5.M1P2.host", 599),
            Err(StoreError::MessageTooLarge { .. })
        ));
        // A copy of ours of such a message (its served form) is read back.
        let copy = tmp.path().join("6.M1P2Q3.host");
        std::fs::write(&copy, &read).unwrap();
        let again = read_message(File::open(&copy).unwrap(), "6.M1P2Q3.host", 600).unwrap();
        assert_eq!(again, read);
    }

    #[test]
    fn cur_names_carry_keyword_letters_after_the_system_flags() {
        let flags = Flags::from([Flag::Seen, Flag::Flagged, Flag::Keyword("$x".into())]);
        assert_eq!(
            cur_name("1.M1P2.h,S=3", &flags, "ca"),
            "1.M1P2.h,S=3:2,FSac"
        );
        assert_eq!(cur_name("1.M1P2.h,S=3", &flags, ""), "1.M1P2.h,S=3:2,FS");
        assert_eq!(cur_name("1.M1P2.h", &Flags::new(), "b"), "1.M1P2.h:2,b");
    }

    #[test]
    fn own_names_are_told_from_dovecot_names() {
        assert!(written_by_this_store("1700000000.M12P34Q5.host,S=10"));
        assert!(written_by_this_store("1700000000.M12P34Q5.a.b.c"));
        assert!(!written_by_this_store("1700000000.M12P34.host,S=10"));
        assert!(!written_by_this_store("1700000000.M12P34Q.host"));
        assert!(!written_by_this_store("1700000000.M12P34Q5x.host"));
        assert!(!written_by_this_store("1700000000.MP34Q5.host"));
        assert!(!written_by_this_store("1700000000"));
        assert!(!written_by_this_store("1700000000.P34Q5M12.host"));
    }

    #[test]
    fn a_new_maildir_is_durable_in_its_parents() {
        use crate::account::fsutil::synced;
        let tmp = tempfile::tempdir().unwrap();
        let account = tmp.path().join("user@example.org");
        synced::take();
        create_maildir(&account).unwrap();
        let synced = synced::take();
        // The account directory's entry, and the entries of cur/, new/ and tmp/.
        for dir in [tmp.path(), account.as_path()] {
            assert!(synced.iter().any(|s| s == dir), "{dir:?} not in {synced:?}");
        }
        create_maildir(&account).unwrap();
        assert!(synced::take().is_empty(), "nothing created, nothing synced");
    }
}
