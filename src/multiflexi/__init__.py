"""MultiFlexi: run configured command-line applications for many companies, and keep a
complete record of every run."""

__version__ = "0.1.0"
