//! Sans-IO SMTP server (submission, MX, LMTP) and client engines (filled by issue 4).
#![forbid(unsafe_code)]
