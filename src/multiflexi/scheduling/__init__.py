"""Scheduling: interval codes and cron arithmetic in time zones (``calendar``)."""
