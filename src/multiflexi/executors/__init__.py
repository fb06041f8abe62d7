"""Executors: launch a prepared command, stream its output, return what happened.

They know nothing of the database: a job's record is written by ``jobs/`` through the
:class:`~multiflexi.executors.base.OutputSink` it passes in.
"""
