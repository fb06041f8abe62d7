"""Companies (tenants): slugs, records, environment, and assigned applications."""
