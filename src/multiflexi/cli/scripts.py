"""Console scripts ``multiflexi-job2script`` and ``multiflexi-job2env``: thin wrappers
around ``multiflexi-cli job:script`` and ``job:env-file``."""

from __future__ import annotations

import sys


def _standalone(name: str) -> int:
    from multiflexi.cli.main import main

    args = sys.argv[1:]
    # Global options (-e/--environment, --debug) may come before the job id.
    globals_: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-e", "--environment") and i + 1 < len(args):
            globals_ += [arg, args[i + 1]]
            i += 2
            continue
        if arg.startswith("--environment=") or arg == "--debug":
            globals_.append(arg)
        else:
            rest.append(arg)
        i += 1
    # The script's name stands where the command would, and the program name is empty:
    # usage lines then read "multiflexi-job2script [OPTIONS] [ID]".
    return main([*globals_, name, *rest], prog_name="")


def job2script() -> None:
    sys.exit(_standalone("multiflexi-job2script"))


def job2env() -> None:
    sys.exit(_standalone("multiflexi-job2env"))
