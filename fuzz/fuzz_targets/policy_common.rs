//! Shared by the `policy_outgoing` and `policy_incoming` targets: the message decision on
//! arbitrary bytes must never panic or hang; the first byte picks the envelope variant
//! (recipient count, sender match, cleartext acceptance).

use chatmail_policy::{Direction, Envelope, Policy, PolicyConfig, Verdict};
use std::sync::LazyLock;

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::new(PolicyConfig {
        mail_domain: "example.org".into(),
        max_message_size: 1 << 20,
        max_user_send_per_minute: 60,
        max_user_send_burst_size: 10,
    })
});

/// Runs one input through the decision for `direction`.
pub fn run(direction: Direction, data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let mail_from = if selector & 1 == 0 {
        "alice@example.org"
    } else {
        ""
    };
    let recipients: Vec<String> = (0..=(selector >> 1) % 3)
        .map(|i| {
            if i == 0 {
                "alice@example.org".into()
            } else {
                format!("r{i}@example.org")
            }
        })
        .collect();
    let envelope = Envelope {
        auth_user: (direction == Direction::Outgoing).then_some(mail_from),
        mail_from,
        recipients: &recipients,
    };
    let verdict = POLICY.check_message(direction, &envelope, message, &|_| selector & 0x80 != 0);
    match verdict {
        Verdict::Accept(accepted) => {
            let mut out = Vec::new();
            accepted.write_rewritten(message, &mut out);
            let mut delivered = Vec::new();
            chatmail_policy::write_for_local_delivery(&out, &mut delivered);
            // The engine applies the same rewrites in place (only header bytes move):
            // both ways must give the same bytes.
            assert_eq!(in_place(accepted.header_edit(message), message), out);
            let cleaned = chatmail_policy::local_delivery_edit(&out);
            assert_eq!(in_place(cleaned, &out), delivered);
        }
        Verdict::Reject(reply) => {
            let line = reply.to_string();
            assert!(
                !line.contains('\r') && !line.contains('\n'),
                "one-line reply"
            );
        }
    }
}

/// `message` with `edit` applied inside a copy of its buffer, as the SMTP engine and the
/// relay do, or written out when the new fields do not fit.
fn in_place(edit: Option<chatmail_policy::HeaderEdit>, message: &[u8]) -> Vec<u8> {
    let Some(edit) = edit else {
        return message.to_vec();
    };
    let mut buffer = message.to_vec();
    match edit.apply_in_place(&mut buffer) {
        Some(start) => buffer.split_off(start),
        None => {
            let mut out = Vec::new();
            edit.write(message, &mut out);
            out
        }
    }
}
