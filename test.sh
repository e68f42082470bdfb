#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
# Unit, property and engine tests of every crate, the doc tests, and the examples' tests.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --all-targets
cargo test --workspace --doc
