"""``python -m rsdistill`` is the ``rsdistill`` command."""

import sys

from rsdistill.cli import main

sys.exit(main())
