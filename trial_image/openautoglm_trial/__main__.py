"""Entry point of a trial worker: ``python -m openautoglm_trial``.

With ``OPENAUTOGLM_COMMAND`` set it supervises the user's own program (:mod:`.supervisor`);
otherwise it runs the built-in task ``OPENAUTOGLM_TASK`` (:mod:`.builtin`). Only the branch taken
is imported. Exit codes: :data:`.contract.EXIT_COMPLETED` (completed or stopped),
:data:`.contract.EXIT_FAILED`, :data:`.contract.EXIT_TERMINATED` (SIGTERM).
"""

from __future__ import annotations

import os
import sys

from . import contract


def main() -> int:
    """Run one trial worker and return its exit code."""
    if os.environ.get(contract.COMMAND):
        from .supervisor.run import main as supervise

        return supervise()
    from .builtin.run import main as train

    return train()


if __name__ == "__main__":
    sys.exit(main())
