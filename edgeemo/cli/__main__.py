"""`python -m edgeemo.cli ...`, the same as the `edgeemo` command."""

import sys

from edgeemo.cli.main import main

sys.exit(main())
