"""``python -m awq2trt``: the same command line as the ``awq2trt`` script."""

import sys

from awq2trt.cli import main

sys.exit(main())
