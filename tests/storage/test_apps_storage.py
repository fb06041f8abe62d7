"""Applications in the database: import, round trip, upsert rules, refusals that leave
nothing behind, deletion. What depends on the backend (JSON and text columns, transactions,
constraints) runs on SQLite, PostgreSQL and MariaDB; pure rules on SQLite only."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from multiflexi.apps import appjson, service
from multiflexi.apps.spec import Document
from multiflexi.errors import AppDefinitionError, Conflict
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    App,
    AppArtifact,
    AppExitCode,
    Company,
    ConfField,
    Job,
    RunTemplate,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "apps"
BROKEN = "abraflexi-reminder__abraflexi-reminder.multiflexi.app.json"
IMPORTABLE = [p for p in sorted((FIXTURES / "real").glob("*.json")) if p.name != BROKEN]
VOLATILE = ("id", "created", "updated", "deffile")


def doc(**changes: Any) -> Document:
    data: dict[str, Any] = {
        "$schema": appjson.SCHEMA_URL,
        "name": "Demo",
        "description": "A demo",
        "uuid": "11111111-1111-4111-8111-111111111111",
        "executable": "demo",
        "environment": {
            "A": {"type": "string", "description": "a", "defval": "x"},
            "B": {"type": "bool", "description": "b", "defval": False},
        },
        "artifacts": [{"name": "Report", "path": r"report\.json", "type": "file"}],
        "exitCodes": {
            "0": {"description": "ok", "severity": "success"},
            "1": {"description": "bad"},
        },
    }
    data.update(changes)
    return Document({k: v for k, v in data.items() if v is not None}, "demo.json")


def import_(db: Database, document: Document, **kwargs: Any) -> service.ImportResult:
    with db.session() as s:
        return service.import_document(s, document, **kwargs)


def counts(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {
            m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
            for m in (App, ConfField, AppArtifact, AppExitCode)
        }


def snapshot(db: Database) -> list[dict[str, Any]]:
    with db.read() as s:
        return [
            {
                k: v
                for k, v in service.app_record(a, detail=True, reveal=True).items()
                if k not in VOLATILE
            }
            for a in service.list_apps(s, declarations=True)
        ]


def test_every_real_definition_survives_export_and_reimport(any_db: Database) -> None:
    with any_db.session() as s:
        for path in IMPORTABLE:
            service.import_file(s, path)
    with any_db.read() as s:
        first = {
            a.uuid: appjson.dumps(service.export_document(a))
            for a in service.list_apps(s, declarations=True)
        }
    records = snapshot(any_db)
    # 64 files, two of which define the same application.
    assert len(first) == len(IMPORTABLE) - 1

    with any_db.session() as s:
        s.execute(delete(App))  # the schema cascades to what apps declare
    assert counts(any_db) == {"apps": 0, "conffield": 0, "app_artifacts": 0, "app_exit_codes": 0}

    with any_db.session() as s:
        for text in first.values():
            service.import_document(s, appjson.parse_document(text.encode(), "export.json"))
    with any_db.read() as s:
        second = {
            a.uuid: appjson.dumps(service.export_document(a))
            for a in service.list_apps(s, declarations=True)
        }
    assert second == first
    assert snapshot(any_db) == records


def test_reimport_replaces_fields_artifacts_and_exit_codes(any_db: Database) -> None:
    first = import_(any_db, doc())
    assert first.created
    second = import_(
        any_db,
        doc(
            environment={"B": {"type": "integer", "defval": 3}, "C": {"type": "password"}},
            artifacts=None,
            exitCodes={"2": {"description": "retry", "severity": "warning", "retry": True}},
            version="2.0",
        ),
    )
    assert not second.created and second.app.id == first.app.id
    (record,) = snapshot(any_db)
    assert record["version"] == "2.0"
    assert list(record["environment"]) == ["B", "C"]
    assert (
        record["environment"]["B"]["type"] == "integer"
        and record["environment"]["B"]["defval"] == "3"
    )
    assert record["environment"]["C"]["secret"] is True
    assert record["artifacts"] == []
    assert record["exitCodes"] == {
        "2": {"description": "retry", "severity": "warning", "retry": True, "extra": {}}
    }
    assert counts(any_db) == {"apps": 1, "conffield": 2, "app_artifacts": 0, "app_exit_codes": 1}


def test_a_refused_import_leaves_the_database_exactly_as_before(sqlite_db: Database) -> None:
    import_(sqlite_db, doc())
    before, records = counts(sqlite_db), snapshot(sqlite_db)
    with pytest.raises(AppDefinitionError, match=r"demo.json: \$\.environment\['bad=key'\]"):
        import_(sqlite_db, doc(environment={"A": {}, "bad=key": {}}, version="9"))
    with pytest.raises(AppDefinitionError, match="not valid against the schema"):
        import_(sqlite_db, doc(tags="a,b"), strict=True)
    assert counts(sqlite_db) == before and snapshot(sqlite_db) == records


def test_a_failure_after_rows_were_written_rolls_the_whole_import_back(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_(any_db, doc())
    before, records = counts(any_db), snapshot(any_db)

    def flush_then_fail(session: Any) -> None:
        session.flush()
        raise Conflict("simulated failure after the rows were written")

    monkeypatch.setattr(service, "_flush", flush_then_fail)
    changed = doc(environment={"Z": {}}, artifacts=None, exitCodes=None, version="3")
    with pytest.raises(Conflict, match="simulated"):
        import_(any_db, changed)
    assert counts(any_db) == before and snapshot(any_db) == records


def test_a_uuid_of_one_application_with_the_name_of_another_is_refused_naming_both(
    sqlite_db: Database,
) -> None:
    import_(sqlite_db, doc())
    import_(sqlite_db, doc(name="Other", uuid="22222222-2222-4222-8222-222222222222"))
    before = snapshot(sqlite_db)
    with pytest.raises(Conflict) as err:
        import_(sqlite_db, doc(name="Other"))
    assert (
        "uuid 11111111-1111-4111-8111-111111111111 belongs to application #1 'Demo'"
        in err.value.message
    )
    assert "the name 'Other' belongs to application #2" in err.value.message
    assert snapshot(sqlite_db) == before


def test_the_name_of_an_application_with_another_uuid_is_not_taken_over(
    sqlite_db: Database,
) -> None:
    import_(sqlite_db, doc())
    with pytest.raises(Conflict, match="the name 'Demo' belongs to application #1 with uuid 1111"):
        import_(sqlite_db, doc(uuid="33333333-3333-4333-8333-333333333333"))


def test_a_definition_without_uuid_updates_the_application_of_that_name(
    sqlite_db: Database,
) -> None:
    import_(sqlite_db, doc())
    result = import_(sqlite_db, doc(uuid=None, version="5"))
    assert not result.created
    assert result.app.uuid == "11111111-1111-4111-8111-111111111111"


def test_a_definition_without_uuid_gets_one(sqlite_db: Database) -> None:
    result = import_(sqlite_db, doc(uuid=None))
    assert result.created and len(result.app.uuid or "") == 36


def test_codes_are_derived_unique_kept_on_reimport_and_taken_from_the_file(
    sqlite_db: Database,
) -> None:
    a = import_(sqlite_db, doc(name="AbraFlexi Digest daily", uuid=None)).app
    b = import_(sqlite_db, doc(name="AbraFlexi Digest daily!", uuid=None)).app
    assert (a.code, b.code) == ("AFDDAILY", "AFDDAIL2")
    assert import_(sqlite_db, doc(name="AbraFlexi Digest daily", uuid=None)).app.code == "AFDDAILY"
    assert import_(sqlite_db, doc(name="Coded", uuid=None, code="MYCODE")).app.code == "MYCODE"
    with pytest.raises(Conflict, match="code 'MYCODE' already belongs to application"):
        import_(sqlite_db, doc(name="Thief", uuid=None, code="MYCODE"))


def _company_and_template(db: Database, app_id: int) -> int:
    with db.session() as s:
        company = Company(name="ACME", slug="acme")
        s.add(company)
        s.flush()
        template = RunTemplate(app_id=app_id, company_id=company.id, name="t")
        s.add(template)
        s.flush()
        return template.id


def test_an_application_used_by_a_run_template_cannot_be_deleted(sqlite_db: Database) -> None:
    app_id = import_(sqlite_db, doc()).app.id
    template_id = _company_and_template(sqlite_db, app_id)
    before = counts(sqlite_db)
    with (
        pytest.raises(
            Conflict, match=rf"used by 1 run template\(s\) \(#{template_id}\); delete them first"
        ),
        sqlite_db.session() as s,
    ):
        service.delete_app(s, service.get_app(s, id=app_id))
    assert counts(sqlite_db) == before


def test_an_application_with_jobs_on_record_cannot_be_deleted(sqlite_db: Database) -> None:
    app_id = import_(sqlite_db, doc()).app.id
    template_id = _company_and_template(sqlite_db, app_id)
    with sqlite_db.session() as s:
        template = s.get(RunTemplate, template_id)
        assert template is not None
        s.add(Job(app_id=app_id, company_id=template.company_id, runtemplate_id=None))
        s.delete(template)
    with pytest.raises(Conflict, match="has 1 job\\(s\\) on record"), sqlite_db.session() as s:
        service.delete_app(s, service.get_app(s, id=app_id))


def test_deleting_an_application_removes_what_it_declares(sqlite_db: Database) -> None:
    app_id = import_(sqlite_db, doc()).app.id
    with sqlite_db.session() as s:
        service.delete_app(s, service.get_app(s, id=app_id))
    assert counts(sqlite_db) == {"apps": 0, "conffield": 0, "app_artifacts": 0, "app_exit_codes": 0}


def test_create_and_update_keep_names_and_codes_unique(sqlite_db: Database) -> None:
    with sqlite_db.session() as s:
        app = service.create_app(s, {"name": "Tool", "executable": "tool", "tags": "a, b"})
        assert app.code == "TOOL" and len(app.uuid or "") == 36
    with pytest.raises(Conflict, match="name 'Tool' already belongs"), sqlite_db.session() as s:
        service.create_app(s, {"name": "Tool", "executable": "other"})
    with sqlite_db.session() as s:
        other = service.create_app(s, {"name": "Other", "executable": "x", "cmdparams": "${A} {B}"})
        assert other.cmdparams == "{A} {B}"
    with pytest.raises(Conflict, match="code 'TOOL' already belongs"), sqlite_db.session() as s:
        service.update_app(s, service.get_app(s, name="Other"), {"code": "TOOL"})


def test_updating_a_localized_name_updates_its_base_translation(sqlite_db: Database) -> None:
    import_(sqlite_db, doc(name={"en": "Demo", "cs": "Ukázka"}))
    with sqlite_db.session() as s:
        service.update_app(s, service.get_app(s, name="Demo"), {"name": "Sample"})
    with sqlite_db.read() as s:
        exported = service.export_document(service.get_app(s, name="Sample"))
    assert exported["name"] == {"en": "Sample", "cs": "Ukázka"}


def test_unicode_and_large_values_survive_every_backend(any_db: Database) -> None:
    description = "Příliš žluťoučký kůň 🐎 " * 1500
    options = {f"k{i}": "ü" * 10 for i in range(500)}
    data = copy.deepcopy(doc().data)
    data["description"] = description
    data["environment"]["A"]["options"] = options
    import_(any_db, Document(data, "big.json"))
    with any_db.read() as s:
        exported = service.export_document(service.get_app(s, name="Demo"))
    assert exported["description"] == description
    assert exported["environment"]["A"]["options"] == options
