"""``python -m streamgmm``: the command-line interface."""

from streamgmm.cli import main

raise SystemExit(main())
