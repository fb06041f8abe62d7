"""Resource limits of a run template through the CLI: set, shown with their source,
inherited from the application and the configuration, bad values refused."""

from __future__ import annotations

from typing import Any

import pytest

from multiflexi.storage.database import Database
from multiflexi.storage.models import App, RunTemplate
from tests.cli.test_runtemplates import counts, create, world

__all__ = ["world"]  # the fixture, reused

MiB = 1 << 20


def test_limits_are_set_shown_and_changed(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    rt_id = create(
        cli, world,
        "--memory_limit", "256M", "--cpu_time_limit", "60", "--cpus", "0.5",
        "--max_processes", "50", "--max-open-files", "1024", "--output-limit", "100MiB",
    )  # fmt: skip
    with sqlite_db.read() as s:
        rt = s.get_one(RunTemplate, rt_id)
        assert (rt.memory_limit, rt.cpu_time_limit, rt.cpus) == (256 * MiB, 60, 0.5)
        assert (rt.max_processes, rt.max_open_files, rt.output_limit) == (50, 1024, 100 * MiB)
    data = cli.json("runtemplate:show", rt_id)
    assert data["memory_limit"] == 256 * MiB
    shown = {row["name"]: (row["shown"], row["source"]) for row in data["limits"]}
    assert shown == {
        "memory_limit": ("256 MiB", "runtemplate"),
        "cpu_time_limit": ("60 s", "runtemplate"),
        "cpus": ("0.5 cores", "runtemplate"),
        "max_processes": ("50", "runtemplate"),
        "max_open_files": ("1024", "runtemplate"),
        "output_limit": ("100 MiB", "runtemplate"),
    }
    text = cli.ok("runtemplate:show", rt_id).stdout
    assert "Resource limits:" in text and "256 MiB" in text and "0.5 cores" in text

    cli.ok(
        "run-template:update", rt_id, "--memory-limit", "1G", "--cpus", "0", "--max_processes",
        "default",
    )  # fmt: skip
    with sqlite_db.read() as s:
        rt = s.get_one(RunTemplate, rt_id)
        assert (rt.memory_limit, rt.cpus, rt.max_processes) == (1 << 30, 0, None)
    rows = {row["name"]: row for row in cli.json("runtemplate:show", rt_id)["limits"]}
    assert (rows["cpus"]["shown"], rows["cpus"]["source"]) == ("no limit", "runtemplate")
    assert (rows["max_processes"]["shown"], rows["max_processes"]["source"]) == (
        "no limit",
        "none",
    )


def test_defaults_come_from_the_configuration_and_the_application(
    cli: Any, sqlite_db: Database, world: dict[str, int]
) -> None:
    cli.env["MULTIFLEXI_DEFAULT_MEMORY_LIMIT"] = "1G"
    cli.env["MULTIFLEXI_DEFAULT_OUTPUT_LIMIT"] = "10M"
    with sqlite_db.session() as s:
        app = s.get_one(App, world["app"])
        app.extra = {"keys": {"limits": {"memory_limit": "512M", "cpus": 1}}}
    rt_id = create(cli, world, "--output_limit", "0")
    rows = {row["name"]: row for row in cli.json("runtemplate:show", rt_id)["limits"]}
    assert (rows["memory_limit"]["value"], rows["memory_limit"]["source"]) == (
        512 * MiB,
        "application",
    )
    assert (rows["cpus"]["shown"], rows["cpus"]["source"]) == ("1 cores", "application")
    assert (rows["output_limit"]["value"], rows["output_limit"]["source"]) == (None, "runtemplate")
    assert rows["cpu_time_limit"]["source"] == "none"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--memory_limit", "lots", "invalid memory limit 'lots': use a number with K, M, G"),
        ("--output-limit", "12X", "invalid output limit '12X'"),
        ("--cpus", "half", "invalid cpus 'half': expected a number of cores"),
        ("--cpu_time_limit", "-1", "invalid cpu time limit '-1': must not be negative"),
        ("--max_processes", "many", "invalid max processes 'many': expected a whole number"),
    ],
)
def test_bad_limits_are_one_line_and_change_nothing(
    cli: Any, sqlite_db: Database, world: dict[str, int], option: str, value: str, message: str
) -> None:
    rt_id = create(cli, world, "--memory_limit", "256M")
    before = counts(sqlite_db)
    for command in (
        ["run-template:create", "--app_id", world["app"], "--company_id", world["company"]],
        ["run-template:update", rt_id],
    ):
        res = cli(*command, option, value)
        assert res.exit_code == 1
        assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert counts(sqlite_db) == before
    with sqlite_db.read() as s:
        assert s.get_one(RunTemplate, rt_id).memory_limit == 256 * MiB


def test_an_application_definition_carries_default_limits(
    cli: Any, sqlite_db: Database, tmp_path: Any
) -> None:
    import json

    from tests.cli.test_applications import VALID

    document = json.loads(VALID.read_text())
    document["limits"] = {"memory_limit": "512M", "max_processes": 40}
    good = tmp_path / "limited.app.json"
    good.write_text(json.dumps(document))
    data = cli.json("application:import-json", "--file", good)
    assert not [w for w in data["warnings"] if "limits" in str(w)]
    company = cli.json("company:create", "--name", "Limited")["company_id"]
    with sqlite_db.read() as s:
        app_id = s.query(App).one().id
    rt_id = cli.json("run-template:create", "--app_id", app_id, "--company_id", company)[
        "runtemplate_id"
    ]
    rows = {row["name"]: row for row in cli.json("runtemplate:show", rt_id)["limits"]}
    assert (rows["memory_limit"]["shown"], rows["memory_limit"]["source"]) == (
        "512 MiB",
        "application",
    )
    assert rows["max_processes"]["value"] == 40

    document["limits"] = {"memory_limit": "plenty"}
    bad = tmp_path / "bad.app.json"
    bad.write_text(json.dumps(document))
    res = cli("application:import-json", "--file", bad)
    assert res.exit_code == 1
    assert "invalid memory limit 'plenty'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
