"""The retention decision is pure: tables of jobs in, verdicts out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from multiflexi.errors import ConfigError, Invalid
from multiflexi.housekeeping.orphans import DIR_GRACE, dir_is_orphan
from multiflexi.housekeeping.policy import (
    OUTPUT_KINDS,
    Forced,
    JobFacts,
    RetentionPolicy,
    TemplateRetention,
    TemplateWalker,
    Verdict,
    decide,
    effective_policy,
    parse_age,
    policy_from_values,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
K, P, D = Verdict.KEEP, Verdict.PRUNE_ARTIFACTS, Verdict.DELETE
DAY = timedelta(days=1)


def jobs(*specs: str) -> list[JobFacts]:
    """``"success:91"`` = a successful job that ended 91 days ago; ``+p`` = artifacts pruned,
    ``+noend`` = never ran (age counts from creation). Listed newest first."""
    out = []
    for i, spec in enumerate(specs):
        status, _, rest = spec.partition(":")
        age, *flags = rest.split("+")
        when = NOW - timedelta(days=float(age))
        out.append(
            JobFacts(
                id=len(specs) - i,
                status=status,
                created=when - timedelta(minutes=5),
                end=None if "noend" in flags else when,
                artifacts_pruned="p" in flags,
            )
        )
    return out


def verdicts(policy: RetentionPolicy, specs: list[JobFacts]) -> list[Verdict]:
    decided = dict(decide(specs, policy, NOW))
    return [decided.get(job.id, K) for job in specs]


BASE = RetentionPolicy(
    success_age=90 * DAY, failed_age=365 * DAY, keep_last=0, keep_failures=0, artifact_age=None
)

CASES = [
    (
        "running, scheduled and loaded jobs are never touched, however old",
        replace(BASE, success_age=timedelta(0), failed_age=timedelta(0)),
        ["running:1000", "scheduled:1000", "loaded:1000"],
        [K, K, K],
    ),
    (
        "unfinished jobs do not count towards the last K",
        replace(BASE, keep_last=1),
        ["running:1", "success:500", "success:500"],
        [K, K, D],
    ),
    (
        "the newest K finished jobs stay whatever their age",
        replace(BASE, keep_last=2),
        ["success:500", "failed:900", "success:500"],
        [K, K, D],
    ),
    (
        "a successful job goes once it reaches the success limit",
        BASE,
        ["success:90", "success:89.9", "success:91"],
        [D, K, D],
    ),
    (
        "failed, lost and cancelled jobs use the failed limit",
        BASE,
        ["failed:366", "lost:366", "cancelled:366", "failed:364", "success:100"],
        [D, D, D, K, D],
    ),
    (
        "the last F failures stay, counted among failures only",
        replace(BASE, keep_failures=2),
        ["failed:400", "success:400", "lost:400", "failed:400"],
        [K, D, K, D],
    ),
    (
        "a cancelled job is not a failure for the last F",
        replace(BASE, keep_failures=1),
        ["cancelled:400", "failed:400", "failed:400"],
        [D, K, D],
    ),
    (
        "artifacts can go before their job, which keeps its record",
        replace(BASE, artifact_age=30 * DAY),
        ["success:31", "success:29", "success:91", "failed:100"],
        [P, K, D, P],
    ),
    (
        "artifacts already pruned are not pruned again",
        replace(BASE, artifact_age=30 * DAY),
        ["success:31+p", "failed:40+p"],
        [K, K],
    ),
    (
        "protected jobs keep their artifacts",
        replace(BASE, keep_last=1, keep_failures=1, artifact_age=DAY),
        ["success:100", "failed:100", "failed:100"],
        [K, K, P],
    ),
    (
        "no age limit keeps jobs forever",
        replace(BASE, success_age=None, failed_age=None),
        ["success:10000", "failed:10000"],
        [K, K],
    ),
    (
        "when job records must stay, old jobs lose their artifacts instead",
        replace(BASE, delete_jobs=False, artifact_age=timedelta(0)),
        ["success:500", "failed:1"],
        [P, P],
    ),
    (
        "a job that never ran is aged from its creation",
        BASE,
        ["cancelled:400+noend", "cancelled:10+noend"],
        [D, K],
    ),
]


@pytest.mark.parametrize(
    ("policy", "specs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_retention_verdicts(
    policy: RetentionPolicy, specs: list[str], expected: list[Verdict]
) -> None:
    assert verdicts(policy, jobs(*specs)) == expected


def test_the_walker_decides_page_by_page_as_it_does_all_at_once() -> None:
    policy = replace(BASE, keep_last=3, keep_failures=2, artifact_age=30 * DAY)
    specs = jobs(*[f"{'failed' if i % 3 else 'success'}:{i * 7}" for i in range(60)])
    walker = TemplateWalker(policy, NOW)
    paged: list[Verdict] = []
    for start in range(0, len(specs), 7):
        paged.extend(walker.verdict(j) for j in specs[start : start + 7])
    assert paged == verdicts(policy, specs)


GLOBAL = RetentionPolicy(success_age=90 * DAY, failed_age=365 * DAY, keep_last=10)

EFFECTIVE = [
    (
        "no overrides: the global policy",
        None,
        Forced(),
        GLOBAL,
    ),
    (
        "a template overrides days and keep_last",
        TemplateRetention(keep_success_days=7, keep_failed_days=30, keep_last=3),
        Forced(),
        replace(GLOBAL, success_age=7 * DAY, failed_age=30 * DAY, keep_last=3),
    ),
    (
        "a template override left None keeps the global value",
        TemplateRetention(keep_success_days=7),
        Forced(),
        replace(GLOBAL, success_age=7 * DAY),
    ),
    (
        "--older-than wins over the template's days",
        TemplateRetention(keep_success_days=7, keep_failed_days=30),
        Forced(older_than=2 * DAY),
        replace(GLOBAL, success_age=2 * DAY, failed_age=2 * DAY),
    ),
    (
        "--keep wins over the template's keep_last",
        TemplateRetention(keep_last=3),
        Forced(keep=50),
        replace(GLOBAL, keep_last=50),
    ),
    (
        "--jobs --keep N: the newest N stay, whatever their age and outcome",
        TemplateRetention(keep_last=3, keep_success_days=1000),
        Forced(keep=5, count_only=True),
        RetentionPolicy(
            success_age=timedelta(0), failed_age=timedelta(0), keep_last=5, keep_failures=0
        ),
    ),
    (
        "--logs --keep N: output of all but the newest N goes, records stay",
        None,
        Forced(keep=5, count_only=True, logs_only=True),
        RetentionPolicy(
            success_age=timedelta(0),
            failed_age=timedelta(0),
            keep_last=5,
            keep_failures=0,
            artifact_age=timedelta(0),
            artifact_kinds=OUTPUT_KINDS,
            delete_jobs=False,
        ),
    ),
]


@pytest.mark.parametrize(
    ("template", "forced", "expected"), [c[1:] for c in EFFECTIVE], ids=[c[0] for c in EFFECTIVE]
)
def test_effective_policy(
    template: TemplateRetention | None, forced: Forced, expected: RetentionPolicy
) -> None:
    assert effective_policy(GLOBAL, template, forced) == expected


def test_logs_only_prunes_output_at_the_shortest_job_limit() -> None:
    policy = effective_policy(GLOBAL, None, Forced(logs_only=True))
    assert policy.artifact_age == 90 * DAY and policy.artifact_kinds == OUTPUT_KINDS
    assert not policy.delete_jobs


def test_the_policy_reads_its_settings_with_defaults() -> None:
    assert policy_from_values({}) == RetentionPolicy(
        success_age=90 * DAY, failed_age=365 * DAY, keep_last=10, keep_failures=5
    )
    values = {
        "MULTIFLEXI_RETENTION_SUCCESS_DAYS": "30",
        "MULTIFLEXI_RETENTION_FAILED_DAYS": "60",
        "MULTIFLEXI_RETENTION_KEEP_LAST": "3",
        "MULTIFLEXI_RETENTION_KEEP_FAILURES": "",
        "MULTIFLEXI_RETENTION_ARTIFACT_DAYS": "7",
    }
    assert policy_from_values(values) == RetentionPolicy(
        success_age=30 * DAY,
        failed_age=60 * DAY,
        keep_last=3,
        keep_failures=5,
        artifact_age=7 * DAY,
    )


@pytest.mark.parametrize("bad", ["ten", "-1", "1.5"])
def test_a_bad_retention_setting_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="MULTIFLEXI_RETENTION_KEEP_LAST"):
        policy_from_values({"MULTIFLEXI_RETENTION_KEEP_LAST": bad})


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("30d", 30 * DAY),
        ("12h", timedelta(hours=12)),
        ("2w", 14 * DAY),
        ("90m", timedelta(minutes=90)),
        ("7", 7 * DAY),
        (" 1 D ", DAY),
    ],
)
def test_ages_are_read_like_people_write_them(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize("bad", ["", "30x", "-3d", "d30", "1.5d"])
def test_a_bad_age_is_refused(bad: str) -> None:
    with pytest.raises(Invalid, match="--older-than"):
        parse_age(bad)


OLD = NOW - DIR_GRACE - timedelta(minutes=1)
FRESH = NOW - timedelta(minutes=1)

DIRS = [
    ("a directory without a job goes once quiet", None, None, False, OLD, True),
    (
        "a fresh directory without a job stays (it may be being created)",
        None,
        None,
        False,
        FRESH,
        False,
    ),
    ("a finished job's directory goes after the grace period", "success", OLD, False, OLD, True),
    (
        "a just-finished job's directory stays (actions may read it)",
        "failed",
        FRESH,
        False,
        OLD,
        False,
    ),
    ("a directory the template keeps stays", "success", OLD, True, OLD, False),
    ("a running job's directory is never touched", "running", None, False, OLD, False),
    ("a scheduled job's directory is never touched", "scheduled", OLD, False, OLD, False),
]


@pytest.mark.parametrize(
    ("status", "finished", "keeps", "mtime", "expected"),
    [d[1:] for d in DIRS],
    ids=[d[0] for d in DIRS],
)
def test_which_job_directories_are_orphans(
    status: str | None, finished: datetime | None, keeps: bool, mtime: datetime, expected: bool
) -> None:
    assert (
        dir_is_orphan(
            status=status, finished_at=finished, keeps_dir=keeps, dir_mtime=mtime, now=NOW
        )
        is expected
    )
