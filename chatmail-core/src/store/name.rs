//! Mailbox name validation: the names a client may use, which are also safe as a
//! Maildir++ directory name (`.<name>`).

use super::error::StoreError;
use crate::types::INBOX;

/// Longest mailbox name in bytes (the directory `.<name>` must fit a 255-byte file name).
pub const MAX_MAILBOX_NAME_LEN: usize = 200;

/// Deepest hierarchy (`A.B.C` has depth 3).
pub const MAX_MAILBOX_DEPTH: usize = 8;

/// Checks a mailbox name and returns its canonical form (`INBOX` in any case becomes
/// `INBOX`; other names are case-sensitive).
///
/// Refused: empty names, names over [`MAX_MAILBOX_NAME_LEN`] bytes or
/// [`MAX_MAILBOX_DEPTH`] levels, `/`, `\`, NUL and other control characters, the IMAP
/// wildcards `*` and `%`, and empty hierarchy levels (`.A`, `A.`, `A..B`), which would
/// also reach `..` as a path.
pub fn validate_mailbox_name(name: &str) -> Result<String, StoreError> {
    let refuse = |reason: &'static str| StoreError::InvalidMailboxName {
        name: name.chars().take(MAX_MAILBOX_NAME_LEN).collect(),
        reason,
    };
    if name.eq_ignore_ascii_case(INBOX) {
        return Ok(INBOX.to_string());
    }
    if name.is_empty() {
        return Err(refuse("empty"));
    }
    if name.len() > MAX_MAILBOX_NAME_LEN {
        return Err(refuse("longer than 200 bytes"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '\\' | '*' | '%'))
    {
        return Err(refuse(
            "contains '/', '\\', '*', '%' or a control character",
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(refuse(
            "has an empty hierarchy level ('.' at an end or '..')",
        ));
    }
    if name.split('.').count() > MAX_MAILBOX_DEPTH {
        return Err(refuse("nested deeper than 8 levels"));
    }
    Ok(name.to_string())
}

/// The canonical name of a mailbox to DELETE: INBOX cannot be deleted.
pub(crate) fn validate_deletable(name: &str) -> Result<String, StoreError> {
    let name = validate_mailbox_name(name)?;
    if name == INBOX {
        return Err(StoreError::InboxImmutable);
    }
    Ok(name)
}

/// The canonical (from, to) names of a RENAME: INBOX cannot be renamed.
pub(crate) fn validate_rename(from: &str, to: &str) -> Result<(String, String), StoreError> {
    let from = validate_mailbox_name(from)?;
    let to = validate_mailbox_name(to)?;
    if from == INBOX {
        return Err(StoreError::InboxImmutable);
    }
    Ok((from, to))
}

/// The (old, new) names a RENAME of `from` to `to` gives `from` and its inferiors
/// (`from.X` becomes `to.X`), each new name validated.
pub(crate) fn renamed_names<'a>(
    existing: impl Iterator<Item = &'a String>,
    from: &str,
    to: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let prefix = format!("{from}.");
    let mut renames = vec![(from.to_string(), to.to_string())];
    for name in existing {
        if let Some(rest) = name.strip_prefix(&prefix) {
            let new = validate_mailbox_name(&format!("{to}.{rest}"))?;
            renames.push((name.clone(), new));
        }
    }
    Ok(renames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_names() {
        assert_eq!(validate_mailbox_name("inbox").unwrap(), "INBOX");
        assert_eq!(validate_mailbox_name("DeltaChat").unwrap(), "DeltaChat");
        assert_eq!(
            validate_mailbox_name("Sent Messages").unwrap(),
            "Sent Messages"
        );
        assert_eq!(validate_mailbox_name("A.B.C").unwrap(), "A.B.C");
        assert_eq!(
            validate_mailbox_name("Entw&APw-rfe").unwrap(),
            "Entw&APw-rfe"
        );
    }

    #[test]
    fn refused_names() {
        let long = "x".repeat(MAX_MAILBOX_NAME_LEN + 1);
        let deep = ["a"; MAX_MAILBOX_DEPTH + 1].join(".");
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", "a\0b", "a\nb", "a\x7fb", ".hidden", "a.",
            "a..b", "*", "a%", &long, &deep,
        ] {
            assert!(
                matches!(
                    validate_mailbox_name(bad),
                    Err(StoreError::InvalidMailboxName { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
