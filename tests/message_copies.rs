//! How many times the bytes of an accepted message are copied between the socket and the
//! store: a 4 MB message is fed to the SMTP engine in 16 KB reads (as the tokio driver
//! reads), accepted by the real policy and delivered by the `Relay` to a local mailbox of
//! the memory backend, while a counting allocator adds up every heap byte allocated.
//! Each whole-message copy needs a buffer of the message's size, so the bytes allocated,
//! divided by the message's size, bound the number of copies from above (buffer growth
//! counts too: a `Vec` doubling its way up to 4 MB allocates 8 MB on the way).
//!
//! BENCHMARKS.md states the figure; the assertion keeps it from creeping back.

#[path = "../benches/support/pgp_messages.rs"]
mod pgp_messages;

use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::Relay;
use chatmail_smtp::server::{Engine as _, Output, Role, ServerSession, Transport};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Counts the bytes of every allocation and reallocation of this test binary.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// The counter is the whole binary's: one measurement at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DOMAIN: &str = "example.org";
const SIZE: usize = 4 << 20;

/// `message` dot-stuffed, with the terminating line.
fn data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Runs `commands`, then the DATA bytes in 16 KB reads, through one session answered by
/// `relay`; returns the bytes allocated from the first command to the stored message.
fn allocated_for(relay: &Relay, role: Role, commands: &str, message: &[u8]) -> usize {
    let now = Instant::now();
    let config = Arc::new(relay.smtp_config(role));
    let mut session = ServerSession::new(config, relay.policy().clone(), Transport::Tls, now);
    let mut replies = String::new();
    let drive = |session: &mut ServerSession, bytes: &[u8], replies: &mut String| {
        session.feed(bytes, now);
        while let Some(output) = session.poll() {
            match output {
                Output::Send(bytes) => replies.push_str(&String::from_utf8_lossy(&bytes)),
                Output::Request(id, request) => {
                    let answer = futures::executor::block_on(relay.answer_smtp(request, None));
                    session.answer(id, answer, now).expect("answer");
                }
                Output::Event(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    let data = data(message);
    let before = ALLOCATED.load(Ordering::Relaxed);
    drive(&mut session, commands.as_bytes(), &mut replies);
    assert!(
        replies.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"),
        "{replies}"
    );
    for chunk in data.chunks(16 * 1024) {
        drive(&mut session, chunk, &mut replies);
    }
    let allocated = ALLOCATED.load(Ordering::Relaxed) - before;
    assert!(
        replies.ends_with("250 2.0.0 Ok: message accepted for delivery\r\n"),
        "{replies}"
    );
    allocated
}

fn relay() -> Relay {
    let mut config = Config::with_domain(DOMAIN);
    config.max_message_size = 2 * SIZE as u64;
    Relay::builder(config)
        .memory()
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        // Unsigned test mail on port 25; DKIM has tests of its own.
        .skip_dkim_verification()
        .build()
        .expect("relay")
}

/// `AUTH PLAIN` for `user`.
fn plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// A PGP/MIME message of about [`SIZE`] bytes from `from` to `to`, CRLF throughout.
fn message(from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(pgp_messages::generated(SIZE))
        .expect("ascii")
        .replace(pgp_messages::FROM, from)
        .replace(pgp_messages::TO, to)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    format!("{}\r\n", text.trim_end()).into_bytes()
}

/// Prints the figure BENCHMARKS.md quotes and keeps it at one copy (plus slack for the
/// header fields and the reply bytes).
fn assert_one_copy(case: &str, allocated: usize, message: &[u8]) {
    let copies = allocated as f64 / message.len() as f64;
    println!(
        "{case}: {allocated} bytes allocated for a {} byte message: {copies:.2} message sizes",
        message.len()
    );
    assert!(copies < 1.1, "{case}: {copies:.2} message sizes allocated");
}

#[test]
fn a_submitted_message_is_copied_once_between_the_socket_and_the_store() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let relay = relay();
    let user = format!("alice1234@{DOMAIN}");
    let message = message(&user, &user);
    let commands = format!(
        "EHLO client.example\r\nAUTH PLAIN {}\r\nMAIL FROM:<{user}> SIZE={}\r\nRCPT TO:<{user}>\r\nDATA\r\n",
        plain(&user, "a-long-enough-password"),
        message.len()
    );
    let allocated = allocated_for(&relay, Role::Submission, &commands, &message);
    assert_one_copy("submission to a local mailbox", allocated, &message);
}

#[test]
fn a_signed_message_from_another_server_is_copied_once_between_the_socket_and_the_store() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let relay = relay();
    let user = format!("bob123456@{DOMAIN}");
    // The recipient's account exists (its first login created it).
    let login = futures::executor::block_on(relay.login(&user, "a-long-enough-password", true));
    assert!(login.expect("login").is_some());
    let from = "carol@other.example";
    // What every message from a chatmail relay carries, and spec 4.3 drops on delivery.
    let signature: &[u8] =
        b"DKIM-Signature: v=1; a=ed25519-sha256; d=other.example; s=dkim;\r\n\tb=c2lnbmF0dXJl\r\n";
    let mut message = signature.to_vec();
    message.extend_from_slice(&self::message(from, &user));
    let commands = format!(
        "EHLO other.example\r\nMAIL FROM:<{from}> SIZE={}\r\nRCPT TO:<{user}>\r\nDATA\r\n",
        message.len()
    );
    let allocated = allocated_for(&relay, Role::Mx, &commands, &message);
    assert_one_copy("a signed message from another server", allocated, &message);
    let stored = futures::executor::block_on(relay.store().read_message(
        &chatmail::core::Address::parse(&user).expect("address"),
        chatmail::core::INBOX,
        chatmail::core::Uid(1),
    ));
    let stored = stored.expect("stored");
    assert!(!stored.starts_with(b"DKIM-Signature"));
    assert_eq!(&stored[..], &message[signature.len()..]);
}
