"""No secret value of a job leaves MultiFlexi: every payload of every integration is scanned.

A password-typed configuration value is planted; the job prints it to stdout and stderr
(masking switched off, so the stored output really contains it), writes it into its
metrics file, and fails. WebHook, Zabbix, CustomCommand and GitHub actions run, with the
Zabbix monitoring hook on. Every captured HTTP request, every trapper packet (raw bytes)
and every recorded outcome is searched for the secret.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import select

from multiflexi.actions.config import set_action
from multiflexi.storage import blobs
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, JobStatus
from tests.factories import make_script, make_setup
from tests.support_servers import (
    HttpReceiver,
    Reply,
    TrapperServer,
    outcomes,
    run_job,
    settings_for,
)

SECRET = "pl4nted-S3CRET-value"
ACTION_SECRETS = ("hook-signing-key", "ghp_github_token_value")

LEAKY = """
import json, os, sys
token = os.environ["TOKEN"]
print("the token is", token)
print("failing with token", token, file=sys.stderr)
with open(os.path.join(os.environ["MULTIFLEXI_TMP"], "metrics.json"), "w") as fh:
    json.dump({"token": token, "rows": 1}, fh)
sys.exit(1)
"""


def test_no_secret_appears_in_any_payload_of_any_integration(
    sqlite_db: Database, tmp_path: Path
) -> None:
    script = make_script(tmp_path, LEAKY)
    _, _, rt_id = make_setup(
        sqlite_db,
        cmdparams=str(script),
        fields={"TOKEN": {"type": "password"}},
        config={"TOKEN": SECRET},
        mask_secrets=False,
    )
    with TrapperServer() as trapper, HttpReceiver(default=Reply(201, {"number": 1})) as http:
        settings = settings_for(sqlite_db, **trapper.settings_values())
        for name, options in (
            ("WebHook", {"uri": http.url + "/hook", "secret": ACTION_SECRETS[0]}),
            ("Zabbix", {"metricsfile": "metrics.json"}),
            ("CustomCommand", {"command": f'{sys.executable} -c "import os; print(os.environ)"'}),
            (
                "GitHub",
                {"token": ACTION_SECRETS[1], "repository": "acme/tool", "api_url": http.url},
            ),
        ):
            set_action(
                sqlite_db, settings, rt_id=rt_id, mode="fail", name=name, assignments=options
            )
        job = run_job(sqlite_db, settings, rt_id)
        requests = http.wait_for(2)
        packets = trapper.wait_for(4)  # LLD, jobStart, jobDone, Zabbix action

    assert job.status == JobStatus.FAILED
    with sqlite_db.read() as s:
        stdout = s.scalars(
            select(Artifact).where(Artifact.job_id == job.id, Artifact.kind == "stdout")
        ).one()
    # Proof the test means something: the secret is in the job's own stored output.
    assert SECRET.encode() in b"".join(blobs.iter_content(sqlite_db, stdout.id))

    captured: list[bytes] = [p.raw for p in packets]
    captured += [r.body for r in requests]
    captured += [repr(r.headers).encode() for r in requests if r.path == "/hook"]
    results = outcomes(sqlite_db, job.id)
    captured += [str(o).encode() for o in results]
    assert {o["action"] for o in results} == {"WebHook", "Zabbix", "CustomCommand", "GitHub"}
    assert all(o["ok"] for o in results), results
    for blob in captured:
        assert SECRET.encode() not in blob, blob[:300]
    for blob in [str(o).encode() for o in results]:
        for own in ACTION_SECRETS:
            assert own.encode() not in blob
    # ...and the payloads did carry the data around the secret.
    assert any(b"failing with token" in r.body for r in requests)
    assert any(b'\\"rows\\": 1' in p.raw or b'"rows": 1' in p.raw for p in packets)
