"""Credentials: typed, company-scoped values (secrets encrypted at rest) bound to run
templates, and the credential types that declare their fields.

- :mod:`~multiflexi.credentials.types`: field kinds, value checks, storage of types.
- :mod:`~multiflexi.credentials.typejson`: type definitions in JSON (bundled schemas).
- :mod:`~multiflexi.credentials.service`: credentials, their display, the env layer.
- :mod:`~multiflexi.credentials.bindings`: credentials bound to run templates.
"""

from __future__ import annotations
