"""executor:list: each executor, whether it is usable on this host and why not, and how
resource limits are enforced here."""

from __future__ import annotations

from typing import Any

import pytest

from multiflexi.executors import cgroups, registry
from multiflexi.executors.native import NativeExecutor
from tests.storage.test_job_limits import CGROUP_PROBLEM


class Unavailable(NativeExecutor):
    name = "Podman"

    def unusable(self) -> str | None:
        return "podman is not installed"


def test_native_is_usable_and_says_how_limits_are_enforced_here(cli: Any) -> None:
    rows = cli.json("executor:list")
    assert [row["name"] for row in rows] == ["Native"]
    native = rows[0]
    assert native["usable"] is True and native["reason"] == ""
    if CGROUP_PROBLEM is None:
        assert native["limits_mechanism"] == cgroups.layout()
        assert native["limits_note"] == ""
    else:
        assert native["limits_mechanism"] == "rlimit" and native["limits_note"]
    text = cli.ok("executors:list").stdout
    assert text.splitlines()[0].split() == [
        "name", "usable", "reason", "limits_mechanism", "limits_note",
    ]  # fmt: skip


def test_the_rlimit_setting_is_shown_as_the_reason(cli: Any) -> None:
    cli.env["MULTIFLEXI_LIMITS_MECHANISM"] = "rlimit"
    native = cli.json("executor:list")[0]
    assert (native["limits_mechanism"], native["limits_note"]) == (
        "rlimit",
        "MULTIFLEXI_LIMITS_MECHANISM=rlimit",
    )


def test_an_unusable_executor_is_listed_with_its_reason(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry._FACTORIES, "Podman", Unavailable)
    rows = {row["name"]: row for row in cli.json("executor:list")}
    assert (rows["Podman"]["usable"], rows["Podman"]["reason"]) == (
        False,
        "podman is not installed",
    )
    assert rows["Podman"]["limits_mechanism"] == ""
    assert rows["Native"]["usable"] is True
