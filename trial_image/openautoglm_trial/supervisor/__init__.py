"""The trial supervisor: runs a user's unchanged program as one worker of a trial.

``python -m openautoglm_trial`` with ``OPENAUTOGLM_COMMAND`` set runs :func:`.run.main`. The parts:
:mod:`.command` fills the placeholders into the argv, :mod:`.child` runs the program,
:mod:`.collectors` and :mod:`.parsers` read its metrics, :mod:`.recorder` turns them into curves and
stop decisions, :mod:`.board` shares those decisions between ranks. Nothing here imports torch or
the built-in training (:mod:`openautoglm_trial.builtin`); what both share sits at the package's top.
"""
