"""``python -m tracefoundry.cli`` is the ``tracefoundry`` console script."""

from tracefoundry.cli.main import main

raise SystemExit(main())
