//! The relay's HTTPS endpoints as plain functions: a request's method and path in, a
//! [`WebResponse`] out. The tokio driver puts them behind hyper; another runtime can put
//! them behind anything else.
//!
//! | path | what (spec) |
//! |---|---|
//! | `/new`, `/cgi-bin/newemail.py` | fresh credentials as JSON (2.6) |
//! | `/.well-known/autoconfig/mail/config-v1.1.xml` | client autoconfiguration (4.9) |
//! | `/.well-known/mta-sts.txt` | MTA-STS policy (4.8) |
//! | `/`, `/info.html`, `/privacy.html` | the home page with the account QR code, limits and deletion, the privacy policy (`pages.rs`); or the operator's `www_folder` (`www_folder.rs`) |
//! | `/robots.txt` | disallow all crawlers |

mod pages;
mod site;
mod www_folder;

pub use site::{Site, WebResponse};
pub use www_folder::WwwFolder;
