//! What every step of one delivery attempt shares: the [`Attempt`] itself, connecting,
//! and making a peer's text safe for a reply.

use super::settings::TransportSettings;
use crate::outbound::Handover;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

/// Most bytes of a peer's text that go into a reply.
const MAX_REPLY_TEXT: usize = 200;

/// One attempt in progress: what every step needs to know.
pub(crate) struct Attempt<'a> {
    pub(crate) handover: Handover<'a>,
    pub(crate) settings: &'a TransportSettings,
}

/// A TCP connection to the first of `addresses` that accepts on `port`, each within
/// `timeout`; the last error when none does.
pub(crate) async fn connect_any(
    addresses: &[IpAddr],
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for &ip in addresses {
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e)) => last = format!("connect to {addr}: {e}"),
            Err(_) => last = format!("connect to {addr} timed out"),
        }
    }
    Err(last)
}

/// Printable ASCII only (anything else becomes `?`), at most [`MAX_REPLY_TEXT`] bytes:
/// a peer's text as it may go into a reply.
pub(crate) fn sanitize(text: &[u8]) -> String {
    text.iter()
        .take(MAX_REPLY_TEXT)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}
