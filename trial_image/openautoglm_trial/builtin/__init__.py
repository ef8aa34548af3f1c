"""The built-in training: one Horovod worker of a built-in task (``trial.task``).

``python -m openautoglm_trial`` without ``OPENAUTOGLM_COMMAND`` runs :func:`.run.main`: it reads the
environment, serves /metrics and the probes, joins Horovod, trains (:mod:`.training`, with torch
kept eager by :mod:`.eager` and start-up phases timed by :mod:`.startup`), and writes the termination
message. The tasks themselves are :mod:`openautoglm_trial.tasks`, at the package's top because the
operator reads their registry; nothing here imports the supervisor.
"""
