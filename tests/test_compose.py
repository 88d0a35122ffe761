"""docker-compose.yml, docker/Dockerfile, .dockerignore and .env.example agree with each other and
with the project: the checks here catch what would otherwise break only when the stack starts
(a variable missing from .env, a connection nobody can set, a healthcheck a dependency waits for in
vain, a secret written into the compose file, an image built from something else than the lock).

Static: PyYAML only, no Docker. `docker compose config` runs too when the Docker CLI has the
compose plugin (it has not on the project's machines: that test is skipped there).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

PROJECT_DOCKERFILE = "docker/Dockerfile"
THIRD_PARTY_IMAGES = {"postgres"}  # services that run someone else's image, by image name
AIRFLOW_COMMANDS = ("api-server", "scheduler", "dag-processor", "triggerer")
TASK_SERVICE = "airflow-scheduler"  # LocalExecutor: tasks run in the scheduler's container
VAR_VOLUME = "yorisoi-var"

# ${NAME}, ${NAME:-default}, ${NAME:?message}, $NAME; `$$` is a literal dollar sign, not a variable
VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")
# one reference and nothing else, with no default value: ${NAME}, ${NAME:-}, ${NAME:?message}
BARE_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-|:?\?[^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|PRIVATE|_KEY$|^AIRFLOW_CONN_", re.IGNORECASE)
NOT_A_SECRET = re.compile(r"_(?:FILE|PATH)$", re.IGNORECASE)  # where a secret is kept, not the secret
URL_CREDENTIALS = re.compile(r"://[^/\s:@]*:([^@\s]+)@")
# connection ids written in the code: FOO_CONN_ID = "x", conn_id: str = "x", smtp_conn_id="x",
# os.environ.get("FOO_CONN_ID", "x")
CONN_ID_LITERAL = re.compile(
    r'(?:\b[A-Z_]*CONN_ID\s*=\s*|\b[a-z_]*conn_id(?:\s*:\s*str)?\s*=\s*|_CONN_ID",\s*)"([a-z][a-z0-9_]*)"'
)


# ---- reading the files ----------------------------------------------------------------------------


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text("utf-8"))


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose.get("services") or {}


def env_example(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """The assignments of .env.example (commented lines are examples, not settings)."""
    settings: dict[str, str] = {}
    for line in path.read_text("utf-8").splitlines():
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m:
            settings[m.group(1)] = m.group(2).strip()
    return settings


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose accepts a mapping or a list of K=V)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def strings(node: Any) -> Iterator[str]:
    """Every string in the parsed file, keys included (what compose interpolates; not comments)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def variables(compose: dict[str, Any]) -> set[str]:
    found = set()
    for text in strings(compose):
        for m in VARIABLE.finditer(text):
            found.add(m.group(1) or m.group(2))
    return found


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text("utf-8"))
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not NOT_A_SECRET.search(name)


def image_name(service: dict[str, Any]) -> str:
    """The image's repository without tag, e.g. postgres for postgres:16."""
    image = str(service.get("image", ""))
    return image.rsplit("/", 1)[-1].split(":", 1)[0] if image else ""


def connection_ids() -> dict[str, str]:
    """Every Airflow connection id the project uses, with where it is named: the sources' registry,
    the destinations, and connection-id literals in dags/ and plugins/."""
    found: dict[str, str] = {}
    registry = yaml.safe_load((ROOT / "include" / "sources" / "registry.yml").read_text("utf-8"))
    for name, source in (registry.get("sources") or {}).items():
        found.setdefault(source["conn_id"], f"include/sources/registry.yml ({name})")
    destinations = yaml.safe_load((ROOT / "include" / "destinations.yml").read_text("utf-8"))
    for destination in destinations.get("destinations") or []:
        if destination.get("conn_id"):
            found.setdefault(destination["conn_id"], f"include/destinations.yml ({destination['name']})")
    for folder in (ROOT / "dags", ROOT / "plugins", ROOT / "kit"):
        for path in sorted(folder.rglob("*.py")):
            for m in CONN_ID_LITERAL.finditer(path.read_text("utf-8")):
                found.setdefault(m.group(1), str(path.relative_to(ROOT)))
    return found


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` (relative, with /) out of the build context: the last
    matching pattern wins, `!` re-includes, a pattern matching a folder matches what is in it."""

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negated = raw.startswith("!")
        rx = regex(raw.lstrip("!").strip().strip("/"))
        if any(rx.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    lines = path.read_text("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


# ---- the image --------------------------------------------------------------------------------------


def test_every_service_on_the_project_image_builds_it_from_the_dockerfile() -> None:
    svcs = services(load_compose())
    ours = {name: s for name, s in svcs.items() if image_name(s) not in THIRD_PARTY_IMAGES}
    assert ours, "no service runs the project image"
    for name, service in ours.items():
        build = service.get("build")
        assert isinstance(build, dict), (
            f"{name}: runs {service.get('image')!r} without `build:`; build it from {PROJECT_DOCKERFILE} "
            f"(or, for someone else's image, add it to THIRD_PARTY_IMAGES)"
        )
        assert (COMPOSE_FILE.parent / build.get("context", ".")).resolve() == ROOT, f"{name}: build context"
        assert build.get("dockerfile") == PROJECT_DOCKERFILE, f"{name}: builds from {build.get('dockerfile')!r}"
    images = {str(s.get("image")) for s in ours.values()}
    assert len(images) == 1, f"the project image has several names: {sorted(images)}"
    commands = [s.get("command") for s in ours.values()]
    for component in AIRFLOW_COMMANDS:
        assert commands.count(component) == 1, f"`airflow {component}` should run in exactly one service"


def test_the_base_image_is_the_locked_airflow() -> None:
    pinned = re.search(r'"apache-airflow==([\d.]+)"', (ROOT / "pyproject.toml").read_text("utf-8"))
    locked = re.search(r"^apache-airflow==([\d.]+)$", (ROOT / "requirements.lock").read_text("utf-8"), re.M)
    assert pinned and locked and pinned.group(1) == locked.group(1)
    froms = [line for line in dockerfile_instructions() if line.upper().startswith("FROM ")]
    assert froms == [f"FROM apache/airflow:{locked.group(1)}-python3.11"], froms


def test_the_dockerfile_installs_the_lock_as_make_install_does() -> None:
    instructions = dockerfile_instructions()
    makefile = (ROOT / "Makefile").read_text("utf-8")
    uv = re.search(r'"uv==([\d.]+)"', makefile)
    assert uv, "the Makefile pins uv"
    copies = [i for i in instructions if i.startswith("COPY")]
    for lock in ("requirements.lock", "requirements-product.lock"):
        assert any(lock in i for i in copies), f"{lock} is not copied in"
        assert (ROOT / lock).is_file(), f"{lock} is missing: `make lock` writes it"
    default = re.search(r"^ARG YORISOI_LOCK=(\S+)$", "\n".join(instructions), re.M)
    assert default, "the image chooses its lock with ARG YORISOI_LOCK"
    assert default.group(1) == "requirements-product.lock", "the image installs the product's lock by default"
    runs = " ".join(i for i in instructions if i.startswith("RUN"))
    assert f'"uv=={uv.group(1)}"' in runs, f"install uv {uv.group(1)}, the Makefile's version"
    assert re.search(r"uv pip sync\b[^&;]*\$\{YORISOI_LOCK\}", runs), "install with `uv pip sync ... ${YORISOI_LOCK}`"
    assert re.search(r"uv pip install\b[^&;]*--no-deps\b[^&;]*-e\b", runs), "install the package with --no-deps -e"
    assert not re.search(r"(?:^|\s)(?:-r|--requirement)\s", runs), "every dependency comes from the lock"


def test_dockerignore_keeps_state_and_secrets_out_and_lets_the_project_in() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".venv/bin/python",
        "var/warehouse.duckdb",
        "var/keys/match_key",
        ".env",
        ".env.local",
        "plugins/yorisoi/__pycache__/paths.cpython-311.pyc",
        "dbt_project/target/manifest.json",
        "tests/test_compose.py",
        ".git/HEAD",
    ):
        assert dockerignore_excludes(path, patterns), f"{path} would be sent into the image"
    copied = []
    for instruction in dockerfile_instructions():
        if instruction.startswith("COPY") and "--from" not in instruction:
            copied += [arg for arg in instruction.split()[1:-1] if not arg.startswith("--")]
    assert copied, "the Dockerfile copies nothing from the context"
    for source in copied:
        probe = source.rstrip("/") + ("/x" if source.endswith("/") else "")
        assert not dockerignore_excludes(probe, patterns), f".dockerignore leaves out {source}, which the image copies"


# ---- variables, connections, secrets -------------------------------------------------------------------


def test_every_variable_the_compose_file_uses_is_in_env_example_and_back() -> None:
    used = variables(load_compose())
    documented = set(env_example())
    assert used <= documented, f"used by docker-compose.yml, missing from .env.example: {sorted(used - documented)}"
    assert documented <= used, f"in .env.example, used by nothing in docker-compose.yml: {sorted(documented - used)}"


def test_every_connection_id_has_an_env_line_that_reaches_the_tasks() -> None:
    ids = connection_ids()
    assert {"yorisoi_match_key", "smtp_default"} <= set(ids), sorted(ids)  # the scan still finds the code's ids
    example = env_example()
    task_env = environment(services(load_compose())[TASK_SERVICE])
    for conn_id, where in sorted(ids.items()):
        name = f"AIRFLOW_CONN_{conn_id.upper()}"
        assert name in example, f"{conn_id} (named in {where}): no {name}= line in .env.example"
        assert task_env.get(name) == f"${{{name}:-}}", (
            f"{conn_id} (named in {where}): {TASK_SERVICE} should get {name}: ${{{name}:-}} "
            f"(empty: the connection is looked up in the metadata database)"
        )


def test_no_secret_is_written_into_the_compose_file() -> None:
    compose = load_compose()
    for name, service in services(compose).items():
        for key, value in environment(service).items():
            if is_secret_name(key):
                assert BARE_REFERENCE.fullmatch(value), f"{name}: {key} must be a bare ${{VARIABLE}} from .env"
    for text in strings(compose):
        for m in URL_CREDENTIALS.finditer(text):
            assert BARE_REFERENCE.fullmatch(m.group(1)), f"a password written into a URL: {text!r}"

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if is_secret_name(str(key)) and isinstance(value, str | int):
                    assert BARE_REFERENCE.fullmatch(str(value)), f"{path}.{key} holds a literal secret"
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk(compose, "")


def test_env_example_holds_placeholders_only() -> None:
    for key, value in env_example().items():
        if is_secret_name(key):
            assert value == "", f".env.example sets {key}: secrets stay empty there (examples go in comments)"


# ---- health, restarts, order ---------------------------------------------------------------------------


def test_healthchecks_restarts_and_dependencies_fit_together() -> None:
    svcs = services(load_compose())
    for name in ("postgres", "airflow-api-server", TASK_SERVICE):
        test = (svcs[name].get("healthcheck") or {}).get("test")
        assert test and test != ["NONE"] and not svcs[name]["healthcheck"].get("disable"), f"{name}: no healthcheck"
    for name, service in svcs.items():
        restart = service.get("restart")
        assert restart in ("no", "always", "unless-stopped", "on-failure"), f"{name}: restart policy {restart!r}"
        if restart != "no":
            assert (service.get("healthcheck") or {}).get("test"), f"{name}: long-running without a healthcheck"
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, spec in depends.items():
            assert target in svcs, f"{name} depends on an unknown service {target}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert (svcs[target].get("healthcheck") or {}).get("test"), f"{name} waits for {target}'s health"
            elif condition == "service_completed_successfully":
                assert svcs[target].get("restart") == "no", f"{target} is one-shot: restart 'no'"
            if svcs[target].get("profiles"):
                assert set(service.get("profiles") or []) & set(svcs[target]["profiles"]), (
                    f"{name} runs without profile {svcs[target]['profiles']} but depends on {target}"
                )


def test_airflow_components_share_one_configuration() -> None:
    svcs = services(load_compose())
    airflow = {n: s for n, s in svcs.items() if s.get("command") in AIRFLOW_COMMANDS}
    envs = {n: environment(s) for n, s in airflow.items()}
    # what every component must agree on: the same database, keys and execution API
    for key in (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    ):
        values = {n: e.get(key) for n, e in envs.items()}
        assert None not in values.values() and len(set(values.values())) == 1, f"{key} differs: {values}"
    api = next(n for n, s in airflow.items() if s["command"] == "api-server")
    url = envs[api]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert re.fullmatch(rf"http://{re.escape(api)}:8080/execution/", url), f"tasks cannot reach the API server: {url}"
    assert envs[api]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_init_creates_the_pool_the_dags_queue_on() -> None:
    pool = re.search(
        r'^POOL = "(\w+)"',
        (ROOT / "plugins" / "yorisoi" / "orchestration" / "dag_defaults.py").read_text("utf-8"),
        re.M,
    )
    assert pool, "yorisoi.orchestration.dag_defaults.POOL"
    init = services(load_compose())["airflow-init"]
    script = " ".join(map(str, init.get("command") or []))
    assert "airflow db migrate" in script
    assert re.search(rf"airflow pools set {pool.group(1)} 1\b", script), (
        f"airflow-init must create pool {pool.group(1)}"
    )


# ---- state ---------------------------------------------------------------------------------------------


def test_var_volume_is_mounted_where_yorisoi_var_points() -> None:
    compose = load_compose()
    declared = set(compose.get("volumes") or {})
    var_paths = set()
    for name, service in services(compose).items():
        for volume in service.get("volumes") or []:
            source, target = str(volume).split(":")[:2]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: named volume {source} is not declared under volumes:"
            if source == VAR_VOLUME:
                assert environment(service).get("YORISOI_VAR") == target, f"{name}: {VAR_VOLUME} is not YORISOI_VAR"
                var_paths.add(target)
    task_mounts = [str(v).split(":")[0] for v in services(compose)[TASK_SERVICE].get("volumes") or []]
    assert VAR_VOLUME in task_mounts, f"{TASK_SERVICE} runs the tasks: it needs {VAR_VOLUME}"
    runs = " ".join(i for i in dockerfile_instructions() if i.startswith("RUN"))
    for target in var_paths:  # an empty named volume takes the ownership of the image's folder
        assert re.search(rf"mkdir -p [^&]*{re.escape(target)}\b", runs), f"the image should create {target}"


def test_every_yorisoi_setting_is_read_by_the_code() -> None:
    code = "".join(
        path.read_text("utf-8")
        for folder in ("plugins", "dbt_project", "docker")
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and path.suffix in (".py", ".sql", ".yml", ".sh")
    )
    unread = sorted(
        f"{name}: {key}"
        for name, service in services(load_compose()).items()
        for key in environment(service)
        if key.startswith("YORISOI_") and key not in code
    )
    assert not unread, f"set in docker-compose.yml, read by nothing: {unread}"


def test_demo_services_run_only_in_the_demo_profile() -> None:
    for name, service in services(load_compose()).items():
        assert (service.get("profiles") == ["demo"]) == name.startswith("demo-"), f"{name}: profiles"


@pytest.mark.skipif(
    not shutil.which("docker")
    or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0,
    reason="no Docker CLI with the compose plugin on this machine",
)
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    filled = tmp_path / "filled.env"
    filled.write_text(
        "\n".join(f"{k}={v or 'x' * 32}" for k, v in env_example().items() if not k.startswith("AIRFLOW_CONN_")),
        "utf-8",
    )
    for profile in ([], ["--profile", "demo"]):
        proc = subprocess.run(
            ["docker", "compose", "--env-file", str(filled), *profile, "config", "--quiet"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
