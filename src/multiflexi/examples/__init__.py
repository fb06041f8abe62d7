"""Example applications shipped with MultiFlexi (used by ``make demo`` and the tests)."""
