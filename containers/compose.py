"""`astro dev start`'s compose project, rendered and run as the Astro CLI does, on podman.

1. render(): the CLI's compose template for the image's Airflow major version
   (astronomer/astro-cli, airflow/include/airflow{2,3}/composeyml.go.tmpl, vendored in
   third_party/astro-cli/airflow{2,3}/; generateConfig picks it from the Runtime version
   label) filled with the values `generateConfig` passes (airflow/container.go), with a
   small renderer of the Go text/template subset the templates use ({{ .Field }}, if / if
   not / else / end, and the `-` whitespace trims).
2. load(): that file and docker-compose.override.yml merged as compose merges an override,
   interpolated as the CLI loads them: `${VAR}`, `${VAR:-default}`, `${VAR:?error}`, `$$`,
   looked up in the process environment only (the CLI passes os.LookupEnv; it does not read
   .env for interpolation, unlike `docker compose`); then compose-go's consistency rule: a
   service with neither an image nor a build (an override entry for a service the template
   does not have) is an error.
3. Project: up / down / exec / restart on podman: one network, named volumes, builds, the
   containers in depends_on order, health checks run by this driver (podman schedules them
   with systemd timers, which this machine lacks), ports, users, env files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from containers import engine
from containers.engine import EngineError, log

ASTRO_CLI_REPO = "astronomer/astro-cli"
VENDORED_DIR = Path(__file__).resolve().parent / "third_party" / "astro-cli"


@dataclass(frozen=True)
class Template:
    """The CLI's compose template for one Airflow major version: its path in
    astronomer/astro-cli, the copy in this repository (third_party/astro-cli/README.md:
    commit, refresh) and the variable that points the run at another copy."""

    airflow_major: int
    upstream_path: str
    vendored: Path
    env_var: str


TEMPLATES = {
    major: Template(
        major,
        f"airflow/include/airflow{major}/composeyml.go.tmpl",
        VENDORED_DIR / f"airflow{major}" / "composeyml.go.tmpl",
        "ASTRO_CLI_TEMPLATE" if major == 2 else f"ASTRO_CLI_TEMPLATE_AIRFLOW{major}",
    )
    for major in (2, 3)
}
DEFAULT_ASTRO_CLI_GIT_DIR = "/work/.mirror/astronomer+astro-cli/repo"

# The values generateConfig (airflow/container.go) passes, from config/config.go's defaults.
CLI_DEFAULTS = {
    "PostgresUser": "postgres",
    "PostgresPassword": "postgres",
    "PostgresHost": "postgres",
    "PostgresPort": "5432",
    "PostgresRepository": "docker.io/postgres",
    "PostgresTag": "12.6",
    "AirflowUser": "astro",
    "AirflowWebserverPort": "8080",
    "AirflowExposePort": False,
    "MountLabel": "z",
    "SettingsFile": "airflow_settings.yaml",
    "DuplicateImageVolumes": True,
}


# ---------------------------------------------------------------- the Go template subset

_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


def render_go_template(text: str, values: dict) -> str:
    """Render the subset of Go's text/template the CLI's compose template uses."""
    # Tokenise, applying the trim markers: `{{-` eats whitespace before, `-}}` after.
    tokens: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(text):
        literal = text[pos : match.start()]
        if match.group(1):
            literal = literal.rstrip()
        tokens.append(("text", literal))
        tokens.append(("action", match.group(2)))
        pos = match.end()
        if match.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip())
    tokens.append(("text", text[pos:]))

    def value(expr: str):
        expr = expr.strip()
        negate = expr.startswith("not ")
        if negate:
            expr = expr[4:].strip()
        if not expr.startswith("."):
            raise ValueError(f"unsupported template expression {expr!r}")
        name = expr[1:]
        if name not in values:
            raise KeyError(f"the compose template uses .{name}, which the renderer does not know")
        result = values[name]
        return (not result) if negate else result

    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (parent active, this branch active)
    active = True
    for kind, body in tokens:
        if kind == "text":
            if active:
                out.append(body)
            continue
        if body.startswith("if "):
            stack.append((active, bool(value(body[3:]))))
            active = active and stack[-1][1]
        elif body == "else":
            parent, taken = stack[-1]
            active = parent and not taken
        elif body == "end":
            parent, _ = stack.pop()
            active = parent
        else:
            if active:
                result = value(body)
                out.append("" if result is None else str(result))
    if stack:
        raise ValueError("unclosed {{if}} in the compose template")
    return "".join(out)


def fetch_template(cli_git_dir: Path, template: Template, rev: str = "HEAD") -> str:
    """The template at `rev` of a snapshot of astronomer/astro-cli (a bare git directory or
    a clone): how the vendored copy is refreshed and checked."""
    path = template.upstream_path
    done = subprocess.run(
        ["git", "-C", str(cli_git_dir), "show", f"{rev}:{path}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise EngineError(f"{path} at {rev} not in {cli_git_dir}: {done.stderr.strip()}")
    return done.stdout


def template_text(template: Template) -> str:
    """The template a run renders: the file its variable names if set, else the vendored
    copy."""
    given = os.environ.get(template.env_var)
    path = Path(given) if given else template.vendored
    if not path.is_file():
        where = template.env_var if given else "the vendored copy"
        raise EngineError(
            f"the Astro CLI's Airflow {template.airflow_major} compose template is missing: "
            f"{path} ({where}); it is {template.upstream_path} of {ASTRO_CLI_REPO}, see "
            f"{VENDORED_DIR / 'README.md'}"
        )
    return path.read_text()


def project_name_unique(project_dir: Path) -> str:
    """ProjectNameUnique (airflow/container.go): project.name + '_' + md5(path)[:6]."""
    config = yaml.safe_load((project_dir / ".astro" / "config.yaml").read_text()) or {}
    name = (config.get("project") or {}).get("name", "")
    return f"{name}_{hashlib.md5(str(project_dir).encode()).hexdigest()[:6]}"


def normalize_name(name: str) -> str:
    """normalizeName (airflow/container.go): the compose project name."""
    return "".join(re.findall(r"[a-z0-9_-]", name.lower())).lstrip("_-")


def render(
    template: str,
    project_dir: Path,
    *,
    webserver_port: str,
    postgres_port: str,
    env_file: str = ".env",
    image: str | None = None,
) -> tuple[str, str, str]:
    """The compose file `astro dev start` generates; returns (yaml, image, project name).
    `image`: generateConfig's buildImage (the CLI's `--image-name`), else
    <project>/airflow:latest. The webserver port is also the API server's (Airflow 3):
    the CLI's proxy mode gives both the same free port."""
    unique = project_name_unique(project_dir)
    image = image or f"{unique}/airflow:latest"
    values = dict(CLI_DEFAULTS)
    values.update(
        AirflowImage=image,
        AirflowHome=str(project_dir),
        AirflowEnvFile=f"env_file: {env_file}" if (project_dir / env_file).exists() else "",
        AirflowWebserverPort=webserver_port,
        PostgresPort=postgres_port,
        AirflowAPIServerPort=webserver_port,
        SettingsFileExist=(project_dir / CLI_DEFAULTS["SettingsFile"]).exists(),
        TriggererEnabled=True,  # image label airflow.version 2.11.0 >= 2.2.0
        ProjectName=unique,
    )
    return render_go_template(template, values), image, normalize_name(unique)


# ---------------------------------------------------------------- merge and interpolation

_VAR = re.compile(
    r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}"
    r"|([A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value, env: dict[str, str], where: str = ""):
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, where) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(5)
        op, arg = match.group(3), match.group(4) or ""
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-"):
            return interpolate(arg, env, where) if missing else current
        if op in (":?", "?"):
            if missing:
                raise EngineError(f"required variable {name} is missing a value: {arg} ({where})")
            return current
        return current or ""

    return _VAR.sub(substitute, value)


def _as_env_dict(environment) -> dict[str, str]:
    if isinstance(environment, list):
        pairs = {}
        for item in environment:
            key, sep, val = str(item).partition("=")
            pairs[key] = val if sep else None
        return pairs
    return {k: ("" if v is None else str(v)) for k, v in (environment or {}).items()}


def _volume_target(spec) -> str:
    if isinstance(spec, dict):
        return spec.get("target", "")
    parts = str(spec).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _merge_service(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        if key == "environment":
            env = _as_env_dict(base.get("environment"))
            env.update(_as_env_dict(value))
            merged[key] = env
        elif key == "volumes":
            existing = [v for v in (base.get("volumes") or []) if isinstance(v, (str, dict))]
            targets = {_volume_target(v) for v in value}
            merged[key] = [v for v in existing if _volume_target(v) not in targets] + list(value)
        elif key == "ports":
            merged[key] = list(dict.fromkeys([*(base.get("ports") or []), *value]))
        elif (
            key in ("labels", "depends_on")
            and isinstance(value, dict)
            and isinstance(base.get(key), dict)
        ):
            merged[key] = {**base[key], **value}
        elif key == "depends_on" and isinstance(base.get(key), list) and isinstance(value, dict):
            merged[key] = {**{n: {"condition": "service_started"} for n in base[key]}, **value}
        elif key == "networks" and isinstance(value, list) and isinstance(base.get(key), list):
            merged[key] = list(dict.fromkeys([*base[key], *value]))
        else:
            merged[key] = value
    return merged


def load(rendered: str, override_path: Path, env: dict[str, str]) -> dict:
    base = yaml.safe_load(rendered)
    over = yaml.safe_load(override_path.read_text()) if override_path.exists() else {}
    base = interpolate(base, env, "compose.yaml")
    over = interpolate(over or {}, env, override_path.name)
    project = {k: v for k, v in base.items() if not k.startswith("x-")}
    for section in ("networks", "volumes"):
        project[section] = {**(base.get(section) or {}), **(over.get(section) or {})}
    services = dict(base.get("services") or {})
    for name, service in (over.get("services") or {}).items():
        services[name] = _merge_service(services.get(name, {}), service or {})
    project["services"] = services
    for name, service in services.items():
        # compose-go's checkConsistency, which `astro dev start` runs on the merged files.
        if not service.get("image") and not service.get("build"):
            raise EngineError(
                f'{override_path.name}: service "{name}" has neither an image nor a build '
                "context specified (compose-go refuses the project): the compose file "
                "`astro dev start` generates for this Runtime has no such service, so the "
                "override may only add settings to the services both templates have "
                f"(here: {', '.join(sorted(n for n in base.get('services') or {}))})"
            )
    return project


def read_env_file(path: Path) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:]
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs[key.strip()] = value
    return pairs


def _duration(value, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|s|m|h)", str(value)):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total or default


# ---------------------------------------------------------------- running it on podman


@dataclass
class Project:
    name: str
    config: dict
    workdir: Path
    log_dir: Path
    started: list[str] = field(default_factory=list)

    def container(self, service: str) -> str:
        return f"{self.name}-{service}-1"

    def network(self, name: str) -> str:
        return f"{self.name}_{name}"

    def volume(self, name: str) -> str:
        return f"{self.name}_{name}"

    def image_of(self, service: str) -> str:
        spec = self.config["services"][service]
        return spec.get("image") or f"localhost/{self.name}-{service}:latest"

    # -- build
    def build(self, service: str) -> None:
        spec = self.config["services"][service]["build"]
        context = (
            self.workdir / (spec if isinstance(spec, str) else spec.get("context", "."))
        ).resolve()
        dockerfile = context / (
            (spec.get("dockerfile") if isinstance(spec, dict) else None) or "Dockerfile"
        )
        engine.build(
            context,
            self.image_of(service),
            dockerfile,
            log_file=self.log_dir / f"build-{service}.log",
        )

    # -- up
    def order(self) -> list[str]:
        services = self.config["services"]
        done: list[str] = []

        def visit(name: str, trail: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in trail:
                raise EngineError(f"depends_on cycle: {' -> '.join((*trail, name))}")
            for dep in self.depends_on(name):
                visit(dep, (*trail, name))
            done.append(name)

        for name in services:
            visit(name, ())
        return done

    def depends_on(self, service: str) -> dict[str, str]:
        deps = self.config["services"][service].get("depends_on") or {}
        if isinstance(deps, list):
            return {d: "service_started" for d in deps}
        return {d: (c or {}).get("condition", "service_started") for d, c in deps.items()}

    def up(self) -> None:
        for net in self.config.get("networks") or {"default": {}}:
            if engine.podman(
                "network", "exists", self.network(net), check=False, quiet=True
            ).returncode:
                engine.podman("network", "create", self.network(net), quiet=True)
        for vol in self.config.get("volumes") or {}:
            if engine.podman(
                "volume", "exists", self.volume(vol), check=False, quiet=True
            ).returncode:
                engine.podman("volume", "create", self.volume(vol), quiet=True)
        for service in self.order():
            for dep, condition in self.depends_on(service).items():
                if condition == "service_healthy":
                    self.wait_healthy(dep)
            self.run(service)

    def _run_args(self, service: str) -> list[str]:
        spec = self.config["services"][service]
        args = ["run", "-d", "--name", self.container(service)]
        networks = spec.get("networks") or ["default"]
        if isinstance(networks, dict):
            networks = list(networks)
        args += [
            "--network",
            ",".join(self.network(n) for n in networks),
            "--network-alias",
            service,
            "--hostname",
            service,
        ]
        if spec.get("restart"):
            args += ["--restart", spec["restart"]]
        if spec.get("user"):
            args += ["--user", str(spec["user"])]
        env: dict[str, str] = {}
        env_files = spec.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            env.update(read_env_file((self.workdir / env_file).resolve()))
        env.update(
            {k: v for k, v in _as_env_dict(spec.get("environment")).items() if v is not None}
        )
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        for port in spec.get("ports") or []:
            args += ["-p", str(port)]
        for vol in spec.get("volumes") or []:
            if not isinstance(vol, str):
                continue
            source, _, rest = vol.partition(":")
            if source.startswith((".", "/")):
                source = str((self.workdir / source).resolve())
            else:
                source = self.volume(source)
            args += ["-v", f"{source}:{rest}"]
        for key, value in (spec.get("labels") or {}).items():
            args += ["--label", f"{key}={value}"]
        args += [
            "--label",
            f"com.docker.compose.project={self.name}",
            "--label",
            f"com.docker.compose.service={service}",
        ]
        health = spec.get("healthcheck")
        if health and not health.get("disable"):
            test = health["test"]
            if isinstance(test, list):
                test = json.dumps(test[1:]) if test[0] == "CMD" else shlex.join(test[1:])
            args += [
                "--health-cmd",
                test,
                "--health-interval",
                str(health.get("interval", "30s")),
                "--health-retries",
                str(health.get("retries", 3)),
                "--health-timeout",
                str(health.get("timeout", "30s")),
                "--health-start-period",
                str(health.get("start_period", "0s")),
            ]
        args.append(self.image_of(service))
        command = spec.get("command")
        if isinstance(command, str):
            args += shlex.split(command)
        elif command:
            args += [str(c) for c in command]
        return args

    def run(self, service: str) -> None:
        engine.podman("rm", "-f", self.container(service), check=False, quiet=True)
        engine.podman(*self._run_args(service), capture=True)
        self.started.append(service)
        log(f"started {self.container(service)}")

    def has_healthcheck(self, service: str) -> bool:
        fmt = "{{if .Config.Healthcheck}}{{.Config.Healthcheck.Test}}{{end}}"
        return bool(engine.output("inspect", "--format", fmt, self.container(service), check=False))

    def wait_healthy(self, service: str, timeout: float = 600) -> float:
        """Run the service's health check as the engine's scheduler would (start period,
        interval, retries) until it passes; fail when the container exits or gives up."""
        spec = self.config["services"][service].get("healthcheck") or {}
        interval = min(_duration(spec.get("interval"), 10), 2)  # a check at most every 2 s
        started = time.monotonic()
        while True:
            state = engine.output(
                "inspect", "--format", "{{.State.Status}}", self.container(service), check=False
            )
            if state in ("exited", "dead", "stopped"):
                raise EngineError(
                    f"{service} exited before it was healthy:\n{self.logs(service, 40)}"
                )
            done = engine.podman(
                "healthcheck", "run", self.container(service), check=False, capture=True
            )
            ok = done.returncode == 0
            if not ok and b"exceeded timeout" in done.stderr:
                ok = self._slow_check(service)
            if ok:
                elapsed = time.monotonic() - started
                log(f"{service}: healthy after {elapsed:.0f} s")
                return elapsed
            if time.monotonic() - started > timeout:
                raise EngineError(
                    f"{service} not healthy in {timeout:.0f} s:\n{self.logs(service, 40)}"
                )
            time.sleep(interval)

    def _slow_check(self, service: str) -> bool:
        """The same health test when it passes only beyond its own timeout (a busy host:
        a Python start alone can take seconds here): passed, with the time it took said."""
        test = json.loads(
            engine.output(
                "inspect", "--format", "{{json .Config.Healthcheck.Test}}", self.container(service)
            )
        )
        cmd = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        started = time.monotonic()
        try:
            done = self.exec(service, *cmd, check=False, timeout=60)
        except subprocess.TimeoutExpired:
            return False
        if done.returncode == 0:
            log(
                f"{service}: podman's run of its health check exceeded the check's timeout; "
                f"run again it passed in {time.monotonic() - started:.1f} s (a busy host)"
            )
        return done.returncode == 0

    def logs(self, service: str, tail: int = 200) -> str:
        done = engine.podman(
            "logs", "--tail", str(tail), self.container(service), check=False, capture=True
        )
        return (done.stdout + done.stderr).decode(errors="replace")

    def exec(
        self,
        service: str,
        *cmd: str,
        user: str | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess:
        args = ["exec"] + (["--user", user] if user else []) + [self.container(service), *cmd]
        return engine.podman(*args, check=check, capture=True, timeout=timeout)

    def save_logs(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in self.config["services"]:
            (self.log_dir / f"{service}.log").write_text(self.logs(service, 2000))

    def down(self) -> None:
        """`astro dev kill`: containers, volumes and the network go."""
        for service in reversed(self.order()):
            engine.podman("rm", "-f", "-t", "5", self.container(service), check=False, quiet=True)
        for vol in self.config.get("volumes") or {}:
            engine.podman("volume", "rm", "-f", self.volume(vol), check=False, quiet=True)
        for net in self.config.get("networks") or {"default": {}}:
            engine.podman("network", "rm", "-f", self.network(net), check=False, quiet=True)


def environment_for_interpolation() -> dict[str, str]:
    return dict(os.environ)
