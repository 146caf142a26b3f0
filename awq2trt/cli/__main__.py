"""``python -m awq2trt.cli``: the same command line as the ``awq2trt`` script (scripts and tests use it)."""

import sys

from awq2trt.cli.app import main

sys.exit(main())
