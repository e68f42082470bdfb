//! DNS as the relay needs it for delivery to other servers and for DKIM: the
//! [`Resolver`] contract (records, no data, NXDOMAIN and temporary failure told apart;
//! MX with null MX and implicit MX decided once) and [`StaticZone`], a resolver from a
//! zone file for tests and closed networks. The system resolver lives in the `chatmail`
//! crate (feature `tokio`).

mod resolver;
mod zone;

pub use resolver::{
    absolute, Answer, MailExchangers, Record, RecordType, Resolver, TemporaryFailure,
};
pub use zone::{
    StaticZone, ZoneError, MAX_CNAME_CHAIN, MAX_LINE_BYTES, MAX_RECORDS, MAX_ZONE_BYTES,
};
