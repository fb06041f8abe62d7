"""Route modules: ``meta`` (index, ping, status, login, logout, GDPR export, queue,
metrics), ``entities`` (apps, companies, run templates, credentials, users, audit log),
``jobs`` (jobs, artifacts, output)."""
