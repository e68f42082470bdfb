#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
#
# 1. Unit, property, engine and doc tests of every crate (cargo), and the postgres
#    storage backend's tests (PostgreSQL started by the tests themselves).
# 2. End-to-end: the `relay` example on 127.0.0.1 driven by real clients — python
#    smtplib/imaplib, swaks, curl, msmtp and mbsync (each skipped if not installed; CI
#    installs them), Postfix as a peer of three federated relays on 127.0.0.2-5 (as
#    root: standard ports), Debian's Dovecot writing a data directory the relay adopts
#    (as root; skipped without Dovecot), Dovecot's imaptest (compliance groups and
#    stress mode, when IMAPTEST_BIN points at it: .ci/run builds it), and Delta Chat core itself
#    (deltachat-rpc-server + deltachat-rpc-client from PyPI, in a venv created here).
#    Set CHATMAIL_SKIP_E2E=1 to run only the cargo tests.
set -euo pipefail
cd "$(dirname "$0")"

cargo test --workspace --all-targets
cargo test --workspace --doc
# The postgres storage backend (feature `postgres`, issue 15): its own tests and the
# store tests it shares with the other backends, each against a throwaway PostgreSQL
# cluster on loopback from Debian's postgresql package (.ci/run installs it); without
# the binaries they fail unless CHATMAIL_SKIP_POSTGRES=1.
cargo test -p chatmail-core --features postgres --lib --test store_postgres \
  --test store_model --test store_feed --test store_expiry \
  --test account_login --test account_concurrency --test account_tokens --test store_migrate
# The delivery and push queues and the ACME certificate the nodes share in the database
# (the root package's feature).
cargo test --features postgres --test shared_queues --test acme

if [ "${CHATMAIL_SKIP_E2E:-}" = 1 ]; then
  echo "CHATMAIL_SKIP_E2E=1: end-to-end tests skipped"
  exit 0
fi

# The relay example in the debug profile: the cargo tests above built the dependencies
# already, and nothing in these tests measures speed. With the postgres backend, for
# the tests of several nodes sharing one database (tests/e2e/test_nodes.py).
cargo build --features postgres --example relay --example loadgen
if [ ! -x .venv/bin/pytest ] || ! .venv/bin/python -c 'import deltachat_rpc_client, dkim' 2>/dev/null; then
  python3 -m venv .venv
  # dkimpy: an independent DKIM implementation, to check our signatures and sign the
  # mail Postfix brings us (tests/e2e/test_federation.py).
  .venv/bin/pip install -q --disable-pip-version-check pytest==8.3.4 \
    deltachat-rpc-server==2.65.0 deltachat-rpc-client==2.65.0 dkimpy==1.1.8
fi
export PATH="$PWD/.venv/bin:$PATH"
CHATMAIL_RELAY_BIN="$PWD/target/debug/examples/relay" \
  .venv/bin/pytest -q -p no:cacheprovider tests/e2e
