"""Entry point of `python -m timemachine.health`."""

import sys

from timemachine.health.cli import main

sys.exit(main())
