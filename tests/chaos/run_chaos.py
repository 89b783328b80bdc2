"""The long chaos run: `python tests/chaos/run_chaos.py [--seconds 60] [--json PATH]`.

Prints the report and writes `chaos_error_rate`, `chaos_unanswered` and the recovery times
as named figures for `benchmarks/run.py`. Exits 1 when a promise is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.chaos.harness import PROBE_INTERVAL, run_chaos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument(
        "--no-hostile", dest="hostile", action="store_false", help="leave out the hostile H"
    )
    parser.add_argument(
        "--no-outages", dest="outages", action="store_false", help="no kill, hang, busy, drain"
    )
    args = parser.parse_args()
    report = asyncio.run(run_chaos(args.seconds, args.workers, args.hostile, args.outages))
    for line in report.events:
        print(line)
    print(json.dumps(report.as_json(), indent=2))
    command = f"python tests/chaos/run_chaos.py --seconds {args.seconds:g}"
    if args.json_path:
        figures = {
            "chaos_error_rate": {"value": report.error_rate, "command": command},
            "chaos_unanswered": {"value": report.unanswered, "command": command},
            "chaos_requests": {"value": report.requests, "command": command},
            "chaos_ejected_after_s": {"value": report.ejected_after_s, "command": command},
            "chaos_readmitted_after_s": {"value": report.readmitted_after_s, "command": command},
            "chaos_failovers": {"value": report.failovers, "command": command},
            "chaos_drain_ok": {"value": report.drain_ok, "command": command},
            "chaos_gateway_rss_peak_mib": {"value": report.rss_peak_mib, "command": command},
        }
        Path(args.json_path).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    broken = (
        report.error_rate >= 0.001
        or report.unanswered
        or (args.outages and report.ejected_after_s is None)
        or (report.ejected_after_s or 0.0) > 6 * PROBE_INTERVAL + 1.0
        or (args.outages and not report.drain_ok)
        or report.hostile_shunned is False
    )
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
