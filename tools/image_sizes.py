"""The serving image's Python libraries per model format, installed as the Dockerfile installs them.

    .venv/bin/python tools/image_sizes.py [--work /tmp/modelops-image-sizes]

Creates a venv with serving_image/requirements.txt (every image's libraries) and, per model format,
`pip install --no-deps --target <folder> -r requirements-<set>.txt` (the Dockerfile's
/opt/formats/<set>), then prints each one's installed size (`du -sk`) and each format's total
(the base venv's site-packages plus its set; the interpreter and the Debian base are the same in
every image and left out). Needs the package index (or the pip cache); about a minute.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

IMAGE = Path(__file__).resolve().parents[1] / "serving_image"
SETS = ("xgboost", "lightgbm", "onnx")
# Which sets each model format's image carries (model_server/formats.py decides it per model).
FORMATS = {"sklearn": (), "xgboost": ("xgboost",), "lightgbm": ("lightgbm",), "onnx": ("onnx",)}


def kib(path: Path) -> int:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True, timeout=120)
    return int(out.stdout.split()[0])


def pip(python: Path, *args: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--only-binary=:all:", *args],
        check=True,
        timeout=900,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/modelops-image-sizes"))
    work = parser.parse_args().work
    shutil.rmtree(work, ignore_errors=True)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    pip(python, "-r", str(IMAGE / "requirements.txt"))
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    )
    sizes = {"base": kib(site)}
    for name in SETS:
        pip(python, "--no-deps", "--target", str(work / name), "-r", str(IMAGE / f"requirements-{name}.txt"))
        sizes[name] = kib(work / name)
    print("| library set | installed (MiB) |")
    print("|---|---|")
    for name, size in sizes.items():
        print(f"| {name} | {size / 1024:.1f} |")
    print()
    print("| model format | Python libraries in its image (MiB) | vs all formats |")
    print("|---|---|---|")
    every = sum(sizes.values())
    for fmt, sets in FORMATS.items():
        total = sizes["base"] + sum(sizes[s] for s in sets)
        print(f"| {fmt} | {total / 1024:.1f} | {total / every:.2f}x |")
    print(f"| (all formats: the training image) | {every / 1024:.1f} | 1.00x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
