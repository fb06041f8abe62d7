"""``multiflexi-demo-report``: a small application that behaves like a real integration.

It reads its configuration from the environment, prints progress to stdout and warnings to
stderr, writes a CSV into its job directory (``MULTIFLEXI_TMP``) and a JSON summary to
``RESULT_FILE``, and exits with a declared exit code.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path


def main() -> int:
    title = os.environ.get("REPORT_TITLE", "Report")
    try:
        rows = int(os.environ.get("ROWS", "5"))
    except ValueError:
        print("ROWS must be a whole number", file=sys.stderr)
        return 2
    token = os.environ.get("API_TOKEN", "")
    outdir = Path(os.environ.get("MULTIFLEXI_TMP", "."))
    company = os.environ.get("MULTIFLEXI_COMPANY_NAME", "unknown company")
    print(f"{title} for {company}: {rows} rows")
    # A careless application echoing its secret: MultiFlexi masks it before storage.
    print(f"connecting with token {token}")
    if not token:
        print("warning: API_TOKEN is empty, using anonymous access", file=sys.stderr)
    outdir.mkdir(parents=True, exist_ok=True)
    with (outdir / "rows.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["n", "square"])
        for n in range(1, rows + 1):
            writer.writerow([n, n * n])
    summary = {
        "producer": "multiflexi-demo-report",
        "status": "success",
        "timestamp": datetime.now(UTC).isoformat(),
        "message": f"{rows} rows written",
        "metrics": {"rows": rows},
    }
    result = os.environ.get("RESULT_FILE")
    if result:
        Path(result).write_text(json.dumps(summary, indent=2) + "\n")
    print("done", flush=True)
    return int(os.environ.get("FAIL_WITH", "0") or 0)


if __name__ == "__main__":
    sys.exit(main())
