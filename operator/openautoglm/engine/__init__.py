"""The engine both drivers share: the reconcile step and what it stands on.

    driver      one job's loop around reconcile: study, clock, spec edits, stop, done test
    reconcile   one level-triggered pass (observe, report/prune, tell, ask, launch)
    status      the job's status from its study (a pure builder)
    study       the Optuna study of a job: created once, reopened, checked against the spec
    storage     journal file or PostgreSQL
    metrics     where intermediate values come from (scrape, Prometheus)
    worker      a worker's command and environment (the trial contract, operator side)
    trials      what a backend reports about a trial, and the typed trial result

Nothing here imports local/ or k8s/: they import the engine.
"""
