"""``python -m openautoglm.crd [--check] [--output FILE]`` (see :mod:`openautoglm.crd.cli`)."""

import sys

from openautoglm.crd.cli import main

sys.exit(main())
