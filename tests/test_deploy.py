"""deploy/ stays true: the compose file, the systemd unit, haproxy.cfg and the README's commands
agree with one another and with the CLI (every command and flag they name is one `gsomia` has)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from gsomia.cli import app

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROCESSES = ("process-1", "process-2")


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _services() -> dict[str, Any]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _check_command(args: list[str]) -> None:
    """``gsomia ARGS`` names a real command, with only its options, its required ones given."""
    command: Any = typer.main.get_command(app)  # typer's own click: a group has ``commands``
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "commands"):
        assert rest, f"gsomia {' '.join(args)}: names a group, not a command"
        name = rest.pop(0)
        assert name in command.commands, f"gsomia {' '.join(path)}: has no command {name!r}"
        command, path = command.commands[name], [*path, name]
    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    given = set()
    for word in rest:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            assert flag in options, f"gsomia {' '.join(path)}: has no option {flag}"
            given.add(options[flag].name)
    for param in command.params:
        if param.required:
            assert param.name in given, f"gsomia {' '.join(path)}: {param.opts[0]} is required"
    helped = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert helped.exit_code == 0, helped.output
    for flag in {w.split("=", 1)[0] for w in rest if w.startswith("--")}:
        assert flag in helped.output, f"gsomia {' '.join(path)} --help does not show {flag}"


def _flags(args: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs of a command line (a flag followed by another flag: ``None``)."""
    found: dict[str, str | None] = {}
    for n, word in enumerate(args):
        if word.startswith("--"):
            after = args[n + 1] if n + 1 < len(args) else None
            found[word] = None if after is None or after.startswith("--") else after
    return found


def _unit_command() -> list[str]:
    unit = (DEPLOY / "gsomia-node@.service").read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    words = shlex.split(line.removeprefix("ExecStart="))
    assert Path(words[0]).name == "gsomia"
    return words[1:]


def _haproxy() -> tuple[list[int], list[tuple[str, int]]]:
    """haproxy.cfg's bound ports and its servers (host, port)."""
    text = (DEPLOY / "haproxy.cfg").read_text(encoding="utf-8")
    binds = [int(m) for m in re.findall(r"^\s*bind\s+\S*:(\d+)", text, re.MULTILINE)]
    servers = [(h, int(p)) for h, p in re.findall(r"^\s*server\s+\S+\s+([\d.]+):(\d+)", text, re.MULTILINE)]
    return binds, servers


def _readme_runs() -> list[list[str]]:
    """The gsomia commands deploy/README.md runs with ``docker compose run ... SERVICE``."""
    text = (DEPLOY / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    runs = []
    for line in text.splitlines():
        words = shlex.split(line.split(">", 1)[0]) if line.startswith("docker compose run") else []
        if words:
            at = next(n for n, w in enumerate(words) if w in _services())
            runs.append(words[at + 1 :])
    return runs


def test_the_image_runs_gsomia() -> None:
    build = _services()["process-1"]["build"]
    dockerfile = (DEPLOY / build["context"] / build["dockerfile"]).resolve()
    assert dockerfile == DEPLOY / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["gsomia"]' in text
    assert "[postgresql" in text  # the driver the processes' database URL names
    assert (dockerfile.parent / "Dockerfile.dockerignore").is_file()


def test_every_process_command_is_a_real_command_with_real_flags() -> None:
    commands = [_services()[name]["command"] for name in PROCESSES]
    commands += [_unit_command(), *_readme_runs()]
    assert len(_readme_runs()) >= 3  # node init, node tls, node identity
    for command in commands:
        _check_command(command)


def test_the_processes_are_started_as_the_unit_starts_them() -> None:
    """Same command, same flags; only the NATS host differs (a service name here)."""
    unit = _unit_command()
    for name in PROCESSES:
        command = _services()[name]["command"]
        assert command[:2] == unit[:2] == ["node", "serve"]
        assert _flags(command).keys() == _flags(unit).keys()
        assert _flags(command)["--dir"] == _flags(unit)["--dir"]
        assert _flags(command)["--host"] == _flags(unit)["--host"] == "127.0.0.1"
        nats = _flags(command)["--stream-nats"]
        assert nats is not None
        assert nats.removeprefix("nats://").split(":")[0] in _services()


def test_the_balancer_reaches_each_process_where_it_listens() -> None:
    binds, servers = _haproxy()
    services = _services()
    listening = sorted(("127.0.0.1", int(str(_flags(services[n]["command"])["--port"]))) for n in PROCESSES)
    assert sorted(servers) == listening  # two processes, each a server of the balancer
    for name in PROCESSES:  # 127.0.0.1 is the balancer's: the processes share its network namespace
        assert services[name]["network_mode"] == "service:balancer"
    published = [int(str(p).split(":")[-1]) for p in services["balancer"]["ports"]]
    assert published == binds
    mounted = [v.split(":")[:2] for v in services["balancer"]["volumes"]]
    assert ["./haproxy.cfg", "/usr/local/etc/haproxy/haproxy.cfg"] in mounted


def test_what_the_compose_file_names_exists_or_the_readme_makes_it() -> None:
    compose = _compose()
    services = compose["services"]
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    sources = [v.split(":")[0] for s in services.values() for v in s.get("volumes", [])]
    sources += [s["file"] for s in compose.get("secrets", {}).values()]
    for source in sources:
        if not source.startswith("."):
            assert source in compose["volumes"], f"{source}: neither a file here nor a named volume"
        elif source.startswith("./node"):  # the node directory: made once, as the README says
            assert "mkdir -m 0700 node" in readme
        else:
            assert (DEPLOY / source).exists(), source
    for service in services.values():
        for needed in service.get("depends_on", {}):
            assert needed in services
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"]
    node_dir = _flags(services["process-1"]["command"])["--dir"]
    assert f"./node:{node_dir}" in services["process-1"]["volumes"]
    # the database the README's node init names is the compose file's
    init = next(r for r in _readme_runs() if r[:2] == ["node", "init"])
    database = _flags(init)["--database-url"]
    assert database is not None
    assert "@postgres:5432/" + services["postgres"]["environment"]["POSTGRES_DB"] in database


def test_the_main_readme_points_at_the_compose_file() -> None:
    assert "compose.yaml" in (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "deploy/" in (ROOT / "README.md").read_text(encoding="utf-8")


def _compose_tool() -> list[str] | None:
    """``docker compose`` (v2, docker's plugin) where docker has it, else ``docker-compose`` (v1,
    Debian's package, which .ci/run installs), else None."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)  # noqa: S603
        if probe.returncode == 0:
            return [docker, "compose"]
    v1 = shutil.which("docker-compose")
    return [v1] if v1 is not None else None


def test_docker_compose_accepts_the_file() -> None:
    """``config`` parses and checks the whole file (the anchors merged, each service's keys, the
    depends_on conditions, network_mode, secrets) without a Docker daemon; it names the service and
    the key it refuses. Then its view of the file is the one the tests above read with PyYAML."""
    tool = _compose_tool()
    if tool is None:
        pytest.skip("neither docker compose nor docker-compose is installed")

    def config(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - a fixed command over our own file
            [*tool, "--file", str(DEPLOY / "compose.yaml"), "config", *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=DEPLOY,
        )

    done = config("--quiet")
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(config().stdout)
    assert sorted(resolved["services"]) == sorted(_services())
    for name in PROCESSES:  # the x-process anchor merged into each process as written
        service = resolved["services"][name]
        assert service["command"] == _services()[name]["command"]
        assert service["network_mode"] == "service:balancer"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["image"] == "gsomia-node:local"


def test_a_compose_file_with_a_mistake_is_refused(tmp_path: Path) -> None:
    """The check above can fail: the same tool refuses the file with a key compose does not know."""
    tool = _compose_tool()
    if tool is None:
        pytest.skip("neither docker compose nor docker-compose is installed")
    broken = _compose()
    broken["services"]["process-1"]["comand"] = broken["services"]["process-1"].pop("command")
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    done = subprocess.run(  # noqa: S603 - a fixed command over a file written here
        [*tool, "--file", str(tmp_path / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "comand" in done.stderr


def test_haproxy_accepts_its_configuration() -> None:
    """Where HAProxy is installed (``net up --replicas`` needs it): the file as the container mounts it."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed")
    done = subprocess.run(  # noqa: S603 - the distribution's haproxy checking our file
        [haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
