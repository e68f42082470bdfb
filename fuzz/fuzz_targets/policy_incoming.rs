//! The incoming message decision on arbitrary bytes (see `policy_common.rs`).
#![no_main]

mod policy_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| policy_common::run(chatmail_policy::Direction::Incoming, data));
