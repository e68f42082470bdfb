//! Sans-IO IMAP server engine (filled by issue 5).
#![forbid(unsafe_code)]
