"""``python -m switchboard`` runs the CLI."""

import sys

from switchboard.cli import main

sys.exit(main())
