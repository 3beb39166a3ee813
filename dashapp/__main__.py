"""``python -m dashapp``: the dashapp command line."""

import sys

from dashapp.cli import main

sys.exit(main())
