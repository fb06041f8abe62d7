"""Environment layers: order, provenance, and secrets that stay secret."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from multiflexi.env.layers import Env, EnvVar, assemble


def layer(source: str, **values: str) -> list[EnvVar]:
    return [EnvVar(name, value, source=source) for name, value in values.items()]


def test_later_layers_win_and_every_value_remembers_its_source() -> None:
    env = assemble(
        [
            layer("app:1 default", A="app", B="app", C="app"),
            layer("runtemplate:5", B="rt", C="rt"),
            layer("override", C="cli"),
        ]
    )
    assert env.as_dict() == {"A": "app", "B": "rt", "C": "cli"}
    assert [env[n].source for n in "ABC"] == ["app:1 default", "runtemplate:5", "override"]


def test_the_order_of_first_appearance_is_kept() -> None:
    env = assemble([layer("a", Z="1", A="1"), layer("b", M="2", Z="2")])
    assert list(env) == ["Z", "A", "M"]


def test_the_full_upstream_order_of_layers() -> None:
    names = ["app", "runtemplate", "credential", "company", "multiflexi", "override"]
    layers = [layer(name, X=name, **{f"ONLY_{name.upper()}": name}) for name in names]
    env = assemble(layers)
    assert env["X"].value == "override" and env["X"].source == "override"
    for name in names:
        assert env[f"ONLY_{name.upper()}"].source == name


def test_a_secret_stays_secret_when_a_later_layer_sets_it() -> None:
    env = assemble(
        [
            [EnvVar("TOKEN", "", source="app:1 default", secret=True, description="API token")],
            [EnvVar("TOKEN", "s3cret", source="credential:3")],
            [EnvVar("TOKEN", "other", source="override")],
        ]
    )
    token = env["TOKEN"]
    assert (token.value, token.source, token.secret) == ("other", "override", True)
    assert token.description == "API token", "a later layer without one keeps the description"
    assert env.secret_values() == {"other"}


def test_a_later_secret_makes_an_earlier_plain_value_secret() -> None:
    env = assemble([layer("app", PASS="x"), [EnvVar("PASS", "y", source="cred", secret=True)]])
    assert env["PASS"].secret


def test_a_later_description_replaces_an_earlier_one() -> None:
    env = assemble(
        [
            [EnvVar("A", "1", source="app", description="old")],
            [EnvVar("A", "2", source="rt", description="new")],
        ]
    )
    assert env["A"].description == "new"


def test_secret_values_skip_empty_and_plain_values() -> None:
    env = Env(
        [
            EnvVar("S1", "v1", source="c", secret=True),
            EnvVar("S2", "", source="c", secret=True),
            EnvVar("P", "plain", source="a"),
        ]
    )
    assert env.secret_values() == {"v1"}


def test_with_values_changes_values_only() -> None:
    env = Env(
        [EnvVar("A", "1", source="app", secret=True, description="d"), EnvVar("B", "2", source="x")]
    )
    changed = env.with_values({"A": "one", "UNKNOWN": "ignored"})
    assert changed["A"] == EnvVar("A", "one", source="app", secret=True, description="d")
    assert changed["B"] is env["B"]
    assert "UNKNOWN" not in changed
    assert env["A"].value == "1", "the original is unchanged"


def test_an_env_behaves_as_an_immutable_mapping() -> None:
    env = assemble([layer("a", A="1")])
    assert len(env) == 1 and "A" in env and env.get("B") is None
    with pytest.raises(TypeError):
        env["A"] = EnvVar("A", "2", source="x")  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        env["A"].value = "2"  # type: ignore[misc]
    assert "EnvVar(name='A'" in repr(env)


def test_assembling_nothing_gives_an_empty_env() -> None:
    assert len(assemble([])) == 0
    assert assemble([[], []]).as_dict() == {}
