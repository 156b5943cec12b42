"""``python -m src serve [MODEL_DIR]`` from a checkout: the ``streamwise`` command."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from streamwise.cli import main  # noqa: E402

sys.exit(main())
