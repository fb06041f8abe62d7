"""Run templates: an application configured for a company, with schedule and limits."""
