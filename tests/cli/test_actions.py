"""action:list, run-template:action:set|unset|list and metrics through the real CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from multiflexi.storage.database import Database
from multiflexi.storage.models import ActionConfig
from tests.conftest import Cli
from tests.factories import make_setup


def test_action_list_shows_every_action_with_its_options(cli: Cli) -> None:
    rows = cli.json("action:list")
    by_name = {r["name"]: r for r in rows}
    assert {"Zabbix", "WebHook", "LaunchJob", "Reschedule", "Stop", "CustomCommand"} <= set(by_name)
    assert {"GitHub", "Redmine"} <= set(by_name)
    assert by_name["LaunchJob"]["aliases"] == ["ChainRuntemplate"]
    uri = next(o for o in by_name["WebHook"]["options"] if o["name"] == "uri")
    assert uri == {
        "name": "uri",
        "type": "url",
        "required": True,
        "default": None,
        "secret": False,
        "description": "Where to POST the JSON document.",
    }
    token = next(o for o in by_name["GitHub"]["options"] if o["name"] == "token")
    assert token["secret"] is True and by_name["GitHub"]["modes"] == ["fail"]
    text = cli.ok("action:list").stdout
    assert "WebHook: POST a JSON document" in text
    assert "  delay (int, default 3600): " in text


def test_set_list_and_unset_an_action(cli: Cli, sqlite_db: Database) -> None:
    _, _, rt = make_setup(sqlite_db)
    res = cli.ok(
        "run-template:action:set",
        "--id",
        rt,
        "--mode",
        "fail",
        "--action",
        "webhook",
        "uri=https://hooks.example.org/mf",
        "secret=very-secret-key",
    )
    assert res.stdout.strip() == (
        f"Action WebHook set on fail of run template {rt}: secret=•••••••• "
        "uri=https://hooks.example.org/mf"
    )
    cli.ok("runtemplate:action:set", "--id", rt, "--mode", "success", "--action", "Stop")
    cli.ok(
        "run-template:action:set", "--id", rt, "--mode", "fail", "--action", "WebHook", "attempts=5"
    )
    listed = cli.json("run-template:action:list", "--id", rt)
    assert listed == [
        {
            "runtemplate_id": rt,
            "mode": "success",
            "action": "Stop",
            "position": 1,
            "options": {},
        },
        {
            "runtemplate_id": rt,
            "mode": "fail",
            "action": "WebHook",
            "position": 1,
            "options": {
                "attempts": "5",
                "secret": "••••••••",
                "uri": "https://hooks.example.org/mf",
            },
        },
    ]
    text = cli.ok("run-template:action:list", "--id", rt).stdout
    assert "very-secret-key" not in text and "WebHook" in text
    with sqlite_db.read() as s:
        stored = s.scalar(select(ActionConfig.value).where(ActionConfig.keyname == "secret"))
    assert stored is not None and stored.startswith("mfenc:v1:")  # sealed at rest

    cli.ok("run-template:action:unset", "--id", rt, "--mode", "fail", "--action", "WebHook")
    assert [r["action"] for r in cli.json("run-template:action:list", "--id", rt)] == ["Stop"]
    gone = cli("run-template:action:unset", "--id", rt, "--mode", "fail", "--action", "WebHook")
    assert gone.exit_code == 1
    assert gone.stderr.strip() == f"error: run template {rt} has no WebHook action on fail"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--action", "WebHook", "url=http://x"],
            "error: unknown option 'url' for action WebHook; valid: uri, secret, attempts, timeout",
        ),
        (
            ["--action", "WebHook"],
            "error: action WebHook needs option uri (give uri=VALUE or set "
            "MULTIFLEXI_ACTION_WEBHOOK_URI)",
        ),
        (
            ["--action", "WebHook", "uri=not-a-url"],
            "error: option uri of WebHook must be an http(s) URL, got 'not-a-url'",
        ),
        (
            ["--action", "Reschedule", "delay=soon"],
            "error: option delay of Reschedule must be a whole number, got 'soon'",
        ),
        (
            ["--action", "CustomCommand", "command=echo 'unclosed"],
            "error: option command of CustomCommand is not a valid command line: No closing quotation",
        ),
        (["--action", "Teleport"], "error: unknown action 'Teleport'; available: "),
        (
            ["--action", "GitHub", "token=x"],
            "error: action GitHub runs only on fail, not on success",
        ),
    ],
)
def test_bad_configuration_is_refused_with_one_line_and_nothing_is_stored(
    cli: Cli, sqlite_db: Database, args: list[str], message: str
) -> None:
    _, _, rt = make_setup(sqlite_db)
    res = cli("run-template:action:set", "--id", rt, "--mode", "success", *args)
    assert res.exit_code == 1, res.stdout
    assert res.stderr.startswith(message) and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr
    with sqlite_db.read() as s:
        assert s.scalar(select(func.count()).select_from(ActionConfig)) == 0


def test_github_without_a_github_homepage_needs_a_repository(cli: Cli, sqlite_db: Database) -> None:
    _, _, rt = make_setup(sqlite_db)
    res = cli(
        "run-template:action:set", "--id", rt, "--mode", "fail", "--action", "GitHub", "token=t"
    )
    assert res.exit_code == 1
    assert "needs option repository=OWNER/NAME" in res.stderr


def test_a_bad_mode_or_template_is_refused(cli: Cli, sqlite_db: Database) -> None:
    _, _, rt = make_setup(sqlite_db)
    res = cli("run-template:action:set", "--id", rt, "--mode", "always", "--action", "Stop")
    assert res.exit_code == 1 and "mode must be success or fail" in res.stderr
    res = cli("run-template:action:set", "--id", 999, "--mode", "fail", "--action", "Stop")
    assert res.exit_code == 1 and "run template 999 not found" in res.stderr


def test_metrics_prints_prometheus_text_and_json(cli: Cli) -> None:
    text = cli.ok("metrics").stdout
    assert "# TYPE multiflexi_jobs gauge" in text
    assert 'multiflexi_jobs{status="success"} 0.0' in text
    assert "# TYPE multiflexi_runtemplate_last_status gauge" in text
    # The cluster's numbers only: a CLI process has done nothing worth counting.
    assert "multiflexi_zabbix_send_failures_total" not in text
    samples = cli.json("metrics")
    assert {"name": "multiflexi_queue_depth", "labels": {}, "value": 0.0} in samples


def test_a_webhook_uri_with_a_token_is_sealed_and_listed_redacted(
    cli: Cli, sqlite_db: Database
) -> None:
    _, _, rt = make_setup(sqlite_db)
    uri = "https://bot:pa55w0rd-x@hooks.example.org/mf?channel=ops&token=t0k3n-abc123"
    res = cli.ok(
        "run-template:action:set", "--id", rt, "--mode", "fail", "--action", "WebHook", f"uri={uri}"
    )
    shown = "https://bot:••••••••@hooks.example.org/mf?channel=ops&token=••••••••"
    assert res.stdout.strip() == f"Action WebHook set on fail of run template {rt}: uri={shown}"
    listed = cli.json("run-template:action:list", "--id", rt)
    assert listed[0]["options"]["uri"] == shown
    text = cli.ok("run-template:action:list", "--id", rt).stdout
    assert shown in text and "t0k3n" not in text and "pa55w0rd" not in text
    with sqlite_db.read() as s:
        stored = s.scalar(select(ActionConfig.value).where(ActionConfig.keyname == "uri"))
    assert stored is not None and stored.startswith("mfenc:v1:")  # sealed at rest
    assert "t0k3n" not in stored
    # Changing another option keeps the URI as it was, sealed.
    cli.ok(
        "run-template:action:set", "--id", rt, "--mode", "fail", "--action", "WebHook", "attempts=2"
    )
    assert cli.json("run-template:action:list", "--id", rt)[0]["options"]["uri"] == shown
    # A URI without a credential stays plain, as before.
    plain = "https://hooks.example.org/mf?channel=ops"
    cli.ok(
        "run-template:action:set",
        "--id",
        rt,
        "--mode",
        "fail",
        "--action",
        "WebHook",
        f"uri={plain}",
    )
    with sqlite_db.read() as s:
        assert s.scalar(select(ActionConfig.value).where(ActionConfig.keyname == "uri")) == plain
