"""Type-check the shared package, the CLI, the local runtime and each function.

Every function's handler is `functions/<name>/app.py` (SAM's layout), so the handlers are checked one
folder at a time: checked together, mypy would see several modules named `app`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    mypy = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    failed = subprocess.call([*mypy, "layers/modelops/modelops", "src"], cwd=ROOT) != 0
    for handler in sorted(ROOT.glob("functions/*/app.py")):
        failed |= subprocess.call([*mypy, str(handler.relative_to(ROOT))], cwd=ROOT) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
