"""Property-based requests from our own OpenAPI document (schemathesis, a few examples per
operation so the suite stays fast): no answer is a server error, and every answer's status
code, content type and headers are documented.

The operations are walked by hand (schemathesis' pytest plugin does not run under pytest 9).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import Server, token_for

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = 5


@pytest.mark.slow
def test_no_server_errors_and_documented_answers(sqlite_server: Server) -> None:
    import httpx

    document = httpx.get(sqlite_server.url + "/api/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    # A bearer token: schemathesis also tries wrong credentials, and failed Basic logins
    # would (rightly) be throttled into 429s for the rest of the run.
    auth = {"Authorization": f"Bearer {token_for(sqlite_server.db, 'admin')}"}
    # Wrong credentials get 401 until throttling answers 429, which is right; schemathesis'
    # "ignored auth" check would call that a failure. Upstream's paths take their input
    # from the body or the query (login, POST /job/), which a schema cannot require
    # "one of"; a request with neither is schema-valid and rightly answered 400.
    from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "DELETE":
            continue  # would delete the fixtures of the other tests

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=sqlite_server.url,
                headers=auth,
                excluded_checks=[ignored_auth, positive_data_acceptance],
            )

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)
