"""All tables. Import from here: ``from multiflexi.storage.models import Job``."""

from multiflexi.storage.models.access import (
    AuditLog,
    CompanyUser,
    LoginAttempt,
    Token,
    UserRole,
)
from multiflexi.storage.models.apps import App, AppArtifact, AppExitCode, ConfField
from multiflexi.storage.models.artifacts import Artifact, ArtifactChunk
from multiflexi.storage.models.base import Base, table_of
from multiflexi.storage.models.companies import (
    Company,
    CompanyApp,
    CompanyEnv,
    GlobalEnv,
    company_name_key,
)
from multiflexi.storage.models.credentials import (
    CreData,
    Credential,
    CredentialType,
    CrTypeField,
    RunTplCred,
)
from multiflexi.storage.models.jobs import (
    FINAL_STATUSES,
    Job,
    JobAction,
    JobStatus,
    Lock,
    ScheduledTick,
    ScheduleEntry,
    Worker,
)
from multiflexi.storage.models.meta import Setting
from multiflexi.storage.models.runtemplates import (
    ActionConfig,
    Configuration,
    ModConfig,
    RunTemplate,
)
from multiflexi.storage.models.users import User

__all__ = [
    "FINAL_STATUSES",
    "ActionConfig",
    "App",
    "AppArtifact",
    "AppExitCode",
    "Artifact",
    "ArtifactChunk",
    "AuditLog",
    "Base",
    "Company",
    "CompanyApp",
    "CompanyEnv",
    "CompanyUser",
    "ConfField",
    "Configuration",
    "CrTypeField",
    "CreData",
    "Credential",
    "CredentialType",
    "GlobalEnv",
    "Job",
    "JobAction",
    "JobStatus",
    "Lock",
    "LoginAttempt",
    "ModConfig",
    "RunTemplate",
    "RunTplCred",
    "ScheduleEntry",
    "ScheduledTick",
    "Setting",
    "Token",
    "User",
    "UserRole",
    "Worker",
    "company_name_key",
    "table_of",
]
