"""Monitoring: Zabbix trapper reporting of jobs (``zabbix``) and Prometheus metrics
read from the database on scrape (``metrics``)."""

from __future__ import annotations
