"""The permission matrix: every operation x every kind of caller gives the expected status,
and nothing of a company the caller is not assigned to appears in any answer.

The same matrix is printed in docs/api.md; when they differ, this test prints the table.
Run ``python -m tests.api.test_permissions`` is not needed: the failure message has it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from multiflexi.storage.models import Company
from tests.api.conftest import Server, token_for
from tests.conftest import REPO

CALLERS = (
    "no credentials",
    "wrong password",
    "revoked token",
    "expired token",
    "viewer of another company",
    "viewer",
    "operator",
    "admin",
)


@dataclass(frozen=True)
class Op:
    name: str
    method: str
    path: str
    #: who may: "any" (every authenticated user), "read" (viewer of the company),
    #: "write" (operator of the company), "admin"
    level: str
    ok: int = 200
    #: True when the object belongs to company A (others get 404); False for global data
    scoped: bool = True
    body: Any = None
    params: dict[str, Any] | None = None


def operations(ids: dict[str, Any]) -> list[Op]:
    a = ids["a"]
    art = a["artifacts"]["data.bin"]
    return [
        Op("GET /apps.json", "GET", "/apps.json", "any", scoped=False),
        Op("GET /companies.json", "GET", "/companies.json", "any", scoped=False),
        Op("GET /company/{id}.json", "GET", f"/company/{a['company']}.json", "read"),
        Op("GET /runtemplates.json", "GET", "/runtemplates.json", "any", scoped=False),
        Op("GET /runtemplate/{id}.json", "GET", f"/runtemplate/{a['rt']}.json", "read"),
        Op(
            "POST /runtemplate/{id}.json",
            "POST",
            f"/runtemplate/{a['rt']}.json",
            "write",
            201,
            body={"id": a["rt"], "note": "changed"},
        ),
        Op(
            "POST /runtemplate",
            "POST",
            "/runtemplate",
            "write",
            201,
            body={"app_id": a["app"], "company_id": a["company"], "name": "made by API"},
        ),
        Op("GET /jobs.json", "GET", "/jobs.json", "any", scoped=False),
        Op("GET /job/{id}.json", "GET", f"/job/{a['job']}.json", "read"),
        Op(
            "POST /job/",
            "POST",
            "/job/",
            "write",
            201,
            body={"runtemplate_id": a["rt"], "scheduled": "+1d"},
        ),
        Op("DELETE /job/{id}", "DELETE", "/job/{fresh}", "write"),
        Op("GET /job/{id}/artifacts.json", "GET", f"/job/{a['job']}/artifacts.json", "read"),
        Op("GET /artifact/{id}/download", "GET", f"/artifact/{art}/download", "read"),
        Op("GET /job/{id}/output", "GET", f"/job/{a['job']}/output", "read"),
        Op("GET /credentials.json", "GET", "/credentials.json", "any", scoped=False),
        Op("GET /users.json", "GET", "/users.json", "any", scoped=False),
        Op(
            "POST /user/",
            "POST",
            "/user/",
            "admin",
            201,
            scoped=False,
            body={"login": "new{n}", "email": "n{n}@example.com"},
        ),
        Op(
            "POST /company/",
            "POST",
            "/company/",
            "admin",
            201,
            scoped=False,
            body={"name": "New Co {n}"},
        ),
        Op(
            "POST /app/",
            "POST",
            "/app/",
            "admin",
            201,
            scoped=False,
            body={"name": "New app {n}", "executable": "true"},
        ),
        Op(
            "DELETE /jobs.json (dry run)",
            "DELETE",
            "/jobs.json",
            "admin",
            scoped=False,
            params={"runtemplate_id": a["rt"], "dry_run": "true"},
        ),
        Op("GET /auditlog.json", "GET", "/auditlog.json", "admin", scoped=False),
        Op("GET /queue/status.json", "GET", "/queue/status.json", "admin", scoped=False),
        Op("GET /metrics", "GET", "/metrics", "admin", scoped=False),
        Op("GET /data-export-download", "GET", "/data-export-download", "any", scoped=False),
    ]


def expected(op: Op, caller: str) -> int:
    if caller in CALLERS[:4]:
        return 401
    if op.level == "any":
        return op.ok
    if op.level == "admin":
        return op.ok if caller == "admin" else 403
    if caller == "viewer of another company":
        return 404 if op.scoped else 403
    if op.level == "write" and caller == "viewer":
        return 403
    return op.ok


def render_table(matrix: dict[str, dict[str, int]]) -> str:
    head = "| operation | " + " | ".join(CALLERS) + " |"
    rule = "|---|" + "---|" * len(CALLERS)
    rows = [
        f"| `{name}` | " + " | ".join(str(cells[c]) for c in CALLERS) + " |"
        for name, cells in matrix.items()
    ]
    return "\n".join([head, rule, *rows])


def _clients(server: Server) -> dict[str, Callable[[], httpx.Client]]:
    from multiflexi.accounts.tokens import revoke_plain

    revoked = token_for(server.db, "operator")
    with server.db.session() as s:
        revoke_plain(s, revoked)
    expired = token_for(server.db, "admin", lifetime=timedelta(microseconds=1))
    return {
        "no credentials": server.client,
        "wrong password": lambda: server.client(auth=("admin", "not-the-password")),
        "revoked token": lambda: server.with_token(revoked),
        "expired token": lambda: server.with_token(expired),
        "viewer of another company": lambda: server.as_user("other"),
        "viewer": lambda: server.as_user("viewer"),
        "operator": lambda: server.as_user("operator"),
        "admin": lambda: server.as_user("admin"),
    }


def _fresh_job(server: Server) -> int:
    from multiflexi.jobs.service import create_job

    rt = server.ids["a"]["rt"]
    return create_job(server.db, server.db.settings, runtemplate_id=rt, at=None).id


@pytest.mark.slow
def test_the_permission_matrix(sqlite_server: Server) -> None:
    server = sqlite_server
    with server.db.read() as s:
        names = {c.id: (c.name, c.slug) for c in s.query(Company)}
    a_marks = names[server.ids["a"]["company"]]
    b_marks = names[server.ids["b"]["company"]]
    observed: dict[str, dict[str, int]] = {}
    wrong: list[str] = []
    counter = 0
    clients = _clients(server)
    for op in operations(server.ids):
        observed[op.name] = {}
        for caller, make in clients.items():
            counter += 1
            path = op.path
            if "{fresh}" in path:
                path = path.replace("{fresh}", str(_fresh_job(server)))
            body = op.body
            if isinstance(body, dict):
                body = {
                    k: v.replace("{n}", str(counter)) if isinstance(v, str) else v
                    for k, v in body.items()
                }
            with make() as c:
                res = c.request(op.method, path, json=body, params=op.params)
            observed[op.name][caller] = res.status_code
            if res.status_code != expected(op, caller):
                wrong.append(f"{op.name} as {caller}: {res.status_code} {res.text[:200]}")
            if res.status_code >= 400:
                assert res.headers["content-type"] == "application/json", op.name
                assert res.json()["success"] is False
            foreign = a_marks if caller == "viewer of another company" else b_marks
            if caller in ("viewer of another company", "viewer", "operator"):
                for mark in foreign:
                    assert mark not in res.text, f"{op.name} as {caller} shows {mark!r}"
    assert not wrong, "\n".join(wrong)
    table = render_table(observed)
    docs = (REPO / "docs" / "api.md").read_text()
    assert table in docs, "docs/api.md lacks the permission matrix; it is:\n" + table


@pytest.mark.parametrize("caller", ["viewer", "operator"])
def test_counts_and_lists_never_include_another_companys_objects(
    sqlite_server: Server, caller: str
) -> None:
    server = sqlite_server
    b = server.ids["b"]
    with server.as_user(caller) as c:
        assert str(b["job"]) not in c.get("/jobs.json").json()
        assert c.get("/jobs/count.json", params={"company_id": b["company"]}).json() == {"count": 0}
        assert c.get(f"/job/{b['job']}.json").status_code == 404
        assert c.get(f"/job/{b['job']}/output").status_code == 404
        art = b["artifacts"]["data.bin"]
        assert c.get(f"/artifact/{art}/download").status_code == 404
        assert c.get(f"/job/{b['job']}/artifact/data.bin").status_code == 404
        status = c.get("/status.json").json()["status"]
        assert status["companies"] == 1
