"""Type-check the shared package, the CLI, the local runtime, the serving image and each function.

Two kinds of run:

- By import name (`-p`): the packages in `BY_IMPORT_NAME`, found through `IMPORT_ROOTS`, so each module
  carries the name it is imported by (`model_server.server`, `modelops_cli.main`), the per-module
  settings in pyproject.toml (`[[tool.mypy.overrides]]`, the strict list) apply to it, and its
  imports of the other packages are followed and typed. Modules followed, not listed, are checked
  in their own run below, so their errors are not reported twice (`--follow-imports=silent`).
- By path: the rest. mypy names these modules after their path (`layers.modelops.modelops.pipeline`)
  and cannot follow the editable install's import hook, so their imports of `modelops` and
  `modelops_local` are unresolved (`Any`). Every function's handler is `functions/<name>/app.py`
  (SAM's layout), so the handlers are checked one folder at a time: checked together, mypy would
  see several modules named `app`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where each package lives: the layer's, the installable project's, the serving image's code root
# (/opt/program in the image; the serving tests put serving_image/ on sys.path the same way).
IMPORT_ROOTS = ("layers/modelops", "src", "serving_image")
BY_IMPORT_NAME = ("model_server", "modelops_cli")
BY_PATH = ("layers/modelops/modelops", "src/modelops_local")


def main() -> int:
    mypy = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    by_name_env = {**os.environ, "MYPYPATH": os.pathsep.join(str(ROOT / root) for root in IMPORT_ROOTS)}
    packages = [arg for package in BY_IMPORT_NAME for arg in ("-p", package)]
    failed = subprocess.call([*mypy, "--follow-imports=silent", *packages], cwd=ROOT, env=by_name_env) != 0
    failed |= subprocess.call([*mypy, *BY_PATH], cwd=ROOT) != 0
    for handler in sorted(ROOT.glob("functions/*/app.py")):
        failed |= subprocess.call([*mypy, str(handler.relative_to(ROOT))], cwd=ROOT) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
