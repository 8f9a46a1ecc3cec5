"""Allow ``python -m anomalign``."""

from anomalign.cli import main

raise SystemExit(main())
