"""``python -m sokka.shell.cli`` runs the ``sokka`` command."""

import sys

from sokka.shell.cli import main

sys.exit(main())
