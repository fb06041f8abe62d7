"""Post-run actions: WebHook, Zabbix, LaunchJob, Reschedule, Stop, CustomCommand, GitHub,
Redmine, and any plugin registered in the ``multiflexi.actions`` entry-point group.

``base`` defines what an action is, ``registry`` finds them, ``config`` validates and
stores their options, ``runner`` runs them when a job finishes, ``payload`` says what
leaves MultiFlexi about a job (and scrubs secrets from it).
"""

from __future__ import annotations

from multiflexi.actions.base import Action, ActionContext, ActionError, Option

__all__ = ["Action", "ActionContext", "ActionError", "Option"]
