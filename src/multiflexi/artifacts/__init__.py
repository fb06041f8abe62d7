"""Artifacts: the files a job leaves behind (result files, stdout, stderr) and their types."""
