//! The outgoing decision in a plain loop, for instruction counts with callgrind (which
//! do not depend on the machine's load) and quick timings:
//!
//! ```sh
//! cargo build --release -p chatmail-policy --example decide_loop
//! valgrind --tool=callgrind target/release/examples/decide_loop 0 200   # 3 KB fixture
//! valgrind --tool=callgrind target/release/examples/decide_loop 1000000 20   # 1 MB
//! ```
//!
//! Arguments: message size (0: the `encrypted.eml` fixture, else a generated PGP/MIME
//! message of about that size, as in `benches/policy_check.rs`) and iterations.

use chatmail_policy::{Direction, Envelope, Policy, PolicyConfig, Verdict};

#[path = "../../benches/support/pgp_messages.rs"]
mod pgp_messages;
use pgp_messages::{fixture, generated, FROM, TO};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args[1].parse().unwrap();
    let iterations: usize = args[2].parse().unwrap();
    let message = if size == 0 {
        fixture("encrypted.eml")
    } else {
        generated(size)
    };
    let policy = Policy::new(PolicyConfig {
        mail_domain: "example.org".into(),
        max_message_size: 64 << 20,
        max_user_send_per_minute: 0,
        max_user_send_burst_size: 10,
    });
    let recipients = [TO.to_string()];
    let env = Envelope {
        auth_user: Some(FROM),
        mail_from: FROM,
        recipients: &recipients,
    };
    let mut accepted = 0;
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        if let Verdict::Accept(_) = policy.check_message(
            Direction::Outgoing,
            &env,
            std::hint::black_box(&message),
            &|_| false,
        ) {
            accepted += 1;
        }
    }
    println!(
        "{} bytes, {accepted}/{iterations} accepted, {:?} per decision",
        message.len(),
        start.elapsed() / iterations as u32
    );
}
