"""The command line: parse input, call services, render output. No SQL, no rules."""
