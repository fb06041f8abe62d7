"""Jobs: creation, the lifecycle of a run, and the record it leaves."""
