"""WebHook: POST a JSON description of the finished job to a URL.

The body is :func:`multiflexi.actions.payload.job_document`, scrubbed of the job's
secret values. With a ``secret`` the body is signed: ``X-MultiFlexi-Signature:
sha256=<hex HMAC-SHA256 of the exact body bytes>``. 5xx answers, timeouts and connection
errors are retried with exponential backoff (``attempts``, default 3), never beyond the
action's deadline; 4xx answers are final.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from multiflexi import __version__
from multiflexi.actions.base import Action, ActionContext, ActionError, Option
from multiflexi.actions.payload import job_document, scrub_data
from multiflexi.errors import Invalid

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from multiflexi.config import Settings
    from multiflexi.storage.models import RunTemplate

SIGNATURE_HEADER = "X-MultiFlexi-Signature"
USER_AGENT = f"MultiFlexi/{__version__}"


def signature(secret: str, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Delivery:
    status: int
    attempts: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _Retryable(Exception):
    def __init__(self, why: str, status: int = 0) -> None:
        super().__init__(why)
        self.status = status


def where(url: str) -> str:
    """scheme://host[:port] of ``url``: enough to say where, never a token in a path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def post_json(
    ctx: ActionContext,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    attempts: int = 3,
    wait: float = 0.5,
) -> Delivery:
    """POST ``body``; retry 5xx, timeouts and connection errors; raise ActionError at the end."""
    import httpx
    from tenacity import (
        RetryCallState,
        RetryError,
        Retrying,
        retry_if_exception_type,
        wait_exponential,
    )

    count = 0

    def attempt() -> Delivery:
        nonlocal count
        count += 1
        try:
            with httpx.Client(timeout=ctx.remaining(cap=15.0), follow_redirects=False) as client:
                response = client.post(url, content=body, headers=dict(headers))
        except httpx.TimeoutException:
            raise _Retryable("timed out") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot connect: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}", response.status_code)
        return Delivery(response.status_code, count, response.text[:2000])

    def stop(state: RetryCallState) -> bool:
        # Stop after the last attempt, or when the next wait would cross the deadline:
        # retries never outlive the action.
        if state.attempt_number >= max(attempts, 1):
            return True
        return bool(ctx.remaining() <= wait * 2 ** (state.attempt_number - 1) + 0.2)

    retrying = Retrying(
        retry=retry_if_exception_type(_Retryable),
        stop=stop,
        wait=wait_exponential(multiplier=wait, max=8),
        reraise=False,
    )
    try:
        return retrying(attempt)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        tries = "attempt" if count == 1 else "attempts"
        raise ActionError(
            f"not delivered to {where(url)}: {last} after {count} {tries}",
            permanent=False,
        ) from None


class WebHook(Action):
    name = "WebHook"
    description = (
        "POST a JSON document describing the finished job (ids, app, company, template, "
        "status, exit code and meaning, timings, metrics, artifacts with download hints; "
        "never secrets) to a URL; optionally HMAC-signed; retried on 5xx and timeouts."
    )
    options = (
        Option("uri", "url", required=True, description="Where to POST the JSON document."),
        Option(
            "secret",
            secret=True,
            description="Shared secret: sign the body as X-MultiFlexi-Signature: sha256=<hex>.",
        ),
        Option("attempts", "int", default=3, description="Delivery attempts (1-10)."),
    )

    @classmethod
    def check(
        cls, options: Mapping[str, Any], session: Session, rt: RunTemplate, settings: Settings
    ) -> None:
        if not 1 <= int(options.get("attempts") or 3) <= 10:
            raise Invalid("option attempts of WebHook must be between 1 and 10")

    def perform(self, ctx: ActionContext) -> str:
        document = scrub_data(job_document(ctx.job), ctx.secrets)
        body = json.dumps(document, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-MultiFlexi-Event": "job.finished",
            "X-MultiFlexi-Job": str(ctx.job.job_id),
        }
        secret = ctx.options.get("secret")
        if secret:
            headers[SIGNATURE_HEADER] = signature(str(secret), body)
        url = str(ctx.options["uri"])
        delivery = post_json(ctx, url, body, headers, attempts=int(ctx.options["attempts"] or 3))
        tries = "attempt" if delivery.attempts == 1 else "attempts"
        if not delivery.ok:
            raise ActionError(
                f"refused by {where(url)}: HTTP {delivery.status} after {delivery.attempts} {tries}"
            )
        return (
            f"delivered to {where(url)}: HTTP {delivery.status} after {delivery.attempts} {tries}"
        )
