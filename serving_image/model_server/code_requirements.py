"""A model's own Python packages: `code/requirements.txt` in the model artifact.

A model whose code (model/code/, script mode) imports a package the image does not carry lists it
in code/requirements.txt, as SageMaker's framework containers read it. The serving image installs
it at build (the Dockerfile's `serving` stage runs `python -m model_server.code_requirements
install /tmp/model/code /opt/program` as root, then switches back to the non-root user); `train`
and the judge job install it into a folder of their own before loading the model (`ensure`). `serve`
never installs anything: a package it lacks is a ModelLoadError naming it.

What the file may say (anything else is refused, naming the line, before pip runs):
- one requirement a line: a package name with optional extras, version specifiers and a marker
  (`inflection==0.5.1`, `rapidfuzz>=3,<4`); comments and blank lines;
- no options (`-r`, `-e`, `--index-url`, `--extra-index-url`, `--find-links`, ...), no URLs or
  paths: the build reaches the package index and nothing else;
- nothing that changes a package the image pins (serving_image/requirements*.txt, in the image
  as /opt/program/requirements*.txt: every model format's pins, whichever sets the image
  carries): `numpy<2` in an image pinned at numpy==2.4.6 fails the build with that name. The pins are pip's constraints too, so a package whose own dependencies would move a
  pinned version fails pip's resolution, which names the packages.

pip runs with `--only-binary=:all:` (wheels only: no package's build code runs in the build).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS_FILE = "requirements.txt"
# The image's pins beside the package: /opt/program/requirements*.txt in the image, serving_image/'s
# in the repository (requirements.txt and each model format's requirements-<set>.txt; not the
# build stage's requirements-build.txt, which no image carries).
PINS_DIR = Path(__file__).resolve().parent.parent
NOT_PINS = frozenset({"requirements-build.txt"})
INSTALL_TIMEOUT_SECONDS = 600.0
MAX_LINES = 200


class RequirementsError(Exception):
    """code/requirements.txt cannot be installed: the message names the line or package and why."""


@dataclass(frozen=True)
class Requirement:
    line: int
    text: str
    name: str  # canonical (PEP 503)
    specifier: str
    marker_applies: bool


def canonical(name: str) -> str:
    """PEP 503's normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path, *, what: str = "code/requirements.txt") -> list[Requirement]:
    """The requirements of `path`; RequirementsError names the first line that is not one."""
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Parsed

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RequirementsError(f"{what}: cannot be read: {exc}") from None
    if len(lines) > MAX_LINES:
        raise RequirementsError(f"{what}: {len(lines)} lines; at most {MAX_LINES}")
    found: list[Requirement] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not text:
            continue
        where = f"{what} line {number} ({text!r})"
        if text.startswith("-"):
            raise RequirementsError(
                f"{where}: pip options are not accepted (no other index, file or editable install: "
                "the build reaches only the package index); list package names with versions"
            )
        if "/" in text or "\\" in text or "@" in text:
            raise RequirementsError(
                f"{where}: URLs and paths are not accepted (the build reaches only the package "
                "index); name the package and its version"
            )
        try:
            parsed = Parsed(text)
        except InvalidRequirement as exc:
            raise RequirementsError(f"{where}: not a requirement: {' '.join(str(exc).split())}") from None
        applies = parsed.marker.evaluate() if parsed.marker is not None else True
        found.append(Requirement(number, text, canonical(parsed.name), str(parsed.specifier), applies))
    return found


def pin_files(folder: Path = PINS_DIR) -> list[Path]:
    """The image's requirement files in `folder`: requirements.txt and requirements-<set>.txt."""
    files = sorted(p for p in folder.glob("requirements*.txt") if p.is_file() and p.name not in NOT_PINS)
    if not files:
        raise RequirementsError(f"no requirements*.txt in {folder}: the image's pins are missing")
    return files


def read_pins(folder: Path = PINS_DIR) -> dict[str, str]:
    """The image's pins: canonical name -> version, from the `name==version` lines of pin_files()."""
    pins: dict[str, str] = {}
    for path in pin_files(folder):
        for raw in path.read_text(encoding="utf-8").splitlines():
            text = raw.split("#", 1)[0].strip()
            if "==" in text:
                name, _, version = text.partition("==")
                pins[canonical(name.strip())] = version.strip()
    return pins


def check(
    requirements: Sequence[Requirement], pins: dict[str, str], *, what: str = "code/requirements.txt"
) -> None:
    """RequirementsError naming every requirement that would change a version the image pins."""
    from packaging.specifiers import SpecifierSet

    conflicts = []
    for req in requirements:
        pinned = pins.get(req.name)
        if pinned is None or not req.marker_applies:
            continue
        if not SpecifierSet(req.specifier).contains(pinned, prereleases=True):
            conflicts.append(f"line {req.line} {req.text!r} conflicts with the image's {req.name}=={pinned}")
    if conflicts:
        raise RequirementsError(
            f"{what}: " + "; ".join(conflicts) + ". The server needs the versions it pins "
            "(serving_image/requirements*.txt): accept those versions or drop the requirement"
        )


def site_packages(prefix: Path) -> Path:
    """Where `pip install --prefix <prefix>` puts packages for this Python (a venv's layout)."""
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def pip_command(requirements: Path, pins: Path, prefix: Path | None = None) -> list[str]:
    """pip, with every file of the image's pins (the folder `pins`) as constraints."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-input",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        *(arg for path in pin_files(pins) for arg in ("--constraint", str(path))),
        "--requirement",
        str(requirements),
    ]
    if prefix is not None:  # unlike --target, --prefix installs only what the environment lacks
        command += ["--prefix", str(prefix)]
    return command


def install(code_dir: Path, pins: Path = PINS_DIR, *, prefix: Path | None = None) -> list[Requirement]:
    """Check and pip-install `code_dir`/requirements.txt (into this Python's environment, or what it
    lacks under `prefix`, laid out as a venv) under the pins in the folder `pins`; returns the
    requirements. RequirementsError says why it failed (pip's own message names the package it
    could not resolve)."""
    path = code_dir / REQUIREMENTS_FILE
    requirements = read_requirements(path)
    check(requirements, read_pins(pins))
    if not any(r.marker_applies for r in requirements):
        return requirements
    try:
        done = subprocess.run(
            pip_command(path, pins, prefix),
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
            env={**os.environ, "PIP_NO_INPUT": "1"},
        )
    except subprocess.TimeoutExpired:
        raise RequirementsError(
            f"code/requirements.txt: pip install took longer than {INSTALL_TIMEOUT_SECONDS:.0f}s"
        ) from None
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if line.strip()]
        raise RequirementsError(
            "code/requirements.txt: pip install failed: "
            + " | ".join(said[-12:] or [f"exit status {done.returncode}"])
        )
    return requirements


def missing(requirements: Sequence[Requirement]) -> list[str]:
    """The requirements this Python's environment does not satisfy (sys.path as it is)."""
    from packaging.specifiers import SpecifierSet

    absent = []
    for req in requirements:
        if not req.marker_applies:
            continue
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            absent.append(req.text)
            continue
        if not SpecifierSet(req.specifier).contains(version, prereleases=True):
            absent.append(f"{req.text} (found {version})")
    return absent


def ensure(code_dir: Path, *, install_missing: bool, pins: Path = PINS_DIR) -> Path | None:
    """Make the model's requirements importable before it is loaded.

    Satisfied already (the serving image installed them at build): nothing (None). Otherwise, with
    `install_missing` (train, the judge job), pip installs them into a folder named after the file's
    sha256 under the temporary folder (reused by the same process and its children), whose
    site-packages goes first on sys.path and is returned (a child process needs it on
    PYTHONPATH); without it (serve), RequirementsError names what is missing.
    """
    path = code_dir / REQUIREMENTS_FILE
    if not path.is_file():
        return None
    requirements = read_requirements(path)
    if not install_missing:
        absent = missing(requirements)
        if absent:
            raise RequirementsError(
                f"code/requirements.txt: {', '.join(absent)} not installed in this image; the image build "
                "installs code/requirements.txt (serving_image/Dockerfile, serving stage): rebuild the image"
            )
        return None
    files = b"".join(p.read_bytes() for p in [path, *pin_files(pins)])
    digest = hashlib.sha256(files).hexdigest()[:16]
    prefix = Path(tempfile.gettempdir()) / f"modelops-code-packages-{os.getuid()}" / digest
    target = site_packages(prefix)
    if (prefix / ".complete").is_file() and str(target) not in sys.path:
        sys.path.insert(0, str(target))  # installed earlier by this process or another
        importlib.invalidate_caches()
    if not missing(requirements):
        return target if str(target) in sys.path else None
    if not (prefix / ".complete").is_file():
        prefix.mkdir(parents=True, exist_ok=True)
        install(code_dir, pins, prefix=prefix)
        (prefix / ".complete").touch()
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    return target


USAGE = (
    "usage: python -m model_server.code_requirements install <code folder> [<pins folder>] [--prefix <venv>]"
)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m model_server.code_requirements install <code folder> [<pins folder>]`: the image
    build's step (`--prefix`: what this Python's environment lacks, into that venv-shaped folder);
    a folder without requirements.txt installs nothing."""
    args = list(sys.argv[1:] if argv is None else argv)
    prefix = None
    if "--prefix" in args:
        at = args.index("--prefix")
        if at + 1 >= len(args):
            print(USAGE, file=sys.stderr)
            return 2
        prefix = Path(args[at + 1])
        del args[at : at + 2]
    if len(args) not in (2, 3) or args[0] != "install":
        print(USAGE, file=sys.stderr)
        return 2
    code_dir = Path(args[1])
    pins = Path(args[2]) if len(args) == 3 else PINS_DIR
    if not (code_dir / REQUIREMENTS_FILE).is_file():
        print(f"code requirements: no {code_dir / REQUIREMENTS_FILE}: nothing to install")
        return 0
    try:
        installed = install(code_dir, pins, prefix=prefix)
    except RequirementsError as exc:
        print(f"code requirements: {exc}", file=sys.stderr)
        return 1
    print("code requirements: installed " + ", ".join(r.text for r in installed if r.marker_applies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
