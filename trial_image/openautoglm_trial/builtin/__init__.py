"""The built-in training: one worker of a built-in task (``trial.task``), on Horovod or DDP.

``python -m openautoglm_trial`` without ``OPENAUTOGLM_COMMAND`` runs :func:`.run.main`: it reads the
environment, serves /metrics and the probes, joins the other ranks (:mod:`.distributed`: Horovod,
or torch.distributed with DDP and ZeRO-1), trains (:mod:`.training`, with torch
kept eager by :mod:`.eager` and start-up phases timed by :mod:`.startup`), and writes the termination
message. The tasks themselves are :mod:`openautoglm_trial.tasks`, at the package's top because the
operator reads their registry; nothing here imports the supervisor.
"""
