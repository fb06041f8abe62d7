"""Action options, the registry of actions, and what leaves MultiFlexi about a job."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from multiflexi.actions import registry
from multiflexi.actions.base import Action, ActionContext, Option
from multiflexi.actions.config import check_names, resolve, setting_key
from multiflexi.actions.issue_trackers import repository_from_homepage
from multiflexi.actions.payload import JobInfo, job_document, scrub, scrub_data
from multiflexi.actions.webhook import WebHook, signature, where
from multiflexi.errors import Invalid, NotFound
from multiflexi.secrets import REDACTED


@pytest.mark.parametrize(
    ("option", "raw", "value"),
    [
        (Option("n", "int"), " 42 ", 42),
        (Option("f", "float"), "1.5", 1.5),
        (Option("b", "bool"), "yes", True),
        (Option("b", "bool"), "off", False),
        (Option("u", "url"), "https://example.org/hook?x=1", "https://example.org/hook?x=1"),
        (Option("l", "list"), "A, B,,C", ["A", "B", "C"]),
        (Option("c", "command"), "notify --text 'two words'", ["notify", "--text", "two words"]),
        (Option("s"), " kept as is ", " kept as is "),
    ],
)
def test_option_values_are_parsed_by_type(option: Option, raw: str, value: Any) -> None:
    assert option.parse(raw, "Test") == value


@pytest.mark.parametrize(
    ("option", "raw", "message"),
    [
        (Option("delay", "int"), "soon", "option delay of Test must be a whole number, got 'soon'"),
        (Option("timeout", "float"), "0", "option timeout of Test must be greater than 0"),
        (Option("b", "bool"), "maybe", "must be true or false"),
        (
            Option("uri", "url"),
            "ftp://x",
            "option uri of Test must be an http(s) URL, got 'ftp://x'",
        ),
        (Option("uri", "url"), "not a url", "must be an http(s) URL"),
        (Option("cmd", "command"), "echo 'open", "is not a valid command line"),
        (Option("cmd", "command"), "  ", "must not be empty"),
    ],
)
def test_bad_option_values_are_refused_with_one_clear_line(
    option: Option, raw: str, message: str
) -> None:
    with pytest.raises(Invalid) as err:
        option.parse(raw, "Test")
    assert message in err.value.message
    assert "\n" not in err.value.message


def test_a_bad_secret_url_is_refused_without_showing_it() -> None:
    with pytest.raises(Invalid) as err:
        Option("url", "url", secret=True).parse("token-in-here", "Test")
    assert "token-in-here" not in err.value.message


def test_required_options_may_come_from_global_defaults() -> None:
    with pytest.raises(Invalid, match="action WebHook needs option uri"):
        resolve(WebHook, {})
    values = resolve(WebHook, {"uri": "http://127.0.0.1/x"}, {"attempts": "5"})
    assert values == {"uri": "http://127.0.0.1/x", "secret": None, "attempts": 5, "timeout": None}
    assert setting_key("WebHook", "uri") == "MULTIFLEXI_ACTION_WEBHOOK_URI"


def test_unknown_option_names_list_the_valid_ones() -> None:
    with pytest.raises(Invalid) as err:
        check_names(WebHook, {"url": "x"})
    assert err.value.message == (
        "unknown option 'url' for action WebHook; valid: uri, secret, attempts, timeout"
    )


def test_every_builtin_action_is_found_by_name_alias_and_any_case() -> None:
    names = set(registry.available())
    assert {
        "Zabbix",
        "WebHook",
        "LaunchJob",
        "Reschedule",
        "Stop",
        "CustomCommand",
        "GitHub",
        "Redmine",
    } <= names
    assert registry.get_action("chainruntemplate").name == "LaunchJob"
    assert registry.get_action("WEBHOOK") is WebHook
    with pytest.raises(NotFound, match="unknown action 'Nope'; available: "):
        registry.get_action("Nope")


class Shout(Action):
    name = "Shout"
    description = "A plugin from another package."
    options = (Option("word", required=True),)

    def perform(self, ctx: ActionContext) -> str:
        return str(ctx.options["word"]).upper()


class _EntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name, self.value, self._target = name, f"tests:{name}", target

    def load(self) -> Any:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def test_plugins_come_from_the_entry_point_group_and_a_broken_one_hides_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.metadata

    def fake_entry_points(group: str) -> list[_EntryPoint]:
        assert group == "multiflexi.actions"
        return [_EntryPoint("Shout", Shout), _EntryPoint("Broken", ImportError("no module"))]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    registry.reset()
    try:
        found = registry.available()
        assert found["Shout"] is Shout
        assert "Broken" not in found
        assert "WebHook" in found  # built-ins work without their entry points
    finally:
        registry.reset()


def test_a_github_repository_is_derived_from_a_github_homepage_only() -> None:
    assert repository_from_homepage("https://github.com/VitexSoftware/abraflexi.git") == (
        "VitexSoftware/abraflexi"
    )
    assert repository_from_homepage("https://www.github.com/a/b/tree/main") == "a/b"
    assert repository_from_homepage("https://gitlab.com/a/b") is None


def test_scrubbing_replaces_every_secret_longest_first_and_ignores_tiny_ones() -> None:
    secrets = {"hunter2", "hunter2-long", "42"}
    assert scrub("a hunter2-long b hunter2 c 42", secrets) == f"a {REDACTED} b {REDACTED} c 42"
    assert scrub_data({"x": ["hunter2", 1, None]}, secrets) == {"x": [REDACTED, 1, None]}


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"a": 1}'
    expected = hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert signature("k3y", body) == f"sha256={expected}"


def test_where_never_shows_a_path_or_credentials() -> None:
    assert where("https://user:pw@hooks.example.org:8443/T0KEN/x?y=1") == (
        "https://hooks.example.org:8443"
    )


def info(**changes: Any) -> JobInfo:
    base: dict[str, Any] = dict(
        job_id=7,
        status="failed",
        exitcode=3,
        signal=None,
        exit_meaning="Upstream down",
        reason="exit code 3: Upstream down",
        created=None,
        scheduled_at=None,
        begin=None,
        end=None,
        duration=1.5,
        cpu_user=0.1,
        cpu_system=0.0,
        max_rss_kb=1000,
        command="probe --token ••••••••",
        host="h",
        executor="Native",
        schedule_type="adhoc",
        attempt=1,
        app_id=1,
        app_name="Probe",
        app_code="PRB",
        app_uuid="u",
        app_version="1.0",
        app_homepage="",
        company_id=2,
        company_name="Acme",
        company_slug="acme",
        zabbix_host="",
        runtemplate_id=3,
        runtemplate_name="nightly",
        interv="d",
        cron=None,
        variables={"TOKEN": REDACTED, "PLAIN": "visible"},
        secret_names=frozenset({"TOKEN"}),
    )
    base.update(changes)
    return JobInfo(**base)


def test_the_job_document_describes_the_job_but_carries_no_variables() -> None:
    doc = job_document(info())
    assert doc["job"]["id"] == 7 and doc["job"]["mode"] == "fail"
    assert doc["job"]["exit_meaning"] == "Upstream down"
    assert doc["company"]["slug"] == "acme" and doc["runtemplate"]["id"] == 3
    assert "visible" not in str(doc)
    assert info(status="success").mode == "success"
    assert info(status="lost").mode == "fail"
    assert info().item_code == "acme-PRB-3"


def test_pyproject_declares_every_builtin_action_as_an_entry_point() -> None:
    import tomllib

    from tests.conftest import REPO

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["multiflexi.actions"] == registry.BUILTIN
