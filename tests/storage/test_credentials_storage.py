"""Credential storage: ciphertext at rest, bindings and the environment layer on every
backend (``any_db``); the remaining rules on SQLite."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

import pytest
from sqlalchemy import func, select, text

from multiflexi.credentials.bindings import (
    assign_credential,
    runtemplate_credentials,
    unassign_credential,
)
from multiflexi.credentials.service import (
    create_credential,
    credential_layer,
    credential_record,
    get_credential,
    remove_credential,
    resolve_company,
    resolve_type,
    update_credential,
)
from multiflexi.credentials.types import (
    FieldSpec,
    delete_type,
    import_type,
    new_spec,
    type_fields,
)
from multiflexi.env.layers import EnvVar
from multiflexi.errors import Conflict, Invalid, KeyMismatch, NotFound, SecretError
from multiflexi.secrets import PREFIX, REDACTED, Vault
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    App,
    Company,
    CreData,
    Credential,
    CredentialType,
    RunTemplate,
    RunTplCred,
)

SECRET = "correct horse battery staple"
VAULT = Vault("master-key-of-this-test")


@dataclass
class Ids:
    acme: int
    beta: int
    rt: int
    rt_beta: int
    sql: int
    fio: int


def seed(db: Database) -> Ids:
    """Two companies, a run template for each, and two credential types."""
    with db.session() as s:
        acme, beta = Company(name="Acme", slug="acme"), Company(name="Beta", slug="beta")
        app = App(name="probe", executable="env")
        s.add_all([acme, beta, app])
        s.flush()
        rt = RunTemplate(app_id=app.id, company_id=acme.id, name="nightly")
        rt_beta = RunTemplate(app_id=app.id, company_id=beta.id, name="other")
        s.add_all([rt, rt_beta])
        sql = new_spec(
            "SQL",
            "Database",
            [
                FieldSpec("DB_USER", required=True),
                FieldSpec("DB_PASSWORD", "password", required=True),
                FieldSpec("DB_PORT", "integer", default="3306"),
                FieldSpec("DB_OPTIONS"),
                FieldSpec("DB_TYPE", "select", options=(("MySQL", "MySQL"), ("SQLite", "SQLite"))),
            ],
        )
        fio = new_spec("FioBank", "Fio", [FieldSpec("FIO_TOKEN", "string", secret=True)])
        sql_type, _ = import_type(s, sql)
        fio_type, _ = import_type(s, fio)
        s.flush()
        return Ids(acme.id, beta.id, rt.id, rt_beta.id, sql_type.id, fio_type.id)


def make(db: Database, ids: Ids, name: str = "db", **values: str) -> int:
    values = values or {"DB_USER": "app", "DB_PASSWORD": SECRET}
    with db.session() as s:
        cred = create_credential(
            s, VAULT, name=name, company_id=ids.acme, type_id=ids.sql, values=values
        )
        return cred.id


def test_secret_values_are_ciphertext_at_rest_and_decrypt_back(any_db: Database) -> None:
    ids = seed(any_db)
    cred_id = make(any_db, ids)
    with any_db.read() as s:
        rows = s.execute(text("SELECT name, value, is_encrypted FROM credata")).all()
    stored = {name: (value, bool(enc)) for name, value, enc in rows}
    assert stored["DB_USER"] == ("app", False)
    sealed, encrypted = stored["DB_PASSWORD"]
    assert encrypted and sealed.startswith(PREFIX)
    assert all(SECRET not in value for value, _ in stored.values())
    with any_db.read() as s:
        row = s.scalars(select(CreData).where(CreData.name == "DB_PASSWORD")).one()
        assert row.encryption_key_version == 1
        cred = get_credential(s, cred_id)
        assert credential_record(cred)["fields"]["DB_PASSWORD"] == REDACTED
        revealed = credential_record(cred, reveal=True, vault=VAULT)
    assert revealed["fields"]["DB_PASSWORD"] == SECRET
    assert VAULT.open(sealed) == SECRET


def test_a_wrong_master_key_is_a_clear_secret_error(any_db: Database) -> None:
    ids = seed(any_db)
    cred_id = make(any_db, ids)
    other = Vault("another-master-key")
    with any_db.session() as s:
        assign_credential(s, ids.rt, cred_id)
    with any_db.read() as s, pytest.raises(SecretError, match="master key differs"):
        credential_record(get_credential(s, cred_id), reveal=True, vault=other)
    with any_db.read() as s, pytest.raises(SecretError, match="master key differs"):
        credential_layer(s, ids.rt, other)
    # Checked against the database: the identity of its key is in the one line.
    checked = Vault("another-master-key", None, any_db.keys)
    with any_db.read() as s, pytest.raises(KeyMismatch, match=r"master key mismatch: .* has key"):
        credential_layer(s, ids.rt, checked)


def test_the_layer_has_every_value_decrypted_with_defaults_and_provenance(
    any_db: Database,
) -> None:
    ids = seed(any_db)
    cred_id = make(any_db, ids)
    with any_db.session() as s:
        fio = create_credential(
            s, VAULT, name="bank", company_id=ids.acme, type_id=ids.fio, values={"FIO_TOKEN": "t0k"}
        )
        assign_credential(s, ids.rt, cred_id)
        assign_credential(s, ids.rt, fio.id)
    with any_db.read() as s:
        layer = credential_layer(s, ids.rt, VAULT)
        again = credential_layer(s, ids.rt, VAULT)
    sql_source = f"credential:{cred_id} (SQL)"
    assert layer == again
    assert layer == [
        EnvVar("FIO_TOKEN", "t0k", f"credential:{fio.id} (FioBank)", secret=True),
        EnvVar("DB_USER", "app", sql_source),
        EnvVar("DB_PASSWORD", SECRET, sql_source, secret=True),
        EnvVar("DB_PORT", "3306", sql_source),
    ]
    with any_db.read() as s:
        assert credential_layer(s, ids.rt_beta, VAULT) == []


def test_binding_a_credential_of_a_bound_type_replaces_the_old_binding(any_db: Database) -> None:
    ids = seed(any_db)
    first, second = make(any_db, ids, "one"), make(any_db, ids, "two")
    with any_db.session() as s:
        assert assign_credential(s, ids.rt, first)["replaced"] == []
    with any_db.session() as s:
        result = assign_credential(s, ids.rt, second)
    assert result["replaced"] == [first] and result["prototype"] == "SQL"
    with any_db.session() as s:
        assert assign_credential(s, ids.rt, second)["assigned"] is False
    with any_db.read() as s:
        assert [c["id"] for c in runtemplate_credentials(s, ids.rt)] == [second]


def test_a_credential_of_another_company_is_not_bound(sqlite_db: Database) -> None:
    ids = seed(sqlite_db)
    cred_id = make(sqlite_db, ids)
    with sqlite_db.session() as s, pytest.raises(Conflict, match=r"company 1 \(acme\).*company 2"):
        assign_credential(s, ids.rt_beta, cred_id)
    with sqlite_db.session() as s, pytest.raises(NotFound, match="not assigned"):
        unassign_credential(s, ids.rt, cred_id)


def test_removing_a_credential_removes_its_values_and_bindings(sqlite_db: Database) -> None:
    ids = seed(sqlite_db)
    cred_id = make(sqlite_db, ids)
    with sqlite_db.session() as s:
        assign_credential(s, ids.rt, cred_id)
    with sqlite_db.session() as s:
        _cred, unbound = remove_credential(s, cred_id)
    assert unbound == [ids.rt]
    with sqlite_db.read() as s:
        for model in (Credential, CreData, RunTplCred):
            assert s.scalar(select(func.count()).select_from(model)) == 0


def test_import_upserts_by_uuid_then_code_and_replaces_fields(any_db: Database) -> None:
    ids = seed(any_db)
    with any_db.read() as s:
        uuid = s.get_one(CredentialType, ids.sql).uuid
    with any_db.session() as s:
        ct, created = import_type(s, new_spec("SQL", "Renamed", [FieldSpec("DB_NAME")], uuid=uuid))
        assert (ct.id, created, ct.name) == (ids.sql, False, "Renamed")
        assert [f.keyname for f in type_fields(s, ct.id)] == ["DB_NAME"]
    other = str(uuid4())
    with any_db.session() as s:
        ct, created = import_type(s, new_spec("SQL", "Database", [], uuid=other))
        assert (ct.id, created, ct.uuid) == (ids.sql, False, other)
    with any_db.session() as s:
        ct, created = import_type(s, new_spec("Other", "Other", []))
        assert created and ct.id not in (ids.sql, ids.fio)
    with any_db.session() as s, pytest.raises(Conflict, match="already used"):
        import_type(s, new_spec("FioBank", "x", [], uuid=other))


def test_a_type_in_use_cannot_be_deleted(sqlite_db: Database) -> None:
    ids = seed(sqlite_db)
    cred_id = make(sqlite_db, ids)
    with (
        sqlite_db.session() as s,
        pytest.raises(Conflict, match=rf"used by 1 credential\(s\): {cred_id}"),
    ):
        delete_type(s, ids.sql)
    with sqlite_db.session() as s:
        delete_type(s, ids.fio)
    with sqlite_db.read() as s, pytest.raises(NotFound):
        delete_type(s, ids.fio)


def test_update_keeps_a_blank_secret_and_unset_removes_a_value(sqlite_db: Database) -> None:
    ids = seed(sqlite_db)
    cred_id = make(sqlite_db, ids, DB_USER="app", DB_PASSWORD=SECRET, DB_OPTIONS="x=1")
    with sqlite_db.session() as s:
        _c, changed = update_credential(
            s, VAULT, cred_id, values={"DB_PASSWORD": "", "DB_TYPE": "SQLite"}, unset=["DB_OPTIONS"]
        )
    assert changed == ["DB_TYPE", "DB_OPTIONS"]
    with sqlite_db.read() as s:
        fields = credential_record(get_credential(s, cred_id), reveal=True, vault=VAULT)["fields"]
    assert fields["DB_PASSWORD"] == SECRET
    assert fields["DB_OPTIONS"] is None and fields["DB_TYPE"] == "SQLite"
    with sqlite_db.session() as s, pytest.raises(Invalid, match="DB_TYPE"):
        update_credential(s, VAULT, cred_id, values={"DB_TYPE": "Oracle"})
    with sqlite_db.session() as s, pytest.raises(Invalid, match="cannot be emptied: DB_PASSWORD"):
        update_credential(s, VAULT, cred_id, unset=["DB_PASSWORD"])


def test_a_company_type_is_only_for_its_company(sqlite_db: Database) -> None:
    ids = seed(sqlite_db)
    own = new_spec("BetaOnly", "Beta's", [FieldSpec("KEY")])
    with sqlite_db.session() as s:
        ct, _ = import_type(s, own, company_id=ids.beta)
    with sqlite_db.session() as s, pytest.raises(Invalid, match="belongs to company"):
        create_credential(s, VAULT, name="x", company_id=ids.acme, type_id=ct.id, values={})
    with sqlite_db.session() as s:
        create_credential(s, VAULT, name="x", company_id=ids.beta, type_id=ct.id, values={})


def test_companies_and_types_are_found_by_slug_code_or_id(any_db: Database) -> None:
    ids = seed(any_db)
    with any_db.read() as s:
        assert resolve_company(s, "acme").id == resolve_company(s, str(ids.acme)).id == ids.acme
        assert resolve_type(s, type_id=None, code="FioBank").id == ids.fio
        assert resolve_type(s, type_id=None, code=str(ids.sql)).id == ids.sql
        for ref in ("nobody", "99999999999"):
            with pytest.raises(NotFound):
                resolve_company(s, ref)
        with pytest.raises(NotFound):
            resolve_type(s, type_id=None, code="99999999999")
