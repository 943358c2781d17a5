"""Podman on this kind of machine: the packages, the one setting it needs, and a runner.

Debian's podman runs containers as root here with the `runc` runtime (crun refuses the
hybrid cgroups) once `/etc/containers/containers.conf` sets `default_ulimits = []` (the
sandbox refuses podman's default ulimits). Every call goes through `podman()`, which adds
`--runtime runc`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTAINERS_CONF = Path("/etc/containers/containers.conf")
PACKAGES = ("podman", "runc", "debootstrap")
# The host's CA bundle: the egress proxy of this machine terminates TLS with its own CA,
# so pip inside a build trusts PyPI only with this file mounted over the image's.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class EngineError(RuntimeError):
    pass


class EngineUnavailable(EngineError):
    """This machine cannot run containers at all, whatever is installed: not root (podman
    runs rootful here), or the sandbox refuses podman/runc (an unprivileged CI container).
    Not a fault of the Astro path: CI skips on it, saying why (CONTAINERS_SKIP_UNAVAILABLE=1).
    A missing package, a failed install or a missing CPython build is an `EngineError`:
    the run fails, in CI too."""


def log(message: str) -> None:
    print(f"[containers {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_engine() -> None:
    """Install podman, runc and debootstrap if missing, and set the one podman option."""
    if os.geteuid() != 0:
        raise EngineUnavailable(
            f"not root (uid {os.geteuid()}): podman runs rootful here, and installs packages"
        )
    missing = [name for name in PACKAGES if shutil.which(name) is None]
    if missing:
        if shutil.which("apt-get") is None:
            raise EngineError(f"{', '.join(missing)} missing and no apt-get to install them")
        log(f"apt-get install {' '.join(PACKAGES)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for attempt in (1, 2, 3):
            done = subprocess.run(
                "apt-get update -qq && apt-get install -y -qq " + " ".join(PACKAGES),
                shell=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            if done.returncode == 0:
                break
            if attempt == 3:
                raise EngineError(
                    f"apt-get install {' '.join(PACKAGES)} failed 3 times (no Debian mirror?)"
                )
            time.sleep(10)
    _configure_ulimits()
    done = subprocess.run(
        ["podman", "--runtime", "runc", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise EngineUnavailable(f"podman does not work on this machine: {done.stderr.strip()}")
    _probe_container()


def _probe_container() -> None:
    """Run one container, this machine's `true` with its libraries as the root filesystem
    (no image needed): where the sandbox forbids what runc needs (namespaces, mounts; e.g.
    an unprivileged CI container), podman cannot run containers here."""
    true = Path(shutil.which("true") or "/bin/true").resolve()
    ldd = subprocess.run(["ldd", str(true)], capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory(prefix="containers-probe-") as root:
        for path in [true, *map(Path, re.findall(r"(/\S+\.so[.\d]*)", ldd))]:
            dest = Path(root) / path.relative_to("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        run = ["podman", "--runtime", "runc", "run", "--rm", "--network", "none"]
        done = subprocess.run(
            [*run, "--rootfs", root, str(true)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    if done.returncode != 0:
        raise EngineUnavailable(
            f"podman cannot run a container here (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-1500:]}"
        )


def _configure_ulimits() -> None:
    text = CONTAINERS_CONF.read_text() if CONTAINERS_CONF.exists() else ""
    if "default_ulimits" in text:
        return
    CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
    if "[containers]" in text:
        text = text.replace("[containers]", "[containers]\ndefault_ulimits = []", 1)
    else:
        text = text + ("\n" if text and not text.endswith("\n") else "")
        text += "[containers]\ndefault_ulimits = []\n"
    CONTAINERS_CONF.write_text(text)
    log(f"{CONTAINERS_CONF}: default_ulimits = [] (the sandbox refuses podman's defaults)")


def podman(
    *args: str,
    check: bool = True,
    capture: bool = False,
    quiet: bool = False,
    input_bytes: bytes | None = None,
    timeout: float | None = None,
    stdin=None,
) -> subprocess.CompletedProcess:
    cmd = ["podman", "--runtime", "runc", *args]
    kwargs: dict = {"timeout": timeout}
    if capture:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elif quiet:
        kwargs.update(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if input_bytes is not None:
        kwargs["input"] = input_bytes
    elif stdin is not None:
        kwargs["stdin"] = stdin
    done = subprocess.run(cmd, **kwargs)
    if check and done.returncode != 0:
        detail = ""
        if capture:
            detail = (done.stderr or b"").decode(errors="replace")[-3000:]
        raise EngineError(f"podman {' '.join(args[:3])} ... exited {done.returncode}\n{detail}")
    return done


def output(*args: str, check: bool = True) -> str:
    return podman(*args, check=check, capture=True).stdout.decode().strip()


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False, quiet=True).returncode == 0


def image_label(name: str, label: str) -> str | None:
    if not image_exists(name):
        return None
    value = output("image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', name)
    return value if value and value != "<no value>" else None


def build(
    context: Path,
    tag: str,
    containerfile: Path,
    *,
    labels: dict[str, str] | None = None,
    build_args: dict[str, str] | None = None,
    log_file: Path,
    background: bool = False,
) -> None:
    """`podman build` with the host CA bundle mounted over the image's for RUN steps (pip
    reaches PyPI through this machine's TLS-terminating proxy); nothing of it stays in the
    image. `--format docker`, as the Astro CLI passes for podman (ONBUILD and HEALTHCHECK
    are Docker-format features). `background`: at the lowest CPU priority (nice 19, which
    its RUN steps inherit), so it takes only what the foreground leaves idle."""
    # --network host: the build's downloads take the host's network path (a private build
    # network adds NAT and DNS hops that made PyPI downloads flaky here).
    args = ["build", "--format", "docker", "--network", "host", "-t", tag, "-f", str(containerfile)]
    if HOST_CA_BUNDLE.is_file():
        args += ["-v", f"{HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro"]
    for key, value in (labels or {}).items():
        args += ["--label", f"{key}={value}"]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    args.append(str(context))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # Each line with the seconds since the build started: where a build spends its time.
    with log_file.open("wb") as handle:
        proc = subprocess.Popen(
            [*(["nice", "-n", "19"] if background else []), "podman", "--runtime", "runc", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for line in proc.stdout:
            handle.write(b"[%7.1f] " % (time.monotonic() - started) + line)
        returncode = proc.wait()
    if returncode != 0:
        tail = log_file.read_text(errors="replace")[-4000:]
        raise EngineError(f"build of {tag} failed (log: {log_file}):\n{tail}")
    log(f"built {tag} in {time.monotonic() - started:.0f} s (log: {log_file})")


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)
