"""global:env:* and what job:show --env and runtemplate:show say about each variable."""

from __future__ import annotations

from typing import Any

from multiflexi.secrets import REDACTED
from multiflexi.storage.database import Database
from tests.factories import make_setup


def test_global_environment_set_list_unset(cli: Any) -> None:
    assert "empty" in cli.ok("global:env:list").stdout
    cli.ok("global:env:set", "HTTPS_PROXY=http://proxy:3128", "PROXY_PASSWORD=pw", "BANKA+=1")
    cli.ok("global:env:set", "https_proxy=http://proxy:3128")  # another variable
    rows = cli.json("global:env:list")
    assert rows == [
        {"name": "BANKA+", "value": "1", "secret": False},
        {"name": "HTTPS_PROXY", "value": "http://proxy:3128", "secret": False},
        {"name": "PROXY_PASSWORD", "value": REDACTED, "secret": True},
        {"name": "https_proxy", "value": "http://proxy:3128", "secret": False},
    ]
    assert "pw" not in cli.ok("global:env:list").stdout.split()
    assert cli.json("global:env:list", "--reveal")[2]["value"] == "pw"
    assert cli.json("global:env:unset", "BANKA+")["unset"] == ["BANKA+"]
    res = cli("global:env:unset", "NOPE")
    assert res.exit_code == 1 and "has no variable NOPE" in res.stderr
    assert cli("global:env:set", "=x").exit_code == 2


def test_job_show_env_lists_what_each_value_shadowed(cli: Any, sqlite_db: Database) -> None:
    _, company_id, rt_id = make_setup(
        sqlite_db,
        executable="/bin/true",
        fields={"REGION": {"defval": "eu"}, "API_KEY": {"type": "password"}},
        company_env={"REGION": "cz", "API_KEY": "company-key"},
        config={"REGION": "prague", "API_KEY": "template-key"},
    )
    cli.ok("global:env:set", "REGION=world", "HTTPS_PROXY=http://proxy:3128")
    job_id = cli.json("job:create", "--template", rt_id)["job_id"]
    rows = {r["name"]: r for r in cli.json("job:show", job_id, "--env")["env"]}
    assert rows["REGION"]["value"] == "prague"
    assert [s["source"] for s in rows["REGION"]["shadowed"]] == [
        f"company:{company_id}",
        rows["REGION"]["shadowed"][1]["source"],
        "global",
    ]
    assert rows["HTTPS_PROXY"]["source"] == "global"
    text = cli.ok("job:show", job_id, "--env").stdout
    assert f"company:{company_id}=cz" in text and "global=world" in text
    assert "company-key" not in text and "template-key" not in text
    assert f"company:{company_id}={REDACTED}" in text


def test_runtemplate_show_gives_the_effective_value_and_the_other_layers(
    cli: Any, sqlite_db: Database
) -> None:
    _, company_id, rt_id = make_setup(
        sqlite_db,
        executable="/bin/true",
        fields={"REGION": {"defval": "eu"}, "LIMIT": {"defval": "5"}},
        company_env={"REGION": "cz", "COMPANY_ONLY": "x"},
        config={"LIMIT": "9"},
    )
    cli.ok("global:env:set", "HTTPS_PROXY=http://proxy:3128")
    data = cli.json("runtemplate:show", rt_id)
    config = {c["name"]: c for c in data["config"]}
    assert (config["REGION"]["value"], config["REGION"]["source"]) == (
        "cz",
        f"company:{company_id}",
    )
    assert (config["LIMIT"]["value"], config["LIMIT"]["source"]) == ("9", f"runtemplate:{rt_id}")
    others = {e["name"]: e["source"] for e in data["environment"]}
    assert others == {"HTTPS_PROXY": "global", "COMPANY_ONLY": f"company:{company_id}"}
    text = cli.ok("runtemplate:show", rt_id).stdout
    assert "Environment from other layers:" in text and "HTTPS_PROXY" in text
