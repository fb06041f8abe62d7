"""GitHub and Redmine: open an issue describing a failed job.

Title ``<app> failed on <company> (job N)``; the body has the exit code and its meaning,
the reason, the command (secrets redacted), the last lines of stderr and the MultiFlexi
version (:func:`multiflexi.actions.payload.issue_body`), scrubbed of every secret value
of the job. Both run only on ``fail``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from multiflexi.actions.base import Action, ActionContext, ActionError, Option
from multiflexi.actions.payload import issue_body, issue_title, scrub, stderr_tail
from multiflexi.actions.webhook import USER_AGENT, post_json, where
from multiflexi.errors import Invalid

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from multiflexi.config import Settings
    from multiflexi.storage.models import RunTemplate

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_HOMEPAGE = re.compile(r"^https?://(?:www\.)?github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)")


def repository_from_homepage(homepage: str) -> str | None:
    """``owner/name`` of a github.com homepage (``.git`` dropped), else None."""
    match = _HOMEPAGE.match(homepage.strip())
    if match is None:
        return None
    name = match.group(2)
    name = name[:-4] if name.endswith(".git") else name
    return f"{match.group(1)}/{name}"


def _report(ctx: ActionContext) -> tuple[str, str]:
    """(title, body) of the issue, scrubbed."""
    tail = stderr_tail(ctx.db, ctx.job)
    return scrub(issue_title(ctx.job), ctx.secrets), scrub(issue_body(ctx.job, tail), ctx.secrets)


def _answer(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class GitHub(Action):
    name = "GitHub"
    aliases = ("Github",)
    modes = ("fail",)
    description = (
        "Open a GitHub issue describing the failed job (exit code and meaning, reason, "
        "redacted command, last lines of stderr)."
    )
    options = (
        Option("token", required=True, secret=True, description="GitHub token (issues: write)."),
        Option(
            "repository",
            description="owner/name; default: from the application's github.com homepage.",
        ),
        Option(
            "api_url",
            "url",
            default="https://api.github.com",
            description="GitHub API base URL (GitHub Enterprise: https://HOST/api/v3).",
        ),
        Option("labels", "list", default=["bug"], description="Labels of the issue."),
    )

    @staticmethod
    def repository(options: Mapping[str, Any], homepage: str) -> str | None:
        given = options.get("repository")
        return str(given).strip() if given else repository_from_homepage(homepage)

    @classmethod
    def check(
        cls, options: Mapping[str, Any], session: Session, rt: RunTemplate, settings: Settings
    ) -> None:
        from multiflexi.storage.models import App

        app = session.get(App, rt.app_id)
        repo = cls.repository(options, app.homepage if app else "")
        if repo is None:
            raise Invalid(
                "action GitHub needs option repository=OWNER/NAME: the application's "
                "homepage is not on github.com"
            )
        if not _REPO.match(repo):
            raise Invalid(f"option repository of GitHub must be OWNER/NAME, got {repo!r}")

    def perform(self, ctx: ActionContext) -> str:
        repo = self.repository(ctx.options, ctx.job.app_homepage)
        if repo is None or not _REPO.match(repo):
            raise ActionError("no repository: set option repository=OWNER/NAME")
        title, body = _report(ctx)
        document = {"title": title, "body": body, "labels": list(ctx.options["labels"] or [])}
        url = f"{str(ctx.options['api_url']).rstrip('/')}/repos/{repo}/issues"
        headers = {
            "Authorization": f"Bearer {ctx.options['token']}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        delivery = post_json(ctx, url, json.dumps(document).encode(), headers, attempts=2)
        if delivery.status != 201:
            why = _answer(delivery.text).get("message") or delivery.text[:200]
            raise ActionError(f"GitHub refused the issue: HTTP {delivery.status}: {why}")
        answer = _answer(delivery.text)
        return f"issue #{answer.get('number', '?')} opened in {repo}: {answer.get('html_url', '')}"


class Redmine(Action):
    name = "Redmine"
    aliases = ("RedmineIssue",)
    modes = ("fail",)
    description = "Open a Redmine issue describing the failed job."
    options = (
        Option("url", "url", required=True, description="Redmine base URL."),
        Option("token", required=True, secret=True, description="Redmine API key."),
        Option("project_id", required=True, description="Project id or identifier."),
        Option("tracker_id", "int", default=1, description="Tracker id (1 = Bug usually)."),
    )

    def perform(self, ctx: ActionContext) -> str:
        title, body = _report(ctx)
        project: str | int = str(ctx.options["project_id"])
        if str(project).isdigit():
            project = int(project)
        document = {
            "issue": {
                "project_id": project,
                "tracker_id": int(ctx.options["tracker_id"] or 1),
                "subject": title,
                "description": body,
            }
        }
        base = str(ctx.options["url"]).rstrip("/")
        headers = {
            "X-Redmine-API-Key": str(ctx.options["token"]),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        url = f"{base}/issues.json"
        delivery = post_json(ctx, url, json.dumps(document).encode(), headers, attempts=2)
        if not delivery.ok:
            errors = _answer(delivery.text).get("errors") or delivery.text[:200]
            raise ActionError(f"Redmine at {where(url)} refused: HTTP {delivery.status}: {errors}")
        issue = _answer(delivery.text).get("issue") or {}
        return f"issue #{issue.get('id', '?')} created in {where(url)}"
