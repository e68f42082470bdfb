#!/usr/bin/env bash
# Every "spec N.N" cited in the repository (Rust, Markdown, Python, shell, TOML) must have a
# section headed "## spec N.N " in docs/reference-relay.md, so that a reader who greps a
# citation finds what it means. Lists such as "spec N.N, N.N", "spec N.N/N.N" or a range
# "spec N.N–N.N" count every number named. Exits 1 and lists the citations without a
# section; also fails when a section heading appears twice.
set -euo pipefail
cd "$(dirname "$0")/.."

doc=docs/reference-relay.md
if [ ! -f "$doc" ]; then
  echo "check-spec-citations: $doc is missing" >&2
  exit 1
fi

# One section number, and what may follow it to name more (", ", "/", "–", "-", " and ").
num='[0-9]+(\.[0-9]+)*'
cite="spec $num((, ?| ?/ ?| ?– ?| ?- ?| and | to )[0-9]+\.[0-9]+)*"

# Prints "path:line:match" for every citation. With git: tracked files and untracked ones
# that are not ignored (so target/, fuzz/target/ and .venv/ are skipped by .gitignore).
citations() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git grep --untracked -I -n -o -i -E "$cite" -- \
      '*.rs' '*.md' '*.py' '*.sh' '*.toml' ":!$doc" || true
  else
    grep -r -I -n -o -i -E "$cite" \
      --include='*.rs' --include='*.md' --include='*.py' --include='*.sh' --include='*.toml' \
      --exclude-dir=.git --exclude-dir=target --exclude-dir=.venv --exclude-dir=relay-data \
      --exclude-dir=artifacts --exclude-dir=__pycache__ . \
      | sed 's|^\./||' | grep -v "^$doc:" || true
  fi
}

declare -A section
headings=$(grep -oE "^## spec $num " "$doc" | sed -E 's/^## spec //; s/ $//' || true)
for n in $headings; do
  section[$n]=1
done

status=0
twice=$(printf '%s\n' $headings | sort | uniq -d)
if [ -n "$twice" ]; then
  echo "check-spec-citations: sections headed twice in $doc:" $twice >&2
  status=1
fi

missing=()
count=0
while IFS= read -r hit; do
  [ -n "$hit" ] || continue
  where=${hit%:*}
  match=${hit##*:}
  for n in $(printf '%s\n' "${match:5}" | grep -oE "$num"); do
    count=$((count + 1))
    [ -n "${section[$n]:-}" ] || missing+=("$where: spec $n")
  done
done < <(citations)

if [ ${#missing[@]} -gt 0 ]; then
  echo "check-spec-citations: cited but without a '## spec N.N ' section in $doc:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  status=1
fi
[ "$status" = 0 ] && echo "check-spec-citations: $count citations, each has its section in $doc"
exit "$status"
