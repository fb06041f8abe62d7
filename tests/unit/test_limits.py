"""Resource limits as values: parsing, layering, describing (no processes here)."""

from __future__ import annotations

import pytest

from multiflexi.config import settings_from_values
from multiflexi.errors import ConfigError
from multiflexi.executors.limits import (
    LimitError,
    Limits,
    describe,
    explain,
    format_size,
    parse_limit,
    parse_size,
    resolve,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("256M", 256 << 20),
        ("256m", 256 << 20),
        ("256MiB", 256 << 20),
        ("256MB", 256 << 20),
        ("512K", 512 << 10),
        ("512 KiB", 512 << 10),
        ("1.5G", 3 << 29),
        ("2GiB", 2 << 30),
        ("0", 0),
    ],
)
def test_sizes_take_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "12X", "-5M", "1e3", "256 M B", "lots"])
def test_a_bad_size_is_one_clear_message(text: str) -> None:
    with pytest.raises(LimitError, match=r"^invalid memory limit .*K, M, G"):
        parse_size(text, "memory limit")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("cpus", "half", "expected a number of cores"),
        ("cpus", "-1", "positive"),
        ("cpus", "0.001", "at least 0.01"),
        ("max_processes", "ten", "whole number"),
        ("cpu_time_limit", "-3", "negative"),
        ("max_open_files", "1.5", "whole number"),
    ],
)
def test_bad_counts_and_shares_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(LimitError, match=message):
        parse_limit(name, value)


def test_sizes_are_shown_in_the_largest_fitting_binary_unit() -> None:
    assert format_size(256 << 20) == "256 MiB"
    assert format_size(3 << 29) == "1.5 GiB"
    assert format_size(100) == "100 B"
    assert describe("cpus", 0.5) == "0.5 cores"
    assert describe("cpu_time_limit", 5) == "5 s"
    assert describe("memory_limit", None) == "no limit"


def test_the_most_specific_layer_wins_and_zero_lifts_a_default() -> None:
    limits = resolve(
        [
            {"memory_limit": "1G", "max_processes": 100, "output_limit": "10M"},
            {"memory_limit": "256M", "cpus": "0.5"},
            {"max_processes": 0, "cpu_time_limit": "30", "memory_limit": None},
        ],
        mechanism="rlimit",
        label="job-7",
    )
    assert limits == Limits(
        memory_limit=256 << 20,
        cpu_time_limit=30,
        cpus=0.5,
        max_processes=None,
        output_limit=10 << 20,
        mechanism="rlimit",
        label="job-7",
    )
    assert not resolve([{}, {"cpus": 0}]).any()


def test_explain_names_the_source_of_each_limit() -> None:
    rows = {
        row["name"]: row
        for row in explain(
            [
                ("global", {"memory_limit": 1 << 30, "output_limit": 5 << 20}),
                ("application", {"memory_limit": "512M"}),
                ("runtemplate", {"output_limit": 0, "cpus": 2.0}),
            ]
        )
    }
    assert (rows["memory_limit"]["shown"], rows["memory_limit"]["source"]) == (
        "512 MiB",
        "application",
    )
    assert (rows["output_limit"]["value"], rows["output_limit"]["source"]) == (None, "runtemplate")
    assert rows["output_limit"]["shown"] == "no limit"
    assert rows["cpus"]["shown"] == "2 cores"
    assert rows["max_open_files"]["source"] == "none"


def test_global_defaults_come_from_the_configuration() -> None:
    settings = settings_from_values(
        {
            "MULTIFLEXI_DEFAULT_MEMORY_LIMIT": "256M",
            "MULTIFLEXI_DEFAULT_CPU_TIME_LIMIT": "60",
            "MULTIFLEXI_DEFAULT_CPUS": "0.5",
            "MULTIFLEXI_DEFAULT_MAX_PROCESSES": "50",
            "MULTIFLEXI_DEFAULT_MAX_OPEN_FILES": "1024",
            "MULTIFLEXI_DEFAULT_OUTPUT_LIMIT": "100M",
            "MULTIFLEXI_LIMITS_MECHANISM": "RLIMIT",
        }
    )
    assert dict(settings.default_limits) == {
        "memory_limit": 256 << 20,
        "cpu_time_limit": 60,
        "cpus": 0.5,
        "max_processes": 50,
        "max_open_files": 1024,
        "output_limit": 100 << 20,
    }
    assert settings.limits_mechanism == "rlimit"
    assert settings_from_values({}).limits_mechanism == "auto"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("MULTIFLEXI_DEFAULT_MEMORY_LIMIT", "lots", "MULTIFLEXI_DEFAULT_MEMORY_LIMIT: invalid"),
        ("MULTIFLEXI_DEFAULT_CPUS", "x", "MULTIFLEXI_DEFAULT_CPUS: invalid cpus"),
        ("MULTIFLEXI_LIMITS_MECHANISM", "systemd", "must be one of auto, cgroup, rlimit"),
    ],
)
def test_bad_settings_are_a_configuration_error(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_values({key: value})
