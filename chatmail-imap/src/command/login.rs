//! STARTTLS, LOGIN and AUTHENTICATE PLAIN (with SASL-IR), spec 2.2 and 4.1.

use imap_codec::decode::Decoder;
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::AuthenticateDataCodec;

use crate::request::{Answer, Request};
use crate::session::{Mode, Session, State, Task};

/// STARTTLS: OK, then the driver upgrades; buffered plaintext is dropped.
pub(crate) fn starttls(s: &mut Session, tag: &str) {
    if s.tls_active || !s.config.starttls {
        return s.bad(tag, "TLS is already active or not offered.");
    }
    s.ok(tag, "Begin TLS negotiation now.");
    s.start_tls();
}

/// Refuses plaintext logins on a non-TLS transport (LOGINDISABLED).
fn plaintext_refused(s: &mut Session, tag: &str) -> bool {
    if s.login_allowed() {
        return false;
    }
    s.no(
        tag,
        "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
    );
    true
}

/// LOGIN user password (quoted strings with escapes or literals, decoded by imap-codec).
pub(crate) fn login(s: &mut Session, tag: &str, user: &[u8], password: &[u8]) {
    if plaintext_refused(s, tag) {
        return;
    }
    check(s, tag, user, password);
}

/// AUTHENTICATE PLAIN [initial-response].
pub(crate) fn authenticate(
    s: &mut Session,
    tag: &str,
    mechanism: &AuthMechanism<'_>,
    initial: Option<&[u8]>,
) {
    if *mechanism != AuthMechanism::Plain {
        return s.no(tag, "[CANNOT] Unsupported authentication mechanism.");
    }
    if plaintext_refused(s, tag) {
        return;
    }
    match initial {
        Some(response) => plain(s, tag, response),
        None => {
            s.raw(b"+ \r\n");
            s.mode = Mode::SaslResponse(tag.to_string());
        }
    }
}

/// The client's base64 line after `+ ` (or `*` to cancel).
pub(crate) fn sasl_response(s: &mut Session, tag: &str, line: &[u8]) {
    match AuthenticateDataCodec::default().decode(line) {
        Ok((&[], AuthenticateData::Continue(data))) => plain(s, tag, data.declassify()),
        Ok((_, AuthenticateData::Cancel)) => s.bad(tag, "Authentication aborted by client."),
        _ => s.bad(tag, "Invalid base64 data in AUTHENTICATE response."),
    }
}

/// Decodes `authzid NUL authcid NUL password` and checks it.
fn plain(s: &mut Session, tag: &str, response: &[u8]) {
    let mut parts = response.split(|&b| b == 0);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(authz), Some(user), Some(password), None) => {
            if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
                return s.no(tag, "[AUTHORIZATIONFAILED] Authorization identity differs.");
            }
            check(s, tag, user, password);
        }
        _ => s.bad(tag, "Invalid PLAIN response."),
    }
}

fn check(s: &mut Session, tag: &str, user: &[u8], password: &[u8]) {
    let (Ok(login), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
    else {
        return s.no(tag, "[AUTHENTICATIONFAILED] Authentication failed.");
    };
    let request = Request::Authenticate {
        login: login.to_string(),
        password: password.to_string(),
    };
    s.request(tag, request, Task::Login);
}

/// The embedder's verdict on the credentials.
pub(crate) fn login_answered(s: &mut Session, tag: &str, answer: Answer) {
    match answer {
        Answer::Authenticated(address) => {
            // The feed is listened to before any SELECT lists a mailbox, so that no
            // delivery falls between listing and listening.
            s.subscribe(address.clone());
            s.account = Some(address);
            s.state = State::Authenticated;
            s.command_bound_after_login();
            // Delta Chat reads the capabilities from this response (no CAPABILITY after).
            let caps = s.capabilities();
            s.ok(tag, &format!("[CAPABILITY {caps}] Logged in"));
        }
        other => s.refused(tag, other),
    }
}
