"""Monitoring: Zabbix trapper reporting of jobs (``zabbix``), this process's counters
(``counters``) and the Prometheus endpoint (``metrics``: the cluster's state read from
the database on scrape, and the process's counters)."""

from __future__ import annotations
