//! The origin check of mail from other servers (spec 3.3 step 6): strict DKIM.

use super::service::{OriginCheck, Relay};
use bytes::Bytes;
use chatmail_policy::Reply;

impl Relay {
    /// Whether `message`, whose From domain the policy read as `from_domain`, carries a
    /// valid DKIM signature of that domain (spec 3.3 step 6); the refusal otherwise.
    pub(super) async fn check_origin(
        &self,
        message: &Bytes,
        from_domain: &str,
    ) -> Result<(), Reply> {
        match &self.origin_check {
            OriginCheck::Skip => Ok(()),
            OriginCheck::Dkim(verifier) => {
                match verifier.verify(message.clone(), from_domain).await.reply() {
                    None => Ok(()),
                    Some(reply) => {
                        tracing::info!(
                            code = reply.code,
                            "incoming mail refused by the DKIM origin check"
                        );
                        Err(reply)
                    }
                }
            }
            // An address literal cannot publish a key (spec 1.3): no check, as with DKIM.
            OriginCheck::NoResolver if from_domain.starts_with('[') => Ok(()),
            OriginCheck::NoResolver => Err(Reply::new(
                451,
                "4.7.5 DKIM verification unavailable on this relay, try again later",
            )),
        }
    }
}
