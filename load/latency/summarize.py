#!/usr/bin/env python3
"""Print the Markdown table of a load/latency/run.sh result directory.

python3 load/latency/summarize.py /tmp/latency-results/<timestamp>
"""

import json
import pathlib
import sys


def fmt_ms(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}"


def row(system: str, what: str, stats: dict, extra: str) -> str:
    if not stats.get("n"):
        return f"| {system} | {what} | 0 | – | – | – | – | {extra} |"
    cells = " | ".join(fmt_ms(stats[k]) for k in ("p50", "p90", "p99", "max"))
    return f"| {system} | {what} | {stats['n']} | {cells} | {extra} |"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = pathlib.Path(sys.argv[1])
    lines = [
        "| system | measurement (ms) | n | p50 | p90 | p99 | max | lost |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for path in sorted(out.glob("idle-*.json")):
        r = json.loads(path.read_text())
        lost = str(r["lost"]) + (f" ({r['stopped_early']})" if r.get("stopped_early") else "")
        lines.append(row(r["label"], "SMTP 250 → IDLE EXISTS", r["wakeup_ms"], lost))
        lines.append(row(r["label"], "DATA sent → IDLE EXISTS", r["from_data_ms"], lost))
    for path in sorted(out.glob("dc-*.json")):
        r = json.loads(path.read_text())
        lost = str(r["lost"]) + (f" ({r['stopped_early']})" if r.get("stopped_early") else "")
        what = f"Delta Chat send → IncomingMsg, {r.get('pause_s', 0):g} s pause"
        lines.append(row(r["label"], what, r["send_to_receive_ms"], lost))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
