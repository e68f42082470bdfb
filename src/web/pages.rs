//! The relay's own web pages (what the reference's `www/` gives a visitor): the home page
//! with the invite QR code and how to use it, an info page (limits, deletion, how it
//! works) and a privacy page filled from the `privacy_*` keys (spec 1.2). Plain HTML with
//! a little inline CSS, readable on a phone; every configured value is escaped.

use super::site::{xml_escape, Site};
use crate::credentials::Credentials;

/// The pages' shared look: one column, system fonts, large enough to read on a phone.
const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
margin:0;color:#1d1d1f;background:#fafafa;line-height:1.5}\
header,main,footer{max-width:40rem;margin:0 auto;padding:0 1.1rem}\
header{padding-top:1rem}nav a{margin-right:1rem;color:#0b57d0;text-decoration:none}\
h1{font-size:1.6rem;margin:.6rem 0;word-break:break-word}h2{font-size:1.2rem;margin-top:1.6rem}\
.qr{display:block;width:min(18rem,80vw);margin:1rem auto;background:#fff;padding:.6rem;\
border-radius:.8rem;box-shadow:0 1px 4px rgba(0,0,0,.12)}.qr svg{width:100%;height:auto}\
.button{display:block;text-align:center;background:#0b57d0;color:#fff;padding:.8rem;\
border-radius:.6rem;text-decoration:none;margin:1rem 0}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{font-weight:600}\
dd{margin:0}footer{color:#666;font-size:.85rem;padding-bottom:2rem;margin-top:2rem}";

impl Site {
    /// The frame every page shares: title, navigation, `body`.
    fn page(&self, title: &str, body: &str) -> String {
        let d = xml_escape(self.host());
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · {d}</title><style>{STYLE}</style></head>\n<body>\n<header><nav>\
<a href=\"/\">Home</a><a href=\"/info.html\">Info</a><a href=\"/privacy.html\">Privacy</a>\
</nav></header>\n<main>\n{body}\n</main>\n<footer>{d} is a chatmail relay: a minimal \
e-mail server for end-to-end encrypted messaging with Delta Chat.</footer>\n</body></html>\n"
        )
    }

    /// The home page: what this relay is, the QR code that creates an account, how to
    /// use it. On a self-signed relay the QR holds fresh `dclogin:` credentials (clients
    /// cannot verify the certificate that `DCACCOUNT:` would need); otherwise
    /// `DCACCOUNT:https://D/new`.
    pub fn home_page(&self) -> String {
        let payload = if self.self_signed() {
            Credentials::generate(&self.config).dclogin_url(Some(&self.endpoints))
        } else {
            format!("DCACCOUNT:https://{}/new", self.host())
        };
        let qr = qrcode::QrCode::new(payload.as_bytes())
            .map(|code| {
                code.render::<qrcode::render::svg::Color<'_>>()
                    .min_dimensions(240, 240)
                    .build()
            })
            .unwrap_or_default();
        let d = xml_escape(self.host());
        let link = xml_escape(&payload);
        let body = format!(
            "<h1>{d}</h1>\n\
<p>Instant, private messaging with <a href=\"https://delta.chat\">Delta Chat</a>. \
This relay creates an account the moment Delta Chat first logs in: no phone number, no \
e-mail address, no personal data. It passes only end-to-end encrypted messages.</p>\n\
<a class=\"qr\" href=\"{link}\" aria-label=\"Create an account on {d}\">{qr}</a>\n\
<a class=\"button\" href=\"{link}\">Create an account on this phone</a>\n\
<h2>How to use it</h2>\n<ol>\n\
<li>Install Delta Chat from <a href=\"https://delta.chat/download\">delta.chat/download</a> \
(Android, iOS, Windows, macOS, Linux).</li>\n\
<li>In Delta Chat, choose <em>Create a new profile</em>, then <em>Use another server</em>, \
and scan the code above. On this phone, tap the button instead.</li>\n\
<li>Choose a name and an avatar if you like. Then share your invite link or QR code with \
the people you want to write to: a chat started that way is encrypted and verified.</li>\n\
</ol>\n\
<p>Your account also works with people on other chatmail relays and on ordinary e-mail \
servers that support encryption. See <a href=\"/info.html\">what this relay keeps and for \
how long</a> and its <a href=\"/privacy.html\">privacy policy</a>.</p>"
        );
        self.page("Delta Chat relay", &body)
    }

    /// The info page: limits, deletion, and how the relay works (spec 1.2, 3, 6).
    pub fn info_page(&self) -> String {
        let c = &self.config;
        let mb = |bytes: u64| bytes / (1024 * 1024);
        let d = xml_escape(self.host());
        let body = format!(
            "<h1>About {d}</h1>\n\
<h2>Limits</h2>\n<dl>\n\
<dt>Message size</dt><dd>up to {msg} MB</dd>\n\
<dt>Sending</dt><dd>up to {rate} messages a minute (bursts of {burst})</dd>\n\
<dt>Storage</dt><dd>{quota} MB per account; past 75 % the oldest messages go first</dd>\n\
</dl>\n\
<h2>Deletion</h2>\n<ul>\n\
<li>Messages are deleted from the relay {days} days after they arrived; Delta Chat \
usually fetches and removes them within seconds.</li>\n\
<li>Large messages (over 200 KB) a device has fetched are deleted after \
{large} days.</li>\n\
<li>Accounts no device has logged in to for {inactive} days are deleted with \
everything in them.</li>\n</ul>\n\
<h2>How it works</h2>\n<ul>\n\
<li>Only end-to-end encrypted messages (OpenPGP, as Delta Chat sends them) and the \
handshake messages that set up encryption are accepted. Unencrypted mail is refused, \
from devices and from other servers.</li>\n\
<li>Messages arrive on the other phone at once: the relay tells a waiting device the \
moment a message is stored, and wakes sleeping phones through a push notification that \
carries no content.</li>\n\
<li>It exchanges mail with other chatmail relays and with ordinary mail servers over \
encrypted connections, signs what it sends (DKIM) and accepts from other servers only \
what their domain signed.</li>\n\
<li>Accounts need no personal data. The relay keeps no record of where devices connect \
from.</li>\n</ul>",
            msg = mb(c.max_message_size),
            rate = c.max_user_send_per_minute,
            burst = c.max_user_send_burst_size,
            quota = c.max_mailbox_size_mb,
            days = c.delete_mails_after,
            large = c.delete_large_after,
            inactive = c.delete_inactive_users_after,
        );
        self.page("About", &body)
    }

    /// The privacy page: who runs the relay (from `privacy_postal`, `privacy_mail`,
    /// `privacy_pdo`, `privacy_supervisor`) and what it processes.
    pub fn privacy_page(&self) -> String {
        let c = &self.config;
        let d = xml_escape(self.host());
        let entry = |label: &str, value: &str| {
            if value.trim().is_empty() {
                String::new()
            } else {
                format!("<dt>{label}</dt><dd>{}</dd>\n", xml_escape(value))
            }
        };
        let mut operator = String::new();
        operator += &entry("Operator", &c.privacy_postal);
        if !c.privacy_mail.trim().is_empty() {
            let mail = xml_escape(&c.privacy_mail);
            operator += &format!("<dt>Contact</dt><dd><a href=\"mailto:{mail}\">{mail}</a></dd>\n");
        }
        operator += &entry("Data protection officer", &c.privacy_pdo);
        operator += &entry("Supervisory authority", &c.privacy_supervisor);
        let operator = if operator.is_empty() {
            "<p>The operator has not published contact details on this page.</p>".to_string()
        } else {
            format!("<dl>\n{operator}</dl>")
        };
        let body = format!(
            "<h1>Privacy policy of {d}</h1>\n\
<h2>Who runs this relay</h2>\n{operator}\n\
<h2>What the relay processes</h2>\n<ul>\n\
<li><strong>Your account:</strong> its random address and a hash of its password, the day \
of the last login (to delete unused accounts after {inactive} days), and whether it accepts \
unencrypted mail.</li>\n\
<li><strong>Messages:</strong> end-to-end encrypted, so the relay cannot read them; kept \
until your devices fetch and delete them, at most {days} days.</li>\n\
<li><strong>Push notifications:</strong> the token your phone registers, passed to the \
notification service without any message content.</li>\n\
<li><strong>Connections:</strong> IP addresses are held in memory only while needed to \
limit abuse; they are not logged or stored.</li>\n</ul>\n\
<p>No personal data is asked for, nothing is sold or shared for advertising, and \
everything is deleted automatically as described on the <a href=\"/info.html\">info \
page</a>.</p>",
            inactive = c.delete_inactive_users_after,
            days = c.delete_mails_after,
        );
        self.page("Privacy", &body)
    }
}
