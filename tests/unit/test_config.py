"""Settings: file and process environment, validation, one clear error each."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiflexi.config import load_settings
from multiflexi.errors import ConfigError


def test_the_process_environment_wins_over_the_file(tmp_path: Path) -> None:
    env = tmp_path / "mf.env"
    env.write_text(
        "DB_CONNECTION=pgsql\nDB_HOST=db.example\nMULTIFLEXI_ACTION_WEBHOOK_URI=http://x\n"
    )
    settings = load_settings(env, {"DB_HOST": "127.0.0.1"})
    assert settings.db_connection == "pgsql" and settings.db_host == "127.0.0.1"
    assert settings.get("MULTIFLEXI_ACTION_WEBHOOK_URI") == "http://x"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("DB_CONNECTION=oracle\n", "unknown DB_CONNECTION 'oracle'; valid:"),
        ("MULTIFLEXI_MAX_PARALEL=3\n", "unknown setting MULTIFLEXI_MAX_PARALEL"),
        ("MULTIFLEXI_MAX_PARALLEL=many\n", "MULTIFLEXI_MAX_PARALLEL must be an integer"),
        ("MULTIFLEXI_TIMEZONE=Mars/Olympus\n", "unknown MULTIFLEXI_TIMEZONE"),
    ],
)
def test_bad_settings_are_refused_with_one_clear_line(
    tmp_path: Path, content: str, message: str
) -> None:
    env = tmp_path / "mf.env"
    env.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(env, {})


def test_an_explicit_environment_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment file not found"):
        load_settings(tmp_path / "nope.env", {})


def test_aliases_of_drivers_are_accepted() -> None:
    from multiflexi.config import settings_from_values

    assert settings_from_values({"DB_CONNECTION": "mariadb"}).db_connection == "mysql"
    assert settings_from_values({"DB_CONNECTION": "postgresql"}).db_connection == "pgsql"
