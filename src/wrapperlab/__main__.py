"""``python -m wrapperlab``: the ``wrapperlab`` command."""

import sys

from wrapperlab.cli.main import main

sys.exit(main())
