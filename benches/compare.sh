#!/usr/bin/env bash
# Runs every criterion bench on a baseline checkout and on this one, one bench after the
# other on both sides, so that both see the same machine state (BENCHMARKS.md, issue 10).
#
#   git worktree add ../baseline <commit>   # the code to compare with
#   benches/compare.sh ../baseline > pairs.log
#   BENCHES="imap_session smtp_submission" benches/compare.sh ../baseline
#
# A bench that does not exist on the baseline is skipped there.
set -u
baseline=${1:?usage: benches/compare.sh <baseline checkout>}
here=$(cd "$(dirname "$0")/.." && pwd)
for b in ${BENCHES:-smtp_submission imap_session policy_check policy_rate_limit maildir_append password_hash mailbox_growth}; do
  for dir in "$baseline" "$here"; do
    echo "=== $b $dir $(date +%T)"
    [ -f "$dir/benches/$b.rs" ] || { echo "(no such bench here)"; continue; }
    if [ "$b" = mailbox_growth ] || [ "$b" = password_hash ]; then
      (cd "$dir" && cargo bench -q --bench "$b" 2>&1)
    else
      (cd "$dir" && cargo bench -q --bench "$b" -- --warm-up-time 1 --measurement-time 3 2>&1)
    fi | grep -E '^[a-zA-Z_0-9]+/|time:|thrpt:|password|hashes'
  done
done
