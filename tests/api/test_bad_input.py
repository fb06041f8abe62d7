"""Hostile and malformed requests: each gets a clean 4xx JSON error and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from multiflexi.storage.models import AuditLog, Company, Job
from tests.api.conftest import Server, add_user


def _counts(server: Server) -> tuple[int, int, int]:
    with server.db.read() as s:
        return (
            int(s.scalar(select(func.count()).select_from(Job)) or 0),
            int(s.scalar(select(func.count()).select_from(Company)) or 0),
            int(s.scalar(select(func.count()).select_from(AuditLog)) or 0),
        )


@pytest.fixture
def unchanged(sqlite_server: Server) -> Iterator[Server]:
    before = _counts(sqlite_server)
    yield sqlite_server
    assert _counts(sqlite_server) == before


def _clean_error(res: object, status: int) -> None:
    import httpx

    assert isinstance(res, httpx.Response)
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/json"
    body = res.json()
    assert body["success"] is False and isinstance(body["error"], str)
    assert "Traceback" not in res.text and 'File "' not in res.text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"runtemplate_id": 1,', 400),
        (b"not json at all", 400),
        (b'{"runtemplate_id": "one"}', 422),
        (b'{"runtemplate_id": 1.5}', 422),
        (b'{"runtemplate_id": -1}', 422),
        (b'{"runtemplate_id": 99999999999}', 422),
        (b'{"runtemplate_id": 1, "env": {"A": 1}}', 422),
        (b'{"runtemplate_id": 1, "env": ["A=1"]}', 422),
        (b'{"runtemplate_id": 1, "bogus": true}', 422),
        (b"[1, 2, 3]", 422),
    ],
)
def test_malformed_or_mistyped_job_bodies(unchanged: Server, body: bytes, status: int) -> None:
    with unchanged.as_user("admin") as c:
        res = c.post("/job/", content=body, headers={"Content-Type": "application/json"})
    _clean_error(res, status)


def test_a_bad_variable_name_in_env_is_refused(unchanged: Server) -> None:
    rt = unchanged.ids["a"]["rt"]
    with unchanged.as_user("admin") as c:
        # Any name a process accepts is fine (`BANKA+`, even `A B;c`); `=` and NUL are not.
        for name in ("BAD=NAME", "BAD\u0000NAME", ""):
            res = c.post("/job/", json={"runtemplate_id": rt, "env": {name: "x"}})
            _clean_error(res, 400)


def test_huge_bodies_are_refused_declared_or_chunked(unchanged: Server) -> None:
    big = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    with unchanged.as_user("admin") as c:
        res = c.post("/company/", content=big, headers={"Content-Type": "application/json"})
        _clean_error(res, 413)

        def chunks() -> Iterator[bytes]:
            yield b'{"name": "'
            for _ in range(40):
                yield b"y" * 65536
            yield b'"}'

        res = c.post("/company/", content=chunks(), headers={"Content-Type": "application/json"})
        _clean_error(res, 413)


@pytest.mark.parametrize(
    "name",
    [
        "../../../../etc/passwd",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/etc/passwd",
        "/etc/passwd",
        "data.bin/../../stdout.txt",
        "data.bin%00.txt",
    ],
)
def test_path_traversal_in_artifact_names_finds_nothing(unchanged: Server, name: str) -> None:
    job = unchanged.ids["a"]["job"]
    with unchanged.as_user("admin") as c:
        res = c.get(f"/job/{job}/artifact/{name}")
    assert res.status_code in (400, 404), res.text
    assert b"root:" not in res.content
    _clean_error(res, res.status_code)


def test_sql_and_html_in_strings_are_stored_as_text_and_escaped(sqlite_server: Server) -> None:
    name = "Robert'); DROP TABLE job;-- <script>alert(1)</script>"
    with sqlite_server.as_user("admin") as c:
        made = c.post("/company/", json={"name": name})
        assert made.status_code == 201, made.text
        company = made.json()["id"]
        assert c.get(f"/company/{company}.json").json()["name"] == name
        page = c.get(f"/company/{company}.html").text
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
        assert c.get("/jobs.json").status_code == 200  # the table is still there
        assert c.get("/jobs.json", params={"order": "id; DROP TABLE job"}).status_code == 422
        assert c.get("/jobs.json", params={"status": "success' OR '1'='1"}).status_code == 422


def test_bad_credentials_and_suffixes(unchanged: Server) -> None:
    with unchanged.client(headers={"Authorization": "Basic %%%not-base64"}) as c:
        _clean_error(c.get("/jobs.json"), 401)
    with unchanged.client(headers={"Authorization": "Bearer mfx_" + "A" * 43}) as c:
        _clean_error(c.get("/jobs.json"), 401)
    with unchanged.as_user("admin") as c:
        _clean_error(c.get("/jobs.csv"), 422)
        _clean_error(c.get("/job/abc.json"), 422)
        _clean_error(c.get("/no/such/path"), 404)
        _clean_error(c.put("/jobs.json"), 404)


def test_unknown_fields_in_writes_are_refused(unchanged: Server) -> None:
    rt = unchanged.ids["a"]["rt"]
    with unchanged.as_user("admin") as c:
        res = c.post(f"/runtemplate/{rt}.json", json={"id": rt, "name": "x", "evil": 1})
        _clean_error(res, 422)
        res = c.post(f"/runtemplate/{rt}.json", json={"id": rt + 1000, "name": "x"})
        _clean_error(res, 400)
        res = c.post("/user/", json={"login": "x y", "email": "bad"})
        _clean_error(res, 400)


def test_failed_logins_are_throttled_then_locked(sqlite_server: Server) -> None:
    add_user(sqlite_server.db, "throttled")
    codes = []
    with sqlite_server.client(auth=("throttled", "wrong-password")) as c:
        for _ in range(5):
            codes.append(c.get("/jobs.json").status_code)
        res = c.get("/jobs.json")
    assert codes[:4] == [401] * 4 and 429 in [*codes[4:], res.status_code]
    assert int(res.headers.get("retry-after", "1")) >= 1
    with sqlite_server.as_user("throttled") as c:  # the right password waits too
        assert c.get("/jobs.json").status_code == 429
