"""`docker` and `aws` on the local CodeBuild's PATH: exactly the subcommands buildspec.yml uses.

The buildspec's commands run in bash (codebuild.py); `docker` and `aws` there are tiny client
scripts (`install_shims`) that send their argv, working folder and standard input over a Unix
socket to this build's `ShimServer`, which carries them out with the local CodeBuild's own S3 and
ECR clients and its OCI layouts, and answers with the output and the exit status. Supported:

    aws ecr get-login-password [--region R]
    aws s3 cp [--only-show-errors] s3://<bucket>/<key> <file>
    aws ecr describe-images --repository-name N --image-ids imageTag=T
                            [--query 'imageDetails[0].imageDigest' --output text]
    docker login --username AWS --password-stdin <registry>
    docker build [--pull] [--target T] [--build-arg K=V]... --tag <repo>:<tag> <context>
    docker tag <source> <repo>:<tag>
    docker push <repo>:<tag>
    docker inspect --format '{{index .RepoDigests 0}}' <repo>:<tag>

Anything else exits 2 naming the command. `docker build` interprets the context's Dockerfile
(dockerfile.py) into a per-build staging layout (the "docker daemon"); `docker push` copies the
blobs into the shared layout (the registry's storage) and calls ECR's PutImage with the manifest
and its real digest (an IMMUTABLE repository refuses an existing tag with another digest, as ECR
does; the same digest again is a no-op). ECR's registry must be this account's, and docker must
have logged in to it first ("no basic auth credentials" otherwise).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import re
import shlex
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops_local import dockerfile, oci

ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
MAX_REQUEST_BYTES = 1 << 20
CLIENT = """#!{python}
import json, os, socket, sys
data = sys.stdin.buffer.read().decode("utf-8", "replace") if not sys.stdin.isatty() else ""
request = json.dumps({{"tool": {tool!r}, "argv": sys.argv[1:], "cwd": os.getcwd(), "stdin": data}})
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
    conn.settimeout({timeout})
    conn.connect({socket!r})
    conn.sendall(request.encode())
    conn.shutdown(socket.SHUT_WR)
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
answer = json.loads(b"".join(chunks))
sys.stdout.write(answer["stdout"]); sys.stderr.write(answer["stderr"])
sys.exit(answer["code"])
"""


class ShimError(Exception):
    """The command fails: the message goes to stderr, `code` is its exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Registry:
    """What the shims act on: the build's clients, layouts and account."""

    s3: Any
    ecr: Any
    layout_dir: Path  # the registry's storage (shared)
    staging: Path  # this build's "docker daemon"
    work: Path  # dockerfile.py's stage roots
    account_id: str
    push_lock: threading.Lock
    max_download_bytes: int
    log: Callable[[str], None]
    logged_in: set[str] = field(default_factory=set)
    images: dict[str, oci.BuiltImage] = field(default_factory=dict)  # "<repo>:<tag>" -> image
    pushed: dict[str, str] = field(default_factory=dict)  # "<repo>:<tag>" -> digest


def install_shims(bin_dir: Path, socket_path: Path, python: str, timeout: float) -> None:
    """Write the `docker` and `aws` client scripts into `bin_dir` (put it first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("docker", "aws"):
        script = bin_dir / tool
        script.write_text(CLIENT.format(python=python, tool=tool, socket=str(socket_path), timeout=timeout))
        script.chmod(0o755)


class ShimServer:
    """Answers the shims of one build on `socket_path` (one connection at a time, as bash runs them)."""

    def __init__(self, socket_path: Path, registry: Registry) -> None:
        self.registry = registry
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(socket_path))
        self.sock.listen(4)
        self.thread = threading.Thread(
            target=self._serve, name=f"shims-{socket_path.parent.name}", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                chunks, size = [], 0
                while chunk := conn.recv(65536):
                    size += len(chunk)
                    if size > MAX_REQUEST_BYTES:
                        break
                    chunks.append(chunk)
                try:
                    request = json.loads(b"".join(chunks))
                    out, code, err = run(
                        self.registry,
                        request["tool"],
                        request["argv"],
                        Path(request["cwd"]),
                        request["stdin"],
                    )
                except ShimError as exc:
                    out, code, err = "", exc.code, f"{exc}\n"
                except Exception as exc:  # the build's own fault: report it, keep serving
                    out, code, err = "", 1, f"shim internal error: {type(exc).__name__}: {exc}\n"
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"stdout": out, "stderr": err, "code": code}).encode())


def run(registry: Registry, tool: str, argv: Sequence[str], cwd: Path, stdin: str) -> tuple[str, int, str]:
    """One shim command: (stdout, exit status, stderr)."""
    command = f"{tool} {shlex.join(argv)}"
    args = list(argv)
    if tool == "aws" and args[:2] == ["ecr", "get-login-password"]:
        return base64.b64encode(f"AWS:local-{registry.account_id}".encode()).decode() + "\n", 0, ""
    if tool == "aws" and args[:2] == ["s3", "cp"]:
        return _s3_cp(registry, args[2:], cwd), 0, ""
    if tool == "aws" and args[:2] == ["ecr", "describe-images"]:
        return _describe_images(registry, args[2:]), 0, ""
    if tool == "docker" and args[:1] == ["login"]:
        return _login(registry, args[1:], stdin), 0, ""
    if tool == "docker" and args[:1] == ["build"]:
        return _build(registry, args[1:], cwd), 0, ""
    if tool == "docker" and args[:1] == ["tag"] and len(args) == 3:
        if args[1] not in registry.images:
            raise ShimError(f"Error response from daemon: No such image: {args[1]}")
        registry.images[args[2]] = registry.images[args[1]]
        return "", 0, ""
    if tool == "docker" and args[:1] == ["push"] and len(args) == 2:
        return _push(registry, args[1]), 0, ""
    if (
        tool == "docker"
        and args[:3] == ["inspect", "--format", "{{index .RepoDigests 0}}"]
        and len(args) == 4
    ):
        digest = registry.pushed.get(args[3])
        if args[3] not in registry.images:
            raise ShimError(f"Error: No such object: {args[3]}")
        if digest is None:
            raise ShimError(
                "template parsing error: index of untyped nil (the image has no RepoDigests: push it first)"
            )
        return f"{_repository(args[3])}@{digest}\n", 0, ""
    raise ShimError(
        f"{command}: not supported by the local CodeBuild's {tool} shim (modelops_local/build_shims.py "
        "lists what buildspec.yml may call)",
        2,
    )


def _options(args: Sequence[str], flags: Mapping[str, bool]) -> tuple[dict[str, list[str]], list[str]]:
    """Split `args` into --flag values (flags[name]: takes a value) and positional words."""
    found: dict[str, list[str]] = {}
    positional = []
    i = 0
    while i < len(args):
        word = args[i]
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name not in flags:
                raise ShimError(
                    f"unknown flag: --{name} (the local shim supports {', '.join('--' + f for f in flags)})",
                    2,
                )
            if flags[name] and not eq:
                if i + 1 >= len(args):
                    raise ShimError(f"flag needs an argument: --{name}", 2)
                value = args[i + 1]
                i += 1
            found.setdefault(name, []).append(value)
        else:
            positional.append(word)
        i += 1
    return found, positional


def _s3_cp(registry: Registry, args: Sequence[str], cwd: Path) -> str:
    _flags, words = _options(args, {"only-show-errors": False, "region": True})
    if len(words) != 2 or not words[0].startswith("s3://"):
        raise ShimError("aws s3 cp: the local shim copies s3://<bucket>/<key> to a local file", 2)
    bucket, _, key = words[0].removeprefix("s3://").partition("/")
    try:
        response = registry.s3.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        code, message = error_of(exc)
        raise ShimError(
            f"fatal error: An error occurred ({code}) when calling the GetObject operation: {message}"
        ) from None
    size = int(response.get("ContentLength") or 0)
    if size > registry.max_download_bytes:
        raise ShimError(
            f"{words[0]} is {size} bytes; the local CodeBuild downloads at most {registry.max_download_bytes}"
        )
    target = cwd / words[1]
    with target.open("wb") as out:
        out.write(response["Body"].read())
    return ""


def _describe_images(registry: Registry, args: Sequence[str]) -> str:
    flags, words = _options(
        args, {"repository-name": True, "image-ids": True, "query": True, "output": True, "region": True}
    )
    ids = flags.get("image-ids", [""])[0]
    if words or not flags.get("repository-name") or not ids.startswith("imageTag="):
        raise ShimError(
            "aws ecr describe-images: the local shim takes --repository-name N --image-ids imageTag=T", 2
        )
    if flags.get("query", ["imageDetails[0].imageDigest"]) != ["imageDetails[0].imageDigest"]:
        raise ShimError(
            f"aws ecr describe-images --query {flags['query'][0]}: only imageDetails[0].imageDigest", 2
        )
    name, tag = flags["repository-name"][0], ids.removeprefix("imageTag=")
    try:
        details = registry.ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])
    except Exception as exc:
        code, message = error_of(exc)
        raise ShimError(
            f"An error occurred ({code}) when calling the DescribeImages operation: {message}", 254
        ) from None
    if "query" in flags:
        return str(details["imageDetails"][0]["imageDigest"]) + "\n"
    return json.dumps(details.get("imageDetails", []), default=str) + "\n"


def _login(registry: Registry, args: Sequence[str], stdin: str) -> str:
    flags, words = _options(args, {"username": True, "password-stdin": False})
    if len(words) != 1 or "password-stdin" not in flags:
        raise ShimError("docker login: the local shim takes --username AWS --password-stdin <registry>", 2)
    host = words[0]
    match = ECR_HOST.match(host)
    expected = base64.b64encode(f"AWS:local-{registry.account_id}".encode()).decode()
    if match is None:
        raise ShimError(
            f"Error response from daemon: login to {host!r}: not an ECR registry (<account>.dkr.ecr.<region>.amazonaws.com)"
        )
    if match.group(1) != registry.account_id or stdin.strip() != expected or flags.get("username") != ["AWS"]:
        raise ShimError(
            f"Error response from daemon: login attempt to https://{host}/v2/ failed with status: 401 Unauthorized"
        )
    registry.logged_in.add(host)
    return "Login Succeeded\n"


def _build(registry: Registry, args: Sequence[str], cwd: Path) -> str:
    flags, words = _options(
        args, {"pull": False, "target": True, "build-arg": True, "tag": True, "file": True}
    )
    if len(words) != 1 or len(flags.get("tag", [])) != 1:
        raise ShimError("docker build: the local shim takes one --tag <repo>:<tag> and one context folder", 2)
    context = (cwd / words[0]).resolve()
    build_args = dict(a.partition("=")[::2] for a in flags.get("build-arg", []))
    reference = flags["tag"][0]
    repository, tag = _repository(reference), reference.rpartition(":")[2]
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)

    work = registry.work / f"build-{len(registry.images)}"
    work.mkdir(parents=True, exist_ok=True)
    build = dockerfile.Build(context / flags.get("file", ["Dockerfile"])[0], context, work, build_args, say)
    try:
        layers, config = build.image(flags.get("target", [None])[0])
        image = oci.build_image(registry.staging, repository, tag, layers, config)
    except (dockerfile.DockerBuildError, oci.OciError, OSError) as exc:
        raise ShimError("\n".join([*lines, f"ERROR: failed to build: {exc}"])) from None
    registry.images[reference] = image
    lines.append(f"naming to {reference} done: {image.digest} ({len(image.layers)} layers)")
    return "\n".join(lines) + "\n"


def _push(registry: Registry, reference: str) -> str:
    image = registry.images.get(reference)
    if image is None:
        raise ShimError(f"An image does not exist locally with the tag: {reference}")
    host, _, name = image.repository.partition("/")
    if host not in registry.logged_in:
        raise ShimError(f"{reference}: no basic auth credentials (docker login to {host} first)")
    with registry.push_lock:  # the tag check and PutImage are atomic in ECR, not in moto
        _push_locked(registry, image, name)
    registry.pushed[reference] = image.digest
    return f"{image.tag}: digest: {image.digest} size: {image.size}\n"


def _push_locked(registry: Registry, image: oci.BuiltImage, name: str) -> None:
    try:
        repository = registry.ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except Exception as exc:
        code, message = error_of(exc)
        raise ShimError(f"name unknown: {message} ({code})") from None
    existing = _ecr_digest(registry.ecr, name, image.tag)
    if existing == image.digest:
        registry.log(f"{image.tag}: digest {image.digest} already in {name}; nothing to push")
    else:
        if existing is not None and _tag_immutable(repository, image.tag):
            raise ShimError(
                f"ImageTagAlreadyExistsException: The image tag '{image.tag}' already exists in the '{name}' "
                f"repository and cannot be overwritten because the repository is immutable. It points at "
                f"{existing}, this build made {image.digest}: use a new IMAGE_TAG"
            )
        for digest in (*(layer.digest for layer in image.layers), image.config_digest, image.digest):
            oci.write_blob(registry.layout_dir, oci.read_blob(registry.staging, digest))
        try:
            registry.ecr.put_image(
                repositoryName=name,
                imageTag=image.tag,
                imageManifest=image.manifest_bytes.decode("utf-8"),
                imageManifestMediaType=oci.MEDIA_MANIFEST,
                imageDigest=image.digest,
            )
        except Exception as exc:
            code, message = error_of(exc)
            # a concurrent build pushed the same image under this tag first: the push is done
            if (
                code != "ImageAlreadyExistsException"
                or _ecr_digest(registry.ecr, name, image.tag) != image.digest
            ):
                raise ShimError(f"{code}: {message}") from None
    oci.init_layout(registry.layout_dir)
    oci.tag_image(  # the tag in the shared layout, as the registry now holds it
        registry.layout_dir,
        oci.Descriptor(oci.MEDIA_MANIFEST, image.digest, image.size),
        image.repository,
        image.tag,
    )


def _ecr_digest(ecr: Any, repository_name: str, tag: str) -> str | None:
    try:
        details = ecr.describe_images(repositoryName=repository_name, imageIds=[{"imageTag": tag}])
    except Exception as exc:
        if error_of(exc)[0] == "ImageNotFoundException":
            return None
        raise
    images = details.get("imageDetails") or []
    return str(images[0]["imageDigest"]) if images else None


def _repository(reference: str) -> str:
    name, colon, tag = reference.rpartition(":")
    return name if colon and "/" not in tag else reference


def _tag_immutable(repository: Mapping[str, Any], tag: str) -> bool:
    mutability = str(repository.get("imageTagMutability") or "MUTABLE")
    filters = [str(f.get("filter", "")) for f in repository.get("imageTagMutabilityExclusionFilters") or []]
    excluded = any(fnmatch.fnmatchcase(tag, f) for f in filters)
    if mutability == "IMMUTABLE":
        return True
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return not excluded
    if mutability == "MUTABLE_WITH_EXCLUSION":
        return excluded
    return False


def error_of(exc: Exception) -> tuple[str, str]:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return str(error.get("Code") or type(exc).__name__), str(error.get("Message") or exc)
    return type(exc).__name__, str(exc)
