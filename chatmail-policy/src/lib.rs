//! Message acceptance for a chatmail relay: the encryption check, its exceptions,
//! sender identity, rate limit, size, and the header rewrite (filled by issue 3).
#![forbid(unsafe_code)]
