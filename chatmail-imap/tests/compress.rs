//! COMPRESS=DEFLATE (RFC 4978) in the engine: offered after login only when configured,
//! the tagged OK before the driver is told to compress, once per connection, refused
//! before login. The compression itself is the driver's (`tests/compress.rs` of the
//! facade runs it over TLS).

mod common;

use common::*;

fn compressing() -> Client {
    let mut cfg = config();
    cfg.compress = true;
    Client::with_config(cfg)
}

#[test]
fn offered_after_login_only_when_configured() {
    let mut c = compressing();
    let greeting = String::from_utf8_lossy(&c.received).into_owned();
    assert!(!greeting.contains("COMPRESS"), "{greeting}");
    let login = c.login();
    assert!(login.contains("COMPRESS=DEFLATE"), "{login}");
    let caps = c.send("c CAPABILITY\r\n");
    assert!(caps.contains(" COMPRESS=DEFLATE"), "{caps}");

    let mut plain = Client::new();
    let login = plain.login();
    assert!(
        login.contains("L1 OK") && !login.contains("COMPRESS"),
        "{login}"
    );
}

#[test]
fn ok_then_the_driver_compresses() {
    let mut c = compressing();
    c.login();
    let reply = c.send("z COMPRESS DEFLATE\r\n");
    assert_eq!(reply, "z OK DEFLATE active.\r\n");
    assert!(c.deflate);
    assert_valid_responses(&c.received);
    // The session goes on with what the driver decompresses; no longer offered.
    let caps = c.send("c CAPABILITY\r\n");
    assert!(
        caps.contains("c OK") && !caps.contains("COMPRESS"),
        "{caps}"
    );
    let select = c.send("s SELECT INBOX\r\n");
    assert!(select.contains("s OK [READ-WRITE]"), "{select}");
}

#[test]
fn lowercase_and_in_selected_state() {
    let mut c = compressing();
    c.login();
    c.send("s SELECT INBOX\r\n");
    let reply = c.send("z compress deflate\r\n");
    assert_eq!(reply, "z OK DEFLATE active.\r\n");
    assert!(c.deflate);
}

#[test]
fn a_second_compress_is_compressionactive() {
    let mut c = compressing();
    c.login();
    c.send("z COMPRESS DEFLATE\r\n");
    c.deflate = false;
    let reply = c.send("y COMPRESS DEFLATE\r\n");
    assert_eq!(
        reply,
        "y NO [COMPRESSIONACTIVE] DEFLATE is already active.\r\n"
    );
    assert!(!c.deflate, "compression must not be started twice");
}

#[test]
fn refused_before_login_unknown_mechanism_and_unconfigured() {
    let mut c = compressing();
    let reply = c.send("z COMPRESS DEFLATE\r\n");
    assert!(reply.starts_with("z BAD"), "{reply}");
    assert!(!c.deflate);
    c.login();
    let reply = c.send("y COMPRESS GZIP\r\n");
    assert!(reply.starts_with("y BAD"), "{reply}");
    let reply = c.send("x COMPRESS\r\n");
    assert!(reply.starts_with("x BAD"), "{reply}");
    assert!(!c.deflate);

    let mut plain = Client::new();
    plain.login();
    let reply = plain.send("z COMPRESS DEFLATE\r\n");
    assert!(reply.starts_with("z BAD"), "{reply}");
    assert!(!plain.deflate);
}

#[test]
fn pipelined_bytes_after_compress_are_dropped() {
    let mut c = compressing();
    c.login();
    // A client that compresses right after its command line (against RFC 4978): those
    // bytes are compressed already and must not be read as commands.
    let reply = c.send("z COMPRESS DEFLATE\r\nn NOOP\r\n");
    assert_eq!(reply, "z OK DEFLATE active.\r\n");
    assert!(c.deflate);
    let reply = c.send("m NOOP\r\n");
    assert!(reply.starts_with("m OK"), "{reply}");
}

#[test]
fn same_reply_in_any_chunking() {
    for seed in [3, 17, 99] {
        let mut c = compressing();
        c.login();
        let reply = c.send_chunked(b"z COMPRESS DEFLATE\r\n", Chunks::Random(seed));
        assert_eq!(reply, "z OK DEFLATE active.\r\n");
        assert!(c.deflate);
    }
}
