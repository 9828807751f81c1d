"""``python -m sim.cli``: the softerror command."""

import sys

from sim.cli.main import main

sys.exit(main())
