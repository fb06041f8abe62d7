"""`make demo`: set up the embedded SQLite database and show its status."""

from __future__ import annotations

import sys

from multiflexi.cli.main import main

sys.exit(main(["db:migrate"]) or main(["db:status"]))
