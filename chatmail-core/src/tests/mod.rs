//! Tests that cross modules and need the crate's internals (the maildir expiry planner),
//! and what the crate's unit tests share (`support`).

mod reference_layout;
pub(crate) mod support;
