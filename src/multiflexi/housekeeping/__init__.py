"""Housekeeping: storage usage, retention (prune), orphan repair, and the periodic run.

- :mod:`.policy` decides what the retention policy removes (pure, no database).
- :mod:`.prune` plans and applies it in short batches.
- :mod:`.usage` reports bytes per company, application, template and month.
- :mod:`.orphans` repairs jobs and queue rows left inconsistent by crashes.
- :mod:`.service` runs all of it once, under a cluster-wide lock.
"""
