"""Running a TuningJob on this machine: worker processes (backend), the loop (runner), the console (progress)."""
