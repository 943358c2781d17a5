"""The stand-in images, under the names the project's files use, cached by their inputs.

Each image carries the label `io.containers-test.inputs`: a hash of everything it is built
from (its Containerfile and files, its parent's hash, versions). An image whose label equals
the current hash is kept; otherwise it is rebuilt. No registry is reachable here, so the
chain starts from `debootstrap` (Debian's mirror) and `podman import`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from containers import engine
from containers.engine import log

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STANDINS = HERE / "standins"
WORK = ROOT / ".local" / "containers"
LABEL = "io.containers-test.inputs"

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The libraries CPython's extension modules link against, tini (the Runtime runs under it),
# and what the slim Python images carry (ca-certificates, netbase, tzdata).
DEBIAN_PACKAGES = (
    "ca-certificates",
    "netbase",
    "tzdata",
    "tini",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "libbz2-1.0",
    "liblzma5",
    "libreadline8",
    "zlib1g",
    "libncursesw6",
    "libuuid1",
    "libgdbm6",
    "libexpat1",
)
DEBIAN_IMAGE = "localhost/standin/debian:bookworm"
# The pip the official slim images ship today (they upgrade it at each rebuild); pip >= 24.2
# also reads the system's CA store, which the builds mount from the host.
PIP_VERSION = "25.2"
MLFLOW_PYTHON = "3.11"  # MLflow's docker/Dockerfile: FROM python:3.11-slim


def digest(*parts: str | bytes | Path) -> str:
    sha = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            sha.update(part.read_bytes())
        elif isinstance(part, str):
            sha.update(part.encode())
        else:
            sha.update(part)
        sha.update(b"\0")
    return sha.hexdigest()[:16]


@dataclass(frozen=True)
class Names:
    """The image names the project's files use."""

    runtime: str
    runtime_version: str
    airflow_version: str
    python_base: str
    python_version: str
    mlflow: str
    mlflow_version: str
    postgres: str
    runtime3: str  # Dockerfile.airflow3's base (a Runtime 3.x `-base` image)
    runtime3_version: str
    airflow3_version: str


def project_names() -> Names:
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = re.search(r"^FROM\s+(\S+)", dockerfile, re.M).group(1)
    runtime_version = runtime.rsplit(":", 1)[1]
    lock = (ROOT / "requirements.lock").read_text()
    airflow_version = re.search(r"^apache-airflow==(\S+)", lock, re.M).group(1)
    api = (ROOT / "Dockerfile.model-api").read_text()
    python_base = re.search(r"^FROM\s+(\S+)", api, re.M).group(1)
    python_version = re.match(r"(?:.*/)?python:(\d+\.\d+)", python_base).group(1)
    compose = (ROOT / "docker-compose.override.yml").read_text()
    mlflow = re.search(r"image:\s*(\S*mlflow\S*)", compose).group(1)
    mlflow_version = mlflow.rsplit(":", 1)[1].lstrip("v")
    from containers import compose as compose_mod

    cli = compose_mod.CLI_DEFAULTS
    postgres = f"{cli['PostgresRepository']}:{cli['PostgresTag']}"
    runtime3 = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile.airflow3").read_text(), re.M)
    runtime3 = runtime3.group(1)
    lock3 = (ROOT / "requirements-airflow3.lock").read_text()
    return Names(
        runtime,
        runtime_version,
        airflow_version,
        python_base,
        python_version,
        mlflow,
        mlflow_version,
        postgres,
        runtime3,
        runtime3.rsplit(":", 1)[1].removesuffix("-base"),
        re.search(r"^apache-airflow==(\S+)", lock3, re.M).group(1),
    )


def qualified(name: str) -> str:
    """`python:3.12-slim` -> `docker.io/library/python:3.12-slim`, as Docker resolves it."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    if first == "docker.io" and name.count("/") == 1:
        return "docker.io/library/" + name.split("/", 1)[1]
    return name


def _cached(tag: str, key: str) -> bool:
    return engine.image_label(tag, LABEL) == key


def debian_base() -> str:
    key = digest(DEBIAN_SUITE, DEBIAN_MIRROR, *DEBIAN_PACKAGES)
    if _cached(DEBIAN_IMAGE, key):
        return key
    rootfs = WORK / f"rootfs-{key}"
    if not (rootfs / "etc" / "debian_version").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        log(f"debootstrap --variant=minbase {DEBIAN_SUITE} (about 1-2 minutes)")
        started = time.monotonic()
        WORK.mkdir(parents=True, exist_ok=True)
        with (WORK / "debootstrap.log").open("wb") as handle:
            done = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=" + ",".join(DEBIAN_PACKAGES),
                    DEBIAN_SUITE,
                    str(rootfs),
                    DEBIAN_MIRROR,
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        if done.returncode != 0:
            raise engine.EngineError(f"debootstrap failed, see {WORK / 'debootstrap.log'}")
        log(f"debootstrap done in {time.monotonic() - started:.0f} s")
    for stale in WORK.glob("rootfs-*"):
        if stale != rootfs:
            shutil.rmtree(stale, ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    engine.podman(
        "import",
        "--change",
        f"LABEL {LABEL}={key}",
        "--change",
        'CMD ["bash"]',
        "-",
        DEBIAN_IMAGE,
        stdin=tar.stdout,
        quiet=True,
    )
    tar.wait()
    log(f"imported {DEBIAN_IMAGE}")
    return key


def _host_python(minor: str) -> Path:
    """This machine's CPython <minor> (pyenv's builds, or one on PATH): its prefix."""
    candidates = sorted(Path.home().glob(f".pyenv/versions/{minor}.*"), reverse=True)
    candidates = [c for c in candidates if re.fullmatch(rf"{re.escape(minor)}\.\d+", c.name)]
    for prefix in candidates:
        if (prefix / "bin" / f"python{minor}").exists():
            return prefix
    exe = shutil.which(f"python{minor}")
    if exe:
        prefix = Path(
            subprocess.check_output(
                [exe, "-c", "import sys; print(sys.base_prefix)"], text=True
            ).strip()
        )
        if prefix != Path("/usr"):
            return prefix
    raise engine.EngineError(
        f"no CPython {minor} build on this machine to put into the python:{minor}-slim stand-in "
        f"(looked in ~/.pyenv/versions/{minor}.* and PATH, outside /usr; no registry here "
        "to pull the real image from)"
    )


def preflight(names: Names) -> None:
    """What the stand-ins need from this machine, checked before anything is built."""
    for minor in dict.fromkeys((names.python_version, MLFLOW_PYTHON)):
        _host_python(minor)


def _stage_python(prefix: Path, minor: str, dest: Path) -> None:
    """Copy the interpreter, its shared library and standard library, leaving out the test
    suite, GUI modules, the static library and this machine's site-packages (except pip)."""
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "bin").mkdir(parents=True)
    for name in (f"python{minor}", "python3", "python"):
        src = prefix / "bin" / name
        if src.is_symlink():
            (dest / "bin" / name).symlink_to(src.readlink())
        elif src.exists():
            shutil.copy2(src, dest / "bin" / name)
    lib = dest / "lib"
    lib.mkdir()
    for so in prefix.glob("lib/libpython*.so*"):
        if so.is_symlink():
            (lib / so.name).symlink_to(so.readlink())
        else:
            shutil.copy2(so, lib / so.name)
    stdlib = prefix / "lib" / f"python{minor}"
    skip = {"test", "idlelib", "tkinter", "turtledemo", "__pycache__"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        dropped = {n for n in names if n in skip and here == stdlib}
        if here == stdlib / "site-packages":
            dropped |= {n for n in names if not n.startswith("pip")}
        if here.name.startswith("config-"):
            dropped |= {n for n in names if n.endswith(".a")}
        return dropped

    shutil.copytree(stdlib, lib / f"python{minor}", symlinks=True, ignore=ignore)
    include = prefix / "include"
    if include.exists():
        shutil.copytree(include, dest / "include", symlinks=True)


def python_base(minor: str, debian_key: str) -> tuple[str, str]:
    tag = qualified(f"python:{minor}-slim")
    prefix = _host_python(minor)
    containerfile = STANDINS / "python" / "Containerfile"
    key = digest(debian_key, str(prefix), containerfile, PIP_VERSION)
    if _cached(tag, key):
        return tag, key
    context = WORK / f"ctx-python-{minor}"
    _stage_python(prefix, minor, context / "python")
    log(f"building the {tag} stand-in from {prefix}")
    engine.build(
        context,
        tag,
        containerfile,
        labels={LABEL: key},
        build_args={
            "BASE": DEBIAN_IMAGE,
            "PYTHON_VERSION": prefix.name,
            "PIP_VERSION": PIP_VERSION,
        },
        log_file=WORK / "logs" / f"python-{minor}.log",
    )
    shutil.rmtree(context, ignore_errors=True)
    return tag, key


def _lock_subset(lock: Path, names: list[str]) -> str:
    """The lock's lines for these packages: what the Runtime stand-in took from it."""
    wanted = {n.lower().replace("_", "-").replace(".", "-") for n in names}
    keep = []
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==", line)
        if match and match.group(1).lower().replace("_", "-").replace(".", "-") in wanted:
            keep.append(line.strip())
    return "\n".join(sorted(keep))


def _build_standin(
    name: str,
    tag: str,
    parent: tuple[str, str],
    files: list[Path | tuple[Path, str]],
    args: dict[str, str],
    constraints: Path | None = None,
    containerfile: Path | None = None,
    background: bool = False,
) -> str:
    """Build unless the label matches. `files` go into the build context (a file, or a
    file and its name there); `constraints` (a lock) goes in as `constraints.txt`, and the
    cache key then covers only the lock lines of the packages the image holds (recorded
    after the first build in .local/containers/<name>.packages.json), so an unrelated change
    of the lock (a new dev tool) does not rebuild the stand-in."""
    containerfile = containerfile or STANDINS / name / "Containerfile"
    placed = [f if isinstance(f, tuple) else (f, f.name) for f in files]
    if constraints:
        placed.append((constraints, "constraints.txt"))
    base = [parent[1], containerfile, *(f for f, _ in placed if f != constraints)]
    base += [*sorted(f"{k}={v}" for k, v in args.items())]
    key = digest(*base, *([constraints] if constraints else []))
    if _cached(tag, key):
        log(f"{tag}: cached")
        return key
    record = WORK / f"{name}.packages.json"
    if constraints and record.exists() and engine.image_exists(tag):
        saved = json.loads(record.read_text())
        image_id = engine.output("image", "inspect", "--format", "{{.Id}}", tag)
        subset = digest(*base, _lock_subset(constraints, saved["packages"]))
        if saved.get("image") == image_id and saved.get("subset") == subset:
            log(f"{tag}: cached (the lock changed, not for its {len(saved['packages'])} packages)")
            return saved["label"]
    context = WORK / f"ctx-{name}"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for path, target in placed:
        shutil.copy2(path, context / target)
    log(f"building the {tag} stand-in")
    engine.build(
        context,
        tag,
        containerfile,
        labels={LABEL: key},
        build_args={"BASE": parent[0], **args},
        log_file=WORK / "logs" / f"{name}.log",
        background=background,
    )
    shutil.rmtree(context, ignore_errors=True)
    if constraints:
        listed = engine.output(
            "run", "--rm", "--entrypoint", "python", tag, "-m", "pip", "list", "--format", "json"
        )
        packages = [p["name"] for p in json.loads(listed)]
        record.write_text(
            json.dumps(
                {
                    "image": engine.output("image", "inspect", "--format", "{{.Id}}", tag),
                    "label": key,
                    "packages": packages,
                    "subset": digest(*base, _lock_subset(constraints, packages)),
                }
            )
        )
    return key


RUNTIME_DIR = STANDINS / "astro-runtime"


def _runtime_base(
    name: str,
    tag: str,
    python: tuple[str, str],
    requirements: str,
    lock: Path,
    runtime_version: str,
    airflow_version: str,
    background: bool = False,
) -> str:
    """The Runtime stand-in without ONBUILD steps (astro-runtime/Containerfile), its
    packages constrained by `lock`."""
    return _build_standin(
        name,
        tag,
        python,
        [(RUNTIME_DIR / requirements, "base-requirements.txt"), RUNTIME_DIR / "entrypoint"],
        {
            "RUNTIME_VERSION": runtime_version,
            "AIRFLOW_VERSION": airflow_version,
            "UV_VERSION": uv_version(),
        },
        constraints=lock,
        containerfile=RUNTIME_DIR / "Containerfile",
        background=background,
    )


def build_runtime3(names: Names, background: bool = False) -> str:
    """The stand-in for Dockerfile.airflow3's base (Runtime 3.x `-base`, no ONBUILD), on the
    same Python base (built by then); returns its name."""
    python = python_base(names.python_version, debian_base())
    tag = qualified(names.runtime3)
    _runtime_base(
        "astro-runtime3",
        tag,
        python,
        "base-requirements-airflow3.txt",
        ROOT / "requirements-airflow3.lock",
        names.runtime3_version,
        names.airflow3_version,
        background=background,
    )
    return tag


def uv_version() -> str:
    """The uv the Makefile uses (UV_VERSION), for the stand-ins' own installs."""
    return re.search(r"^UV_VERSION\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)


def build_standins(names: Names, after_runtime=None, after_python=None) -> None:
    """Debian and the model API's Python base first; then, side by side: the Runtime
    stand-in followed by `after_runtime` (the project image), `after_python` (the model API
    image, which needs only python:3.12-slim), and PostgreSQL followed by MLflow's Python
    base and MLflow (off the critical path, which runs through the project image)."""
    from concurrent.futures import ThreadPoolExecutor

    debian_key = debian_base()
    python = python_base(names.python_version, debian_key)
    uv = uv_version()

    def runtime() -> None:
        base_tag = f"localhost/standin/astro-runtime-base:{names.runtime_version}"
        base_key = _runtime_base(
            "astro-runtime-base",
            base_tag,
            python,
            "base-requirements.txt",
            ROOT / "requirements.lock",
            names.runtime_version,
            names.airflow_version,
        )
        _build_standin(
            "astro-runtime",
            qualified(names.runtime),
            (base_tag, base_key),
            [],
            {},
            containerfile=RUNTIME_DIR / "Containerfile.onbuild",
        )
        if after_runtime:
            after_runtime()

    def services() -> None:
        _build_standin(
            "postgres",
            qualified(names.postgres),
            (DEBIAN_IMAGE, debian_key),
            [STANDINS / "postgres" / "docker-entrypoint.sh"],
            {},
        )
        mlflow_python = (
            python_base(MLFLOW_PYTHON, debian_key)
            if names.python_version != MLFLOW_PYTHON
            else python
        )
        _build_standin(
            "mlflow",
            qualified(names.mlflow),
            mlflow_python,
            [],
            {"MLFLOW_VERSION": names.mlflow_version, "UV_VERSION": uv},
        )

    with ThreadPoolExecutor(3) as pool:
        jobs = [pool.submit(runtime), pool.submit(services)]
        if after_python:
            jobs.append(pool.submit(after_python))
        for future in jobs:
            future.result()
