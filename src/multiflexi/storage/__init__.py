"""Persistence: SQLAlchemy models, the engine, Alembic migrations and chunked blobs."""
