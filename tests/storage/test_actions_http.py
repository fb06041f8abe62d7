"""WebHook, GitHub and Redmine actions, end to end against a real local HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import pytest

from multiflexi.actions.config import set_action
from multiflexi.storage.database import Database
from multiflexi.storage.models import JobStatus
from tests.factories import make_script, make_setup
from tests.support_servers import (
    PROBE,
    HttpReceiver,
    Reply,
    closed_port,
    outcomes,
    run_job,
    settings_for,
)


def probe_setup(db: Database, tmp_path: Path, exit_code: int = 0, **kw: object) -> int:
    script = make_script(tmp_path, PROBE)
    _, _, rt_id = make_setup(
        db,
        cmdparams=str(script),
        fields={"EXIT": {"defval": str(exit_code)}},
        **kw,  # type: ignore[arg-type]
    )
    return rt_id


def test_a_webhook_posts_a_signed_json_document_of_the_finished_job(
    any_db: Database, tmp_path: Path
) -> None:
    rt_id = probe_setup(any_db, tmp_path)
    settings = settings_for(any_db)
    with HttpReceiver() as receiver:
        set_action(
            any_db,
            settings,
            rt_id=rt_id,
            mode="success",
            name="WebHook",
            assignments={"uri": receiver.url + "/hooks/mf", "secret": "shared-k3y"},
        )
        job = run_job(any_db, settings, rt_id)
        [request] = receiver.wait_for(1)
    assert job.status == JobStatus.SUCCESS
    assert request.method == "POST" and request.path == "/hooks/mf"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-multiflexi-job"] == str(job.id)
    expected = hmac.new(b"shared-k3y", request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-multiflexi-signature"] == f"sha256={expected}"
    doc = request.json()
    assert doc["event"] == "job.finished"
    assert doc["job"]["id"] == job.id and doc["job"]["status"] == "success"
    assert doc["job"]["exitcode"] == 0 and doc["job"]["exit_meaning"] == "success"
    assert doc["runtemplate"]["id"] == rt_id and doc["company"]["slug"].startswith("acme")
    assert doc["metrics"]["wall_seconds"] > 0
    names = {a["filename"]: a for a in doc["artifacts"]}
    assert {"stdout.txt", "stderr.txt", "metrics.json"} <= set(names)
    hint = names["metrics.json"]["download"]
    assert hint == f"multiflexi-cli artifact:get {names['metrics.json']['id']} --output FILE"
    [outcome] = outcomes(any_db, job.id)
    assert outcome["action"] == "WebHook" and outcome["mode"] == "success" and outcome["ok"]
    assert outcome["message"] == (
        f"delivered to http://127.0.0.1:{receiver.server.server_port}: HTTP 200 after 1 attempt"
    )
    assert "shared-k3y" not in outcome["message"]


def test_a_webhook_answered_500_is_retried_and_then_delivered(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt_id = probe_setup(sqlite_db, tmp_path)
    settings = settings_for(sqlite_db)
    with HttpReceiver(Reply(500), Reply(503)) as receiver:
        set_action(
            sqlite_db,
            settings,
            rt_id=rt_id,
            mode="success",
            name="WebHook",
            assignments={"uri": receiver.url},
        )
        job = run_job(sqlite_db, settings, rt_id)
        requests = receiver.wait_for(3)
    assert len(requests) == 3 and requests[0].body == requests[2].body
    [outcome] = outcomes(sqlite_db, job.id)
    assert outcome["ok"] and outcome["message"].endswith("HTTP 200 after 3 attempts")


def test_a_webhook_refused_with_4xx_is_not_retried(sqlite_db: Database, tmp_path: Path) -> None:
    rt_id = probe_setup(sqlite_db, tmp_path)
    settings = settings_for(sqlite_db)
    with HttpReceiver(default=Reply(404)) as receiver:
        set_action(
            sqlite_db,
            settings,
            rt_id=rt_id,
            mode="success",
            name="WebHook",
            assignments={"uri": receiver.url},
        )
        job = run_job(sqlite_db, settings, rt_id)
        assert len(receiver.wait_for(1)) == 1
    [outcome] = outcomes(sqlite_db, job.id)
    assert not outcome["ok"] and "HTTP 404 after 1 attempt" in outcome["message"]


def test_a_receiver_that_is_down_fails_the_action_never_the_job(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt_id = probe_setup(sqlite_db, tmp_path)
    settings = settings_for(sqlite_db)
    set_action(
        sqlite_db,
        settings,
        rt_id=rt_id,
        mode="success",
        name="WebHook",
        assignments={"uri": f"http://127.0.0.1:{closed_port()}/x", "attempts": "2"},
    )
    job = run_job(sqlite_db, settings, rt_id)
    assert job.status == JobStatus.SUCCESS and job.exitcode == 0
    [outcome] = outcomes(sqlite_db, job.id)
    assert not outcome["ok"]
    assert "cannot connect: ConnectError after 2 attempts" in outcome["message"]


def test_a_hanging_receiver_is_abandoned_at_the_action_timeout(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt_id = probe_setup(sqlite_db, tmp_path)
    settings = settings_for(sqlite_db)
    with HttpReceiver(default=Reply(hang=True)) as receiver:
        set_action(
            sqlite_db,
            settings,
            rt_id=rt_id,
            mode="success",
            name="WebHook",
            assignments={"uri": receiver.url, "timeout": "1"},
        )
        started = time.monotonic()
        job = run_job(sqlite_db, settings, rt_id)
        elapsed = time.monotonic() - started
    assert job.status == JobStatus.SUCCESS
    [outcome] = outcomes(sqlite_db, job.id)
    assert not outcome["ok"] and "timed out" in outcome["message"]
    assert 0.9 < outcome["duration"] < 2.5 and elapsed < 10


def github_setup(db: Database, tmp_path: Path) -> int:
    return probe_setup(
        db, tmp_path, exit_code=3, exit_codes={3: ("Upstream not reachable", "error")}
    )


def test_github_opens_an_issue_describing_the_failure(sqlite_db: Database, tmp_path: Path) -> None:
    rt_id = github_setup(sqlite_db, tmp_path)
    settings = settings_for(sqlite_db)
    answer = {"number": 17, "html_url": "https://github.example/acme/tool/issues/17"}
    with HttpReceiver(default=Reply(201, answer)) as api:
        set_action(
            sqlite_db,
            settings,
            rt_id=rt_id,
            mode="fail",
            name="GitHub",
            assignments={
                "token": "ghp_T0KEN",
                "repository": "acme/tool",
                "api_url": api.url + "/api",
            },
        )
        job = run_job(sqlite_db, settings, rt_id)
        [request] = api.wait_for(1)
    assert job.status == JobStatus.FAILED
    assert request.method == "POST" and request.path == "/api/repos/acme/tool/issues"
    assert request.headers["authorization"] == "Bearer ghp_T0KEN"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    issue = request.json()
    assert issue["title"].endswith(f"failed on {issue['title'].split(' failed on ')[1]}")
    assert issue["title"].endswith(f"(job {job.id})") and " failed on Acme " in issue["title"]
    assert issue["labels"] == ["bug"]
    body = issue["body"]
    assert "| Exit code | 3 (Upstream not reachable) |" in body
    assert "exit code 3: Upstream not reachable" in body
    assert "err line: something broke" in body and "MultiFlexi " in body
    assert job.command in body
    [outcome] = outcomes(sqlite_db, job.id)
    assert outcome["ok"] and outcome["message"].startswith("issue #17 opened in acme/tool")


def test_github_refusing_the_issue_is_a_failed_action(sqlite_db: Database, tmp_path: Path) -> None:
    rt_id = github_setup(sqlite_db, tmp_path)
    settings = settings_for(sqlite_db)
    with HttpReceiver(default=Reply(401, {"message": "Bad credentials"})) as api:
        set_action(
            sqlite_db,
            settings,
            rt_id=rt_id,
            mode="fail",
            name="GitHub",
            assignments={"token": "wrong", "repository": "acme/tool", "api_url": api.url},
        )
        job = run_job(sqlite_db, settings, rt_id)
    [outcome] = outcomes(sqlite_db, job.id)
    assert not outcome["ok"]
    assert outcome["message"] == "GitHub refused the issue: HTTP 401: Bad credentials"


def test_redmine_creates_an_issue_in_the_project(sqlite_db: Database, tmp_path: Path) -> None:
    rt_id = github_setup(sqlite_db, tmp_path)
    settings = settings_for(sqlite_db)
    with HttpReceiver(default=Reply(201, {"issue": {"id": 4242}})) as redmine:
        set_action(
            sqlite_db,
            settings,
            rt_id=rt_id,
            mode="fail",
            name="Redmine",
            assignments={
                "url": redmine.url + "/redmine/",
                "token": "rm-k3y",
                "project_id": "ops",
                "tracker_id": "3",
            },
        )
        job = run_job(sqlite_db, settings, rt_id)
        [request] = redmine.wait_for(1)
    assert request.method == "POST" and request.path == "/redmine/issues.json"
    assert request.headers["x-redmine-api-key"] == "rm-k3y"
    issue = request.json()["issue"]
    assert issue["project_id"] == "ops" and issue["tracker_id"] == 3
    assert issue["subject"].endswith(f"(job {job.id})")
    assert "Upstream not reachable" in issue["description"]
    [outcome] = outcomes(sqlite_db, job.id)
    assert outcome["ok"] and outcome["message"].startswith("issue #4242 created")


@pytest.mark.parametrize("status", ["success", "fail"])
def test_only_the_actions_of_the_jobs_mode_run(
    sqlite_db: Database, tmp_path: Path, status: str
) -> None:
    # Exit 2 is declared a success by the app: a success job, whatever the number says.
    code = 2 if status == "success" else 5
    rt_id = probe_setup(
        sqlite_db, tmp_path, exit_code=code, exit_codes={2: ("Nothing to do", "success")}
    )
    settings = settings_for(sqlite_db)
    with HttpReceiver() as receiver:
        for mode in ("success", "fail"):
            set_action(
                sqlite_db,
                settings,
                rt_id=rt_id,
                mode=mode,
                name="WebHook",
                assignments={"uri": f"{receiver.url}/{mode}"},
            )
        job = run_job(sqlite_db, settings, rt_id)
        [request] = receiver.wait_for(1)
    assert job.status == (JobStatus.SUCCESS if status == "success" else JobStatus.FAILED)
    assert request.path == f"/{status}"
    assert [o["mode"] for o in outcomes(sqlite_db, job.id)] == [status]


def test_a_webhook_whose_uri_carries_a_token_delivers_to_the_whole_uri(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rt_id = probe_setup(sqlite_db, tmp_path)
    settings = settings_for(sqlite_db)
    with HttpReceiver() as receiver:
        set_action(
            sqlite_db,
            settings,
            rt_id=rt_id,
            mode="success",
            name="WebHook",
            assignments={"uri": receiver.url + "/hooks/mf?token=s3cr3t-t0ken&x=1"},
        )
        job = run_job(sqlite_db, settings, rt_id)
        [request] = receiver.wait_for(1)
    assert request.path == "/hooks/mf?token=s3cr3t-t0ken&x=1"
    [outcome] = outcomes(sqlite_db, job.id)
    assert outcome["ok"] and "s3cr3t-t0ken" not in outcome["message"]
