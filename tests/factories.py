"""Rows for tests, made directly with the models (independent of the services under test)."""

from __future__ import annotations

import sys
import uuid as uuidlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from multiflexi.secrets import Vault
from multiflexi.storage.database import Database
from multiflexi.storage.models import (
    App,
    AppArtifact,
    AppExitCode,
    Company,
    CompanyApp,
    ConfField,
    Configuration,
    RunTemplate,
)


def make_script(tmp_path: Path, body: str, name: str = "app.py") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def make_setup(
    db: Database,
    *,
    executable: str = sys.executable,
    cmdparams: str = "",
    fields: Mapping[str, Mapping[str, Any]] | None = None,
    config: Mapping[str, str] | None = None,
    exit_codes: Mapping[int, tuple[str, str]] | None = None,
    artifacts: Mapping[str, str] | None = None,
    company_env: Mapping[str, str] | None = None,
    name: str = "Probe",
    slug: str = "acme",
    **rt_options: Any,
) -> tuple[int, int, int]:
    """An app, a company and a run template; returns (app_id, company_id, runtemplate_id)."""
    vault = Vault.from_settings(db.settings, db)
    with db.session() as s:
        app = App(
            name=f"{name} {uuidlib.uuid4().hex[:6]}",
            executable=executable,
            cmdparams=cmdparams,
            uuid=str(uuidlib.uuid4()),
            code=uuidlib.uuid4().hex[:6].upper(),
            version="1.0",
        )
        for i, (key, decl) in enumerate((fields or {}).items()):
            app.fields.append(
                ConfField(
                    keyname=key,
                    position=i,
                    type=decl.get("type", "string"),
                    defval=decl.get("defval"),
                    required=decl.get("required", False),
                    secret=decl.get("secret", False),
                    description=decl.get("description", ""),
                )
            )
        for code, (desc, severity) in (exit_codes or {}).items():
            app.exit_codes.append(AppExitCode(exit_code=code, description=desc, severity=severity))
        for i, (pattern, desc) in enumerate((artifacts or {}).items()):
            app.artifact_patterns.append(AppArtifact(path=pattern, description=desc, position=i))
        company = Company(
            name=f"Acme {uuidlib.uuid4().hex[:8]}", slug=f"{slug}_{uuidlib.uuid4().hex[:8]}"
        )
        s.add_all([app, company])
        s.flush()
        from multiflexi.storage.models import CompanyEnv

        for key, value in (company_env or {}).items():
            s.add(CompanyEnv(company_id=company.id, keyword=key, value=value))
        s.add(CompanyApp(company_id=company.id, app_id=app.id))
        rt = RunTemplate(app_id=app.id, company_id=company.id, name="probe run", **rt_options)
        s.add(rt)
        s.flush()
        declared = {k: v for k, v in (fields or {}).items()}
        for key, value in (config or {}).items():
            decl = declared.get(key, {})
            secret = decl.get("secret", False) or decl.get("type") in ("password", "secret")
            s.add(
                Configuration(
                    runtemplate_id=rt.id,
                    app_id=app.id,
                    company_id=company.id,
                    name=key,
                    value=vault.seal(value) if secret else value,
                    config_type=decl.get("type", "string"),
                    encrypted=secret,
                )
            )
        return app.id, company.id, rt.id
