"""Type-check the shared package, the CLI, the local runtime, the serving image and each function.

pyproject.toml's `mypy_path` names each package's root, so every module carries the name it is
imported by (`modelops.steps.lock`, `model_server.server`), the per-module settings
(`[[tool.mypy.overrides]]`, the strict list) match it, and imports between the packages are typed.
Every function's handler is `functions/<name>/app.py` (SAM's layout), so the handlers are checked
one folder at a time: checked together, mypy would see several modules named `app`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "layers/modelops/modelops",
    "src/modelops_cli",
    "local/modelops_local",
    "serving_image/model_server",
)


def main() -> int:
    mypy = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    failed = subprocess.call([*mypy, *PACKAGES], cwd=ROOT) != 0
    for handler in sorted(ROOT.glob("functions/*/app.py")):
        failed |= subprocess.call([*mypy, str(handler.relative_to(ROOT))], cwd=ROOT) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
