"""The API over HTTP against the real server, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import hashlib
import json
import signal

import yaml

from multiflexi.storage.blobs import iter_content
from tests.api.conftest import PASSWORD, Server, start_server, token_for


def test_ping_needs_no_credentials_and_lists_need_them(server: Server) -> None:
    with server.client() as c:
        assert c.get("/ping.json").json() == {"ping": [{"ping": "pong"}]}
        res = c.get("/jobs.json")
        assert res.status_code == 401
        assert res.json() == {"error": res.json()["error"], "success": False}
        assert "www-authenticate" in res.headers


def test_login_gives_a_token_that_works_until_logout(server: Server) -> None:
    with server.client() as c:
        res = c.post("/login.json", json={"username": "viewer", "password": PASSWORD})
        assert res.status_code == 201
        token = res.json()["token"]
    with server.with_token(token) as c:
        assert c.get("/companies.json").status_code == 200
        assert c.get("/companies.json").headers["cache-control"] == "no-store"
        assert c.post("/logout").json()["status"] == "success"
        assert c.get("/companies.json").status_code == 401


def test_lists_are_id_keyed_objects_by_default_and_arrays_on_request(server: Server) -> None:
    ids = server.ids
    with server.as_user("admin") as c:
        jobs = c.get("/jobs.json").json()
        assert set(jobs) == {str(ids["a"]["job"]), str(ids["b"]["job"])}
        arr = c.get("/jobs.json", params={"shape": "array"}).json()
        assert sorted(j["id"] for j in arr) == sorted(int(k) for k in jobs)
        generated = c.get("/apps.json", headers={"User-Agent": "OpenAPI-Generator/1.1.0/python"})
        assert isinstance(generated.json(), list)
        assert isinstance(c.get("/runtemplates.json").json(), dict)
        assert isinstance(c.get("/companies.json").json(), list)


def test_a_job_shows_env_as_an_object_with_secrets_redacted(server: Server) -> None:
    job_id = server.ids["a"]["job"]
    with server.as_user("operator") as c:
        res = c.get(f"/job/{job_id}.json")
    job = res.json()
    assert res.status_code == 200
    assert isinstance(job["env"], dict) and job["env"]["ROWS"] == "3"
    assert "s3cret" not in res.text
    assert job["status"] == "success" and job["exitcode"] == 0
    assert isinstance(job["company_id"], int)


def test_pagination_and_order_are_honoured(server: Server) -> None:
    with server.as_user("admin") as c:
        first = c.get("/jobs.json", params={"limit": 1, "order": "-id", "shape": "array"}).json()
        second = c.get(
            "/jobs.json", params={"limit": 1, "offset": 1, "order": "-id", "shape": "array"}
        ).json()
        assert first[0]["id"] > second[0]["id"]
        assert c.get("/jobs.json", params={"order": "env"}).status_code == 400
        assert c.get("/jobs.json", params={"limit": 0}).status_code == 422


def test_every_suffix_renders_the_same_data(server: Server) -> None:
    rt_id = server.ids["a"]["rt"]
    with server.as_user("admin") as c:
        as_json = c.get(f"/runtemplate/{rt_id}.json").json()
        as_yaml = yaml.safe_load(c.get(f"/runtemplate/{rt_id}.yaml").text)
        xml = c.get(f"/runtemplate/{rt_id}.xml")
        page = c.get(f"/runtemplate/{rt_id}.html")
    assert as_yaml["name"] == as_json["name"] and as_yaml["id"] == rt_id
    assert xml.headers["content-type"].startswith("application/xml") and "<root>" in xml.text
    assert page.headers["content-type"].startswith("text/html") and "<table>" in page.text


def test_a_job_is_created_from_a_run_template_with_one_off_env(server: Server) -> None:
    rt_id = server.ids["a"]["rt"]
    with server.as_user("operator") as c:
        res = c.post("/job/", json={"runtemplate_id": rt_id, "env": {"ROWS": "99"}})
        assert res.status_code == 201, res.text
        job_id = res.json()["job_id"]
        job = c.get(f"/job/{job_id}.json").json()
        assert job["env"]["ROWS"] == "99" and job["status"] == "scheduled"
        assert job["schedule_type"] == "adhoc-api"
        assert c.post(f"/job/{job_id}/run").json()["due"] == "now"
        assert c.post(f"/job/{job_id}/cancel").json()["status"] == "cancelled"
        assert c.post(f"/job/{job_id}/cancel").status_code == 409
        assert c.delete(f"/job/{job_id}.json").json()["deleted"] is True
        assert c.get(f"/job/{job_id}.json").status_code == 404
        assert c.post("/job/", json={}).status_code == 400


def test_a_running_job_cancelled_through_the_api_is_asked_to_stop(server: Server) -> None:
    from multiflexi import queue
    from multiflexi.storage.models import Job

    rt_id = server.ids["a"]["rt"]
    with server.as_user("operator") as c:
        job_id = c.post("/job/", json={"runtemplate_id": rt_id}).json()["job_id"]
        assert c.post(f"/job/{job_id}/run").json()["due"] == "now"
        claim = queue.claim_next(server.db, "api-test-executor", 60)
        assert claim is not None and claim.job_id == job_id  # running, "on another host"
        res = c.post(f"/job/{job_id}/cancel")
        assert res.status_code == 202, res.text
        assert res.json()["status"] == "cancelling"
        with server.db.read() as s:
            job = s.get(Job, job_id)
            assert job is not None and job.status == "running"
            assert job.cancel_requested is not None and job.cancel_by == "operator (api)"
    with server.as_user("viewer") as c:  # viewers read, never stop
        assert c.post(f"/job/{job_id}/cancel").status_code == 403


def test_artifacts_download_byte_exact_with_ranges(server: Server) -> None:
    job_id = server.ids["a"]["job"]
    art_id = server.ids["a"]["artifacts"]["data.bin"]
    expected = b"".join(iter_content(server.db, art_id))
    with server.as_user("viewer") as c:
        listing = c.get(f"/job/{job_id}/artifacts.json").json()
        assert {a["filename"] for a in listing} >= {"data.bin", "stdout.txt", "stderr.txt"}
        meta = c.get(f"/artifact/{art_id}.json").json()
        assert meta["size"] == len(expected) == 256 * 10000
        full = c.get(f"/artifact/{art_id}/download")
        assert full.content == expected
        assert hashlib.sha256(full.content).hexdigest() == meta["sha256"]
        assert full.headers["content-type"] == meta["content_type"]
        part = c.get(f"/artifact/{art_id}/download", headers={"Range": "bytes=1048570-1048585"})
        assert part.status_code == 206 and part.content == expected[1048570:1048586]
        assert part.headers["content-range"] == f"bytes 1048570-1048585/{len(expected)}"
        tail = c.get(f"/artifact/{art_id}/download", headers={"Range": "bytes=-10"})
        assert tail.content == expected[-10:]
        bad = c.get(f"/artifact/{art_id}/download", headers={"Range": "bytes=99999999-"})
        assert bad.status_code == 416
        by_name = c.get(f"/job/{job_id}/artifact/data.bin")
        assert by_name.content == expected


def test_output_streams_as_server_sent_events_until_the_job_ends(server: Server) -> None:
    job_id = server.ids["a"]["job"]
    with server.as_user("viewer") as c, c.stream("GET", f"/job/{job_id}/output") as res:
        assert res.headers["content-type"].startswith("text/event-stream")
        body = "".join(res.iter_text())
    assert "event: stdout" in body and "hello from" in body
    assert "event: stderr" in body and "warn" in body
    assert body.rstrip().endswith("event: end\ndata:")
    assert "s3cret" not in body


def test_bulk_deletion_is_for_admins_needs_a_filter_and_can_be_a_dry_run(server: Server) -> None:
    rt_id = server.ids["b"]["rt"]
    with server.as_user("operator") as c:
        assert c.delete("/jobs.json", params={"runtemplate_id": rt_id}).status_code == 403
    with server.as_user("admin") as c:
        assert c.delete("/jobs.json").status_code == 400
        made = c.post("/job/", json={"runtemplate_id": rt_id, "scheduled": "+1d"}).json()
        dry = c.delete(
            "/jobs.json", params={"runtemplate_id": rt_id, "status": "scheduled", "dry_run": True}
        ).json()
        assert dry == {
            "dry_run": True,
            "matched": 1,
            "deleted": 0,
            "job_ids": [made["job_id"]],
            "skipped_running": [],
        }
        assert c.get(f"/job/{made['job_id']}.json").status_code == 200
        done = c.delete(
            "/jobs.json", params={"runtemplate_id": rt_id, "status": "scheduled"}
        ).json()
        assert done["deleted"] == 1
        assert c.get(f"/job/{made['job_id']}.json").status_code == 404


def test_changes_through_the_api_are_in_the_audit_log(server: Server) -> None:
    with server.as_user("admin") as c:
        res = c.post("/company/", json={"name": f"Audit Co {server.proc.pid}"})
        assert res.status_code == 201
        company_id = res.json()["id"]
        log = c.get("/auditlog.json", params={"entity_type": "company"}).json()
    entry = next(e for e in log if e["entity_id"] == str(company_id))
    assert entry["login"] == "admin" and entry["source"] == "api"
    assert entry["action"] == "create" and entry["address"] == "127.0.0.1"


def test_the_gdpr_export_holds_only_the_callers_own_data(server: Server) -> None:
    with server.as_user("viewer") as c:
        data = c.get("/data-export-download").json()
    text = json.dumps(data)
    assert data["user_profile"]["username"] == "viewer"
    assert "argon2" not in text and "admin@example.com" not in text


def test_sigterm_stops_the_server_cleanly(server: Server, tmp_path_factory: object) -> None:
    import pathlib
    import tempfile

    tmp = pathlib.Path(tempfile.mkdtemp())
    other = start_server(server.db, tmp)
    # uvicorn finishes the requests in flight, then re-raises the signal so that the
    # parent (systemd) sees a normal stop by SIGTERM.
    assert other.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in other.log.read_text()


def test_a_token_of_a_user_works_as_bearer(server: Server) -> None:
    token = token_for(server.db, "viewer")
    with server.with_token(token) as c:
        companies = c.get("/companies.json").json()
    assert [x["id"] for x in companies] == [server.ids["a"]["company"]]


def test_ids_beyond_32_bits_are_refused_before_the_database(server: Server) -> None:
    with server.as_user("admin") as c:
        for path in ("/job/99999999999.json", "/artifact/99999999999/download", "/user/0.json"):
            res = c.get(path)
            assert res.status_code == 422, (path, res.text)
            assert res.json()["success"] is False
