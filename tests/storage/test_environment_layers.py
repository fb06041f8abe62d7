"""The most specific value wins (DESIGN.md "Environment assembly"), on every backend, with
real processes: global job environment -> app defaults -> company environment ->
credentials -> run template configuration -> injected ``MULTIFLEXI_*`` -> overrides.
Every value says where it came from and what it shadowed; secrets stay redacted."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from multiflexi.jobs.globalenv import set_global_env, unset_global_env
from multiflexi.jobs.runner import JobRunner
from multiflexi.jobs.service import create_job, env_rows
from multiflexi.queue import claim_job, new_worker_id
from multiflexi.runtemplates.service import get_runtemplate, show_runtemplate
from multiflexi.secrets import REDACTED
from multiflexi.storage.database import Database
from multiflexi.storage.models import Job
from tests.factories import make_script, make_setup

#: Writes the variables it was given to RESULT_FILE.
DUMP = """
import json, os
names = ["LAYERED", "ONLY_GLOBAL", "ONLY_COMPANY", "HTTPS_PROXY", "BANK_TOKEN", "BANKA+"]
json.dump({n: os.environ.get(n) for n in names}, open(os.environ["RESULT_FILE"], "w"))
"""


def run(db: Database, rt_id: int, **kwargs: Any) -> tuple[Job, dict[str, str | None]]:
    job = create_job(db, db.settings, runtemplate_id=rt_id, **kwargs)
    claim = claim_job(db, job.id, new_worker_id("test"), db.settings.lease_seconds)
    JobRunner(db, db.settings, job_hooks=[]).perform_job(claim)
    from multiflexi.storage import blobs
    from multiflexi.storage.models import Artifact

    with db.read() as s:
        done = s.get_one(Job, job.id)
        art = s.query(Artifact).filter_by(job_id=job.id, kind="result").one()
    seen = json.loads(b"".join(blobs.iter_content(db, art.id)))
    return done, seen


def setup(db: Database, tmp_path: Path, **kwargs: Any) -> tuple[int, int, int]:
    script = make_script(tmp_path, DUMP)
    return make_setup(
        db,
        executable=sys.executable,
        cmdparams=str(script),
        fields={
            "LAYERED": {"defval": "from the app"},
            "RESULT_FILE": {"defval": "seen.json"},
            "BANK_TOKEN": {"type": "password"},
        },
        **kwargs,
    )


def test_the_run_template_wins_over_the_company_and_the_company_over_the_global_layer(
    any_db: Database, tmp_path: Path
) -> None:
    _, company_id, rt_id = setup(
        any_db,
        tmp_path,
        company_env={"LAYERED": "from the company", "ONLY_COMPANY": "c"},
        config={"LAYERED": "from the template"},
    )
    with any_db.session() as s:
        set_global_env(s, {"LAYERED": "from everywhere", "ONLY_GLOBAL": "g"})
    job, seen = run(any_db, rt_id)
    assert job.status == "success", job.reason
    # Upstream's accidental order gave the company's value here.
    assert seen["LAYERED"] == "from the template"
    assert (seen["ONLY_GLOBAL"], seen["ONLY_COMPANY"]) == ("g", "c")
    rows = {r["name"]: r for r in env_rows(job, None)}
    assert rows["LAYERED"]["source"] == f"runtemplate:{rt_id}"
    assert rows["LAYERED"]["shadowed"] == [
        {"source": f"company:{company_id}", "value": "from the company"},
        {"source": f"app:{job.app_id} default", "value": "from the app"},
        {"source": "global", "value": "from everywhere"},
    ]
    assert rows["ONLY_GLOBAL"]["source"] == "global"
    assert rows["ONLY_GLOBAL"]["shadowed"] == []

    # A one-off override beats them all, and says what it replaced.
    job, seen = run(any_db, rt_id, overrides={"LAYERED": "just this once"})
    assert seen["LAYERED"] == "just this once"
    rows = {r["name"]: r for r in env_rows(job, None)}
    assert rows["LAYERED"]["source"] == "override"
    assert rows["LAYERED"]["shadowed"][0] == {
        "source": f"runtemplate:{rt_id}",
        "value": "from the template",
    }


def test_a_company_value_applies_where_the_template_sets_none_and_show_says_so(
    any_db: Database, tmp_path: Path
) -> None:
    _, company_id, rt_id = setup(any_db, tmp_path, company_env={"LAYERED": "from the company"})
    job, seen = run(any_db, rt_id)
    assert seen["LAYERED"] == "from the company"
    with any_db.read() as s:
        shown = show_runtemplate(s, get_runtemplate(s, rt_id), "UTC")
    row = next(c for c in shown["config"] if c["name"] == "LAYERED")
    assert (row["value"], row["source"]) == ("from the company", f"company:{company_id}")
    assert row["shadowed"] == [{"source": f"app:{job.app_id} default", "value": "from the app"}]


def test_a_proxy_set_once_in_the_global_layer_reaches_every_company(
    any_db: Database, tmp_path: Path
) -> None:
    templates = [setup(any_db, tmp_path, slug=f"c{i}")[2] for i in range(2)]
    with any_db.session() as s:
        set_global_env(s, {"HTTPS_PROXY": "http://proxy.example:3128"})
    for rt_id in templates:
        assert run(any_db, rt_id)[1]["HTTPS_PROXY"] == "http://proxy.example:3128"
        with any_db.read() as s:
            shown = show_runtemplate(s, get_runtemplate(s, rt_id), "UTC")
        assert {"name": "HTTPS_PROXY", "source": "global"}.items() <= next(
            e for e in shown["environment"] if e["name"] == "HTTPS_PROXY"
        ).items()
    with any_db.session() as s:
        unset_global_env(s, ["HTTPS_PROXY"])
    assert run(any_db, templates[0])[1]["HTTPS_PROXY"] is None


def test_shadowed_secrets_stay_redacted_and_sealed(any_db: Database, tmp_path: Path) -> None:
    _, _, rt_id = setup(
        any_db,
        tmp_path,
        company_env={"BANK_TOKEN": "company-secret-1"},
        config={"BANK_TOKEN": "template-secret-2"},
    )
    job, seen = run(any_db, rt_id)
    assert seen["BANK_TOKEN"] == "template-secret-2"
    stored = json.dumps(job.env)
    assert "company-secret-1" not in stored and "template-secret-2" not in stored
    row = next(r for r in env_rows(job, None) if r["name"] == "BANK_TOKEN")
    assert row["value"] == REDACTED
    assert row["shadowed"] == [{"source": f"company:{job.company_id}", "value": REDACTED}]
    with any_db.read() as s:
        shown = json.dumps(show_runtemplate(s, get_runtemplate(s, rt_id), "UTC"), default=str)
    assert "company-secret-1" not in shown and "template-secret-2" not in shown
    from multiflexi.secrets import Vault

    revealed = env_rows(job, Vault.from_settings(any_db.settings, any_db))
    row = next(r for r in revealed if r["name"] == "BANK_TOKEN")
    assert row["shadowed"][0]["value"] == "company-secret-1"


def test_bulk_created_jobs_get_the_same_layers_as_create_job(
    any_db: Database, tmp_path: Path
) -> None:
    from multiflexi.scheduling.bulk import JobRequest, bulk_create_jobs
    from multiflexi.storage.types import utcnow

    _, _, rt_id = setup(
        any_db,
        tmp_path,
        company_env={"LAYERED": "from the company", "BANK_TOKEN": "c-secret"},
        config={"LAYERED": "from the template", "BANK_TOKEN": "t-secret"},
    )
    with any_db.session() as s:
        set_global_env(s, {"ONLY_GLOBAL": "g", "LAYERED": "g"})
    single = create_job(any_db, any_db.settings, runtemplate_id=rt_id)

    def bulk(session: Any) -> list[int]:
        rt = get_runtemplate(session, rt_id)
        made = bulk_create_jobs(
            session, any_db.settings, [JobRequest(rt, utcnow(), "adhoc-cli") for _ in range(3)]
        )
        return [j.id for j in made]

    ids = any_db.run(bulk)
    with any_db.read() as s:
        jobs = [s.get_one(Job, i) for i in [single.id, *ids]]
    shapes = [[(r["name"], r["source"], r["shadowed"]) for r in env_rows(j, None)] for j in jobs]
    assert all(shape == shapes[0] for shape in shapes)
    assert len({json.dumps(j.env) for j in jobs}) == len(jobs), "secrets sealed anew per job"
