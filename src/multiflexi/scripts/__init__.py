"""Exporting a job for a human: its environment as a .env file, or a launcher script."""
