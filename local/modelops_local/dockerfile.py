"""`docker build` for the local CodeBuild: interprets serving_image/Dockerfile into an OCI image.

The docker shim (build_shims.py) calls `build_image`, which reads the Dockerfile it is given, so a
change to the Dockerfile shows up in the local build; an instruction or a RUN program it cannot
carry out fails the build naming it (UnsupportedInstructionError).

Each stage is a root folder. What it supports, and how:
- `ARG` (before the first FROM and in stages; `--build-arg` values win), `ENV`, `LABEL`, `WORKDIR`,
  `USER`, `EXPOSE`, `CMD` (JSON form): as Docker, `${NAME}`, `$NAME`, `${NAME:-default}` expanded.
- `FROM <stage>` starts from a copy of that stage; `FROM <image>` (python:3.11-slim, ...) from an
  empty root: **the host's Python and system libraries stand in for the base image**, as the
  local runtime runs the image's programs with the host's Python.
- `COPY [--from=<stage>] [--chown=u:g] [--chmod=mode] <src>... <dest>` from the build context or
  a stage's root, Docker's rules (a folder's contents, into a folder when dest ends with `/`).
- `RUN [--mount=type=bind,from=<stage>,source=<path>,target=<path>] <a && b && ...>`: each
  command's absolute paths are mapped into the stage's root (or the mount); then by program:
  `mkdir tar test rm cp ln chmod echo true` and `python ...` run on the host (python is the host's
  interpreter, PYTHONPATH's entries mapped, and `PIP_PREFIX` the stage's /opt/venv, so a pip
  install lands in the image's venv with what the host's environment lacks); the host stands in
  for `apt-get` (its system libraries), `groupadd`/`useradd`/`chown` (ownership is COPY
  --chown's), `python -m venv <dir>` (the folder is made; the host's environment is the venv) and
  `pip install -r <file>` (the host must have every `name==version` the file pins: checked,
  nothing installed; `--target <dir>` makes the folder). Anything else fails naming it.
- Every instruction that changes a root's files becomes one layer of what it changed (files,
  folders, links: added or modified; COPY --chown's owner), deterministic as oci.py's layers.
Not supported (the project's Dockerfile uses none): ADD, ENTRYPOINT, VOLUME, SHELL, HEALTHCHECK,
ONBUILD, STOPSIGNAL, heredocs, RUN's other mount types, `;`, `||`, pipes and loops in RUN.
"""

from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from modelops_local import oci

INSTRUCTIONS = ("ARG", "FROM", "ENV", "LABEL", "WORKDIR", "USER", "EXPOSE", "CMD", "COPY", "RUN")
RUN_ON_HOST = frozenset({"mkdir", "tar", "test", "rm", "cp", "ln", "chmod", "echo", "true"})
STOOD_IN = frozenset({"apt-get", "groupadd", "useradd", "chown"})
PYTHONS = frozenset({"python", "python3", "/opt/venv/bin/python", "/usr/local/bin/python"})
PIPS = frozenset({"pip", "pip3", "/opt/venv/bin/pip"})
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUN_TIMEOUT_SECONDS = 600.0
_VAR = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


class DockerBuildError(Exception):
    """The build failed; the message names the Dockerfile line and why."""


class UnsupportedInstructionError(DockerBuildError):
    """An instruction, flag or RUN program the local docker shim does not carry out."""


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str


@dataclass
class Stage:
    name: str
    base: str
    line: int
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class StageState:
    root: Path
    env: dict[str, str]
    args: dict[str, str]
    workdir: str = "/"
    user: str | None = None
    cmd: list[str] | None = None
    exposed: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    layers: list[oci.LayerSpec] = field(default_factory=list)


def parse(text: str) -> tuple[list[Instruction], list[Stage]]:
    """The global instructions (before the first FROM) and the stages, continuation lines joined."""
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append((start, pending + stripped))
        pending = ""
    if pending:
        raise DockerBuildError(f"Dockerfile line {start}: the last instruction ends with a line continuation")
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword not in INSTRUCTIONS:
            raise UnsupportedInstructionError(
                f"Dockerfile line {number}: instruction {keyword} is not supported by the local docker "
                f"shim (it supports {', '.join(INSTRUCTIONS)}): extend modelops_local/dockerfile.py"
            )
        instruction = Instruction(number, keyword, rest.strip())
        if keyword == "FROM":
            words = instruction.args.split()
            if len(words) == 3 and words[1].upper() == "AS":
                stages.append(Stage(words[2], words[0], number))
            elif len(words) == 1:
                stages.append(Stage(str(len(stages)), words[0], number))
            else:
                raise UnsupportedInstructionError(
                    f"Dockerfile line {number}: FROM {instruction.args}: use FROM <image> [AS <name>]"
                )
        elif stages:
            stages[-1].instructions.append(instruction)
        elif keyword == "ARG":
            preamble.append(instruction)
        else:
            raise DockerBuildError(f"Dockerfile line {number}: {keyword} before the first FROM")
    if not stages:
        raise DockerBuildError("Dockerfile has no FROM")
    return preamble, stages


def expand(text: str, variables: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        value = variables.get(name)
        if value is None or (value == "" and match.group(2) is not None):
            return match.group(2) or ""
        return value

    return _VAR.sub(one, text)


@dataclass
class Build:
    """One `docker build`: the Dockerfile, the context folder, the build args and a work folder."""

    dockerfile: Path
    context: Path
    work: Path
    build_args: Mapping[str, str]
    log: Callable[[str], None]
    states: dict[str, StageState] = field(default_factory=dict)

    def image(self, target: str | None) -> tuple[list[oci.LayerSpec], oci.ImageConfig]:
        """The target stage (the last by default) built with the stages it needs."""
        self.context, self.work = self.context.resolve(), self.work.resolve()
        preamble, stages = parse(self.dockerfile.read_text(encoding="utf-8"))
        self.globals: dict[str, str] = {}
        for instruction in preamble:
            name, value = self._arg(instruction, {})
            self.globals[name] = value
        self.stages = {stage.name: stage for stage in stages}
        name = target or stages[-1].name
        if name not in self.stages:
            raise DockerBuildError(
                f"target stage {name!r} could not be found (stages: {', '.join(self.stages)})"
            )
        state = self._stage(name)
        config = oci.ImageConfig(
            cmd=state.cmd,
            env=state.env,
            working_dir=state.workdir if state.workdir != "/" else None,
            user=state.user,
            exposed_ports=state.exposed,
            labels=state.labels,
        )
        return list(state.layers), config

    # --- stages --------------------------------------------------------------------------------
    def _stage(self, name: str) -> StageState:
        if name in self.states:
            return self.states[name]
        stage = self.stages[name]
        base = expand(stage.base, self.globals)
        root = self.work / f"stage-{len(self.states)}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
        if base in self.stages:
            parent = self._stage(base)
            shutil.copytree(parent.root, root, symlinks=True)
            state = StageState(
                root,
                dict(parent.env),
                {},
                parent.workdir,
                parent.user,
                parent.cmd,
                list(parent.exposed),
                dict(parent.labels),
                list(parent.layers),
            )
        else:
            self.log(f"FROM {base}: the host's Python and system libraries stand in for the base image")
            root.mkdir(parents=True)
            state = StageState(root, {"PATH": DEFAULT_PATH}, {})
        for instruction in stage.instructions:
            self._instruction(state, instruction)
        self.states[name] = state
        return state

    def _instruction(self, state: StageState, instruction: Instruction) -> None:
        where = f"Dockerfile line {instruction.line} ({instruction.keyword})"
        variables = {**state.env, **state.args}
        keyword, args = instruction.keyword, instruction.args
        if keyword == "ARG":
            name, value = self._arg(instruction, self.globals)
            state.args[name] = value
        elif keyword == "ENV":
            state.env.update(_pairs(expand_words(args, variables), where))
        elif keyword == "LABEL":
            state.labels.update(_pairs(expand_words(args, variables), where))
        elif keyword == "WORKDIR":
            state.workdir = str(PurePosixPath(state.workdir) / expand(args, variables))
            self._changes(state, lambda: self._path(state, state.workdir).mkdir(parents=True, exist_ok=True))
        elif keyword == "USER":
            state.user = expand(args, variables)
        elif keyword == "EXPOSE":
            state.exposed.extend(expand(args, variables).split())
        elif keyword == "CMD":
            try:
                cmd = json.loads(args)
            except ValueError:
                raise UnsupportedInstructionError(
                    f'{where}: only the JSON form CMD ["..."] is supported'
                ) from None
            state.cmd = [str(c) for c in cmd]
        elif keyword == "COPY":
            self._copy(state, instruction, variables)
        elif keyword == "RUN":
            self._run(state, instruction, variables)

    def _arg(self, instruction: Instruction, inherited: Mapping[str, str]) -> tuple[str, str]:
        name, eq, default = instruction.args.partition("=")
        name = name.strip()
        if name in self.build_args:
            return name, self.build_args[name]
        if eq:
            return name, expand(default.strip().strip('"'), self.globals)
        return name, inherited.get(name, "")

    # --- COPY ----------------------------------------------------------------------------------
    def _copy(self, state: StageState, instruction: Instruction, variables: Mapping[str, str]) -> None:
        where = f"Dockerfile line {instruction.line} (COPY)"
        words = expand_words(instruction.args, variables)
        flags = {}
        while words and words[0].startswith("--"):
            flag, _, value = words.pop(0)[2:].partition("=")
            if flag not in ("from", "chown", "chmod"):
                raise UnsupportedInstructionError(
                    f"{where}: flag --{flag} is not supported by the local docker shim"
                )
            flags[flag] = value
        if len(words) < 2:
            raise DockerBuildError(f"{where}: COPY needs a source and a destination")
        *sources, dest = words
        if "from" in flags:
            if flags["from"] not in self.stages:
                raise UnsupportedInstructionError(
                    f"{where}: --from={flags['from']} is not a stage of this Dockerfile"
                )
            origin = self._stage(flags["from"]).root
        else:
            origin = self.context
        uid = gid = 0
        if "chown" in flags:
            owner, _, group = flags["chown"].partition(":")
            if not owner.isdigit() or not (group or owner).isdigit():
                raise UnsupportedInstructionError(f"{where}: --chown={flags['chown']}: use numeric uid:gid")
            uid, gid = int(owner), int(group or owner)
        mode = int(flags["chmod"], 8) if "chmod" in flags else None
        target = PurePosixPath(state.workdir) / dest

        def copy() -> None:
            into_folder = dest.endswith("/") or len(sources) > 1
            for source in sources:
                found = _inside(origin, source)
                if not found.exists():
                    what = f"stage {flags['from']}" if "from" in flags else "the build context"
                    raise DockerBuildError(f"{where}: COPY failed: {source} not found in {what}")
                if found.is_dir():
                    shutil.copytree(found, self._path(state, str(target)), symlinks=True, dirs_exist_ok=True)
                    copied = [p for p in self._path(state, str(target)).rglob("*") if p.is_file()]
                else:
                    out = self._path(state, str(target / found.name) if into_folder else str(target))
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(found, out)
                    copied = [out]
                if mode is not None:
                    for path in copied:
                        path.chmod(mode)

        self._changes(state, copy, uid=uid, gid=gid)

    # --- RUN -----------------------------------------------------------------------------------
    def _run(self, state: StageState, instruction: Instruction, variables: Mapping[str, str]) -> None:
        where = f"Dockerfile line {instruction.line} (RUN)"
        text = instruction.args
        mounts: dict[str, Path] = {}
        while text.startswith("--"):
            flag, _, text = text.partition(" ")
            text = text.strip()
            name, _, spec = flag[2:].partition("=")
            options = dict(part.partition("=")[::2] for part in spec.split(","))
            if name != "mount" or options.get("type") != "bind" or "from" not in options:
                raise UnsupportedInstructionError(
                    f"{where}: {flag} is not supported by the local docker shim (only --mount=type=bind,from=<stage>)"
                )
            source_root = self._stage(options["from"]).root
            mounts[options["target"]] = _inside(source_root, options.get("source", "/"))
        if re.search(r";|\|\||(?<!\|)\|(?!\|)|<<|\bfor\b|\bwhile\b|\bif\b", text):
            raise UnsupportedInstructionError(
                f"{where}: `{text[:80]}`: only commands joined by && are supported by the local docker shim"
            )
        env = {**state.env, **{k: v for k, v in state.args.items()}}
        self._changes(state, lambda: self._commands(state, where, text.split("&&"), env, mounts))

    def _commands(
        self,
        state: StageState,
        where: str,
        commands: Sequence[str],
        env: Mapping[str, str],
        mounts: Mapping[str, Path],
    ) -> None:
        for command in commands:
            words = shlex.split(command)
            assignments = {}
            while words and re.match(r"^\w+=", words[0]):
                name, _, value = words.pop(0).partition("=")
                assignments[name] = value
            if not words:
                continue
            program = words[0]
            name = program.rsplit("/", 1)[-1]
            if program in STOOD_IN:
                self.log(f"{where}: {program}: the host stands in (skipped)")
            elif program in PIPS or (program in PYTHONS and words[1:3] == ["-m", "pip"]):
                self._pip(state, where, words[1:] if program in PIPS else words[3:], mounts)
            elif program in PYTHONS and words[1:3] == ["-m", "venv"]:
                self._path(state, words[3], mounts).mkdir(parents=True, exist_ok=True)
                self.log(f"{where}: python -m venv {words[3]}: the host's environment stands in for the venv")
            elif program in PYTHONS:
                run_env = {**os.environ, **env, **assignments}
                run_env["PYTHONPATH"] = os.pathsep.join(
                    str(self._path(state, p, mounts)) for p in run_env.get("PYTHONPATH", "").split(":") if p
                )
                run_env["PIP_PREFIX"] = str(self._path(state, "/opt/venv"))
                run_env["PATH"] = os.environ.get("PATH", DEFAULT_PATH)
                self._exec(where, [sys.executable, *self._map(state, words[1:], mounts)], state, run_env)
            elif name in RUN_ON_HOST and program in (name, f"/bin/{name}", f"/usr/bin/{name}"):
                self._exec(where, [name, *self._map(state, words[1:], mounts)], state, dict(os.environ))
            else:
                raise UnsupportedInstructionError(
                    f"{where}: RUN program {program!r} is not supported by the local docker shim (it runs "
                    f"{', '.join(sorted(RUN_ON_HOST))} and python; the host stands in for "
                    f"{', '.join(sorted(STOOD_IN))}, python -m venv and pip install -r)"
                )

    def _pip(self, state: StageState, where: str, args: list[str], mounts: Mapping[str, Path]) -> None:
        if not args or args[0] != "install":
            raise UnsupportedInstructionError(
                f"{where}: pip {' '.join(args[:1])}: only pip install -r is supported"
            )
        files, target = [], None
        i = 1
        while i < len(args):
            if args[i] in ("-r", "--requirement"):
                files.append(self._path(state, args[i + 1], mounts))
                i += 2
            elif args[i] == "--target":
                target = args[i + 1]
                i += 2
            elif args[i] in ("--only-binary=:all:", "--no-deps") or args[i].startswith("--only-binary"):
                i += 1
            else:
                raise UnsupportedInstructionError(
                    f"{where}: pip install {args[i]} is not supported by the local docker shim"
                )
        lacking = []
        for path in files:
            for raw in path.read_text(encoding="utf-8").splitlines():
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                package, _, pinned = line.partition("==")
                try:
                    have = importlib.metadata.version(package.strip())
                except importlib.metadata.PackageNotFoundError:
                    have = None
                if have != pinned.strip():
                    lacking.append(f"{line} (the host has {have or 'none'})")
        if lacking:
            raise DockerBuildError(
                f"{where}: the host's environment stands in for the image's and lacks {', '.join(lacking)}: "
                "install the project's pins (make install)"
            )
        if target is not None:
            self._path(state, target, mounts).mkdir(parents=True, exist_ok=True)
        self.log(
            f"{where}: pip install {' '.join(p.name for p in files)}: the host's environment has every pin"
        )

    def _exec(self, where: str, argv: list[str], state: StageState, env: dict[str, str]) -> None:
        cwd = self._path(state, state.workdir)
        cwd.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DockerBuildError(
                f"{where}: {argv[0]} took longer than {RUN_TIMEOUT_SECONDS:.0f}s"
            ) from None
        except FileNotFoundError:
            raise DockerBuildError(f"{where}: {argv[0]} is not on this machine") from None
        for line in (done.stdout + done.stderr).splitlines():
            self.log(line)
        if done.returncode != 0:
            said = " ".join(done.stderr.strip().splitlines()[-3:])
            raise DockerBuildError(
                f"{where}: the command returned a non-zero code: {done.returncode}: {said}"
            )

    # --- paths and layers ------------------------------------------------------------------------
    def _path(self, state: StageState, path: str, mounts: Mapping[str, Path] | None = None) -> Path:
        absolute = PurePosixPath(state.workdir) / path
        for target, host in sorted((mounts or {}).items(), key=lambda m: -len(m[0])):
            if absolute == PurePosixPath(target) or PurePosixPath(target) in absolute.parents:
                return host / absolute.relative_to(target)
        return _inside(state.root, str(absolute))

    def _map(self, state: StageState, words: Sequence[str], mounts: Mapping[str, Path]) -> list[str]:
        mapped: list[str] = []
        for word in words:
            if not word.startswith("/"):
                mapped.append(word)
                continue
            host = str(self._path(state, word, mounts))
            matches = sorted(glob.glob(host)) if any(c in word for c in "*?[") else []
            mapped.extend(matches or [host])
        return mapped

    def _changes(self, state: StageState, step: Callable[[], None], *, uid: int = 0, gid: int = 0) -> None:
        """Run `step` and add one layer of what it changed under the root (nothing changed: none)."""
        before = _snapshot(state.root)
        step()
        after = _snapshot(state.root)
        changed = sorted(p for p, v in after.items() if before.get(p) != v)
        removed = [p for p in before if p not in after]
        if removed:
            raise UnsupportedInstructionError(
                f"removing files of an earlier layer ({removed[:3]}) is not supported by the local docker shim"
            )
        if not changed:
            return
        delta = self.work / f"layer-{len(list(self.work.glob('layer-*')))}"
        for rel in changed:
            source, out = state.root / rel, delta / rel
            if source.is_dir() and not source.is_symlink():
                out.mkdir(parents=True, exist_ok=True)
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, out, follow_symlinks=False)
        state.layers.append(oci.LayerSpec(delta, "/", uid=uid, gid=gid, exclude=()))


def expand_words(text: str, variables: Mapping[str, str]) -> list[str]:
    return [expand(word, variables) for word in shlex.split(text)]


def _pairs(words: Sequence[str], where: str) -> dict[str, str]:
    pairs = {}
    for word in words:
        name, eq, value = word.partition("=")
        if not eq:
            raise UnsupportedInstructionError(f"{where}: use the name=value form ({word!r})")
        pairs[name] = value
    return pairs


def _inside(root: Path, path: str) -> Path:
    """`path` (absolute in the image, or relative to the context) under `root`; never outside it."""
    parts = [p for p in PurePosixPath(path).parts if p not in ("/", ".", "")]
    if ".." in parts:
        raise DockerBuildError(f"{path}: '..' is not allowed")
    return root.joinpath(*parts)


def _snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every entry under `root`: (kind, size, mtime_ns, link target) by relative path."""
    found: dict[str, tuple[int, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            st = path.lstat()
            link = os.readlink(path) if path.is_symlink() else ""
            found[str(path.relative_to(root))] = (
                st.st_mode,
                st.st_size,
                st.st_mtime_ns if not path.is_dir() else 0,
                link,
            )
    return found
