"""Company and run-template services on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import func, select

from multiflexi.companies.service import (
    assign_app,
    create_company,
    find_company,
    get_company,
    remove_company,
    set_env,
    unassign_app,
    update_company,
)
from multiflexi.errors import Conflict
from multiflexi.runtemplates.service import (
    config_layer,
    create_runtemplate,
    delete_runtemplate,
    get_runtemplate,
    show_runtemplate,
)
from multiflexi.secrets import Vault
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    App,
    Company,
    CompanyApp,
    CompanyEnv,
    ConfField,
    Configuration,
    Job,
    RunTemplate,
    ScheduleEntry,
)

VAULT = Vault("master-key-of-this-test")


def make_app(db: Database, name: str = "Importer") -> int:
    with db.session() as s:
        app = App(
            name=name,
            executable="/bin/true",
            uuid=str(uuid4()),
            fields=[
                ConfField(keyname="PASSWORD", type="password", position=0),
                ConfField(keyname="LIMIT", type="integer", defval="10", position=1),
            ],
        )
        s.add(app)
        s.flush()
        return app.id


def test_slugs_stay_unique_and_names_unique_regardless_of_case(any_db: Database) -> None:
    with any_db.session() as s:
        slugs = [create_company(s, name=n).slug for n in ("Acme Corp", "Acme-Corp", "ACME  corp!")]
    assert slugs == ["acme_corp", "acme_corp_2", "acme_corp_3"]
    with pytest.raises(Conflict, match="already exists"), any_db.session() as s:
        create_company(s, name="acme corp")
    with pytest.raises(Conflict, match="slug 'acme_corp' already exists"), any_db.session() as s:
        update_company(s, 2, {"slug": "acme_corp"})
    with any_db.read() as s:
        assert s.scalar(select(func.count(Company.id))) == 3
        assert s.get_one(Company, 2).slug == "acme_corp_2"


def test_forced_removal_cascades_to_environment_assignments_and_templates(
    any_db: Database,
) -> None:
    app_id = make_app(any_db)
    with any_db.session() as s:
        company = create_company(s, name="Acme")
        set_env(s, company, {"A": "1", "B": "2"})
        app = s.get_one(App, app_id)
        rt, _ = create_runtemplate(
            s, VAULT, app=app, company=company, settings={}, config={"LIMIT": "3"}
        )
        cid, rt_id = company.id, rt.id
    with pytest.raises(Conflict, match="add --force"), any_db.session() as s:
        remove_company(s, cid)
    with any_db.session() as s:
        assert remove_company(s, cid, force=True) == [rt_id]
    with any_db.read() as s:
        for model in (Company, CompanyEnv, CompanyApp, RunTemplate, Configuration):
            assert s.scalar(select(func.count()).select_from(model)) == 0, model
        assert s.scalar(select(func.count(App.id))) == 1


def test_deleting_a_template_keeps_jobs_and_cancels_waiting_ones(any_db: Database) -> None:
    app_id = make_app(any_db)
    with any_db.session() as s:
        company = create_company(s, name="Acme")
        rt = assign_app(s, company, s.get_one(App, app_id))
        assert rt is not None
        rt_id, cid = rt.id, company.id
        done = Job(app_id=app_id, company_id=cid, runtemplate_id=rt_id, status="success")
        waiting = Job(app_id=app_id, company_id=cid, runtemplate_id=rt_id, status="scheduled")
        s.add_all([done, waiting])
        s.flush()
        s.add(ScheduleEntry(job=waiting.id, after=datetime.now(UTC)))
        done_id, waiting_id = done.id, waiting.id
    with any_db.session() as s:
        result = delete_runtemplate(s, rt_id)
    assert result["cancelled_jobs"] == [waiting_id]
    with any_db.read() as s:
        assert s.get_one(Job, done_id).runtemplate_id is None
        assert s.get_one(Job, waiting_id).status == "cancelled"
        assert s.scalar(select(func.count(ScheduleEntry.id))) == 0
        assert s.get(RunTemplate, rt_id) is None
    # the assignment stays; unassigning removes it
    with any_db.session() as s:
        assert unassign_app(s, get_company(s, cid), s.get_one(App, app_id)) == []
    with any_db.read() as s:
        assert s.scalar(select(func.count(CompanyApp.id))) == 0


def test_secret_configuration_is_ciphertext_at_rest_and_decrypts_for_jobs(
    any_db: Database,
) -> None:
    app_id = make_app(any_db)
    with any_db.session() as s:
        company = create_company(s, name="Acme")
        rt, assigned = create_runtemplate(
            s, VAULT, app=s.get_one(App, app_id), company=company,
            settings={"interv": "d"}, config={"PASSWORD": "pa55"},
        )  # fmt: skip
        rt_id = rt.id
    assert assigned
    with any_db.read() as s:
        row = s.scalars(select(Configuration)).one()
        assert row.encrypted and "pa55" not in row.value
        rt = get_runtemplate(s, rt_id)
        (var,) = config_layer(s, rt, VAULT)
        shown = show_runtemplate(s, rt, "Europe/Prague", now=datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert (var.name, var.value, var.secret, var.source) == (
        "PASSWORD", "pa55", True, f"runtemplate:{rt_id}",
    )  # fmt: skip
    assert [d.isoformat() for d in shown["next_runs"][:2]] == [
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ]


# -- names: one rule on every backend (Unicode case folding) --------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Účetní s.r.o.", "účetní s.r.o."),  # SQLite's lower() folds ASCII only
        ("Účetní s.r.o.", "ÚČETNÍ S.R.O."),
        ("Straße GmbH", "STRASSE GMBH"),  # casefold, not lower
        ("Účetní", "U\u0301c\u030cetni\u0301"),  # composed and decomposed
    ],
)
def test_names_that_differ_only_in_case_are_one_name_on_every_backend(
    any_db: Database, first: str, second: str
) -> None:
    with any_db.session() as s:
        cid = create_company(s, name=first).id
    with pytest.raises(Conflict, match="already exists"), any_db.session() as s:
        create_company(s, name=second)
    with any_db.session() as s:
        other = create_company(s, name="Other")
    with pytest.raises(Conflict, match="already exists"), any_db.session() as s:
        update_company(s, other.id, {"name": second})
    with any_db.session() as s:
        assert update_company(s, cid, {"name": second}) == ["name"]  # its own name
    with any_db.read() as s:
        assert find_company(s, name=first).id == cid


def test_names_that_differ_in_more_than_case_are_two_names_on_every_backend(
    any_db: Database,
) -> None:
    """MariaDB's collation took these for one name; case folding does not."""
    with any_db.session() as s:
        for name in ("Účetní s.r.o.", "Ucetni s.r.o.", "Účetni s.r.o."):
            create_company(s, name=name)
    with any_db.read() as s:
        assert s.scalar(select(func.count(Company.id))) == 3


def test_the_database_refuses_a_second_folded_name_even_when_the_check_is_raced(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sessions may both find the name free; the unique index on name_key decides."""
    import multiflexi.companies.service as service

    with any_db.session() as s:
        create_company(s, name="Účetní s.r.o.")
    monkeypatch.setattr(service, "_name_taken", lambda *_a, **_k: False)
    with (
        pytest.raises(Conflict, match="conflicts with an existing company"),
        any_db.session() as s,
    ):
        create_company(s, name="účetní S.R.O.", slug="other")
    with any_db.read() as s:
        assert s.scalar(select(func.count(Company.id))) == 1
