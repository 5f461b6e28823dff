"""Every shell command of the README runs as written, in the README's order, in an empty directory.

The README's ``sh`` blocks are extracted and run by one ``bash`` in a temporary directory with this
environment's ``gsomia`` first on the PATH (the two set-up blocks, which make that environment, are
CI's own first step: ``tests/test_readme.py``). A failure names the README line and the command.
Long-running commands are handled deliberately: ``gsomia node serve`` is started in the background,
must say where it listens, and is stopped (SIGTERM, which it takes as it takes Ctrl-C: a script's
background jobs ignore SIGINT); a command the README itself sends to
the background (``&``) is stopped by the README (``kill %1``). The one liberty taken: ``--port
8443`` becomes a free port (held by this process until the test ends, ``network.free_port``), so
that the test never collides with another server on the machine.

The default suite runs the first block (the examples, without the demo); ``-m slow`` runs them all.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gsomia.demo import network

ROOT = Path(__file__).resolve().parent.parent
SETUP_BLOCKS = 2  # the venv + pip install commands: CI runs them (tests/test_readme.py)
SERVE = re.compile(r"^gsomia node serve\b")


@dataclass(frozen=True)
class Command:
    line: int  # where it starts in README.md
    text: str  # continuation lines joined


def readme_commands() -> list[list[Command]]:
    """The commands of each ``sh`` block after the set-up ones, in order."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    blocks: list[list[Command]] = []
    current: list[Command] | None = None
    pending = ""
    start = 0
    for number, line in enumerate(lines, start=1):
        if current is None:
            if line.strip() == "```sh":
                current = []
            continue
        if line.strip() == "```":
            blocks.append(current)
            current = None
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text and not text.startswith("#"):
            current.append(Command(start, text))
    return blocks[SETUP_BLOCKS:]


def _script(blocks: list[list[Command]]) -> str:
    """One bash script: each command announced, run, and on failure named with its README line."""
    out = [
        "set -u",
        "set -o pipefail",
        'fail() { echo "README.md line $1 failed (exit $2): $3" >&2; exit 1; }',
    ]
    for block in blocks:
        for command in block:
            text = command.text.replace("--port 8443", f"--port {network.free_port()}")
            quoted = shlex.quote(command.text)
            out.append(f"echo {shlex.quote(f'$ {command.text}')}")
            if SERVE.match(text):
                # started aside, must say where it listens, then stopped (as Ctrl-C would)
                out.append(
                    f"{text.split('#')[0]} > serve.out 2>&1 & SERVE=$!; for _ in $(seq 3000); do "
                    "grep -q 'serving on' serve.out && break; sleep 0.1; done; "
                    "grep -q 'serving on' serve.out || "
                    f"{{ cat serve.out >&2; fail {command.line} 1 {quoted}; }}; "
                    "cat serve.out; kill -TERM $SERVE; wait $SERVE || true"
                )
            elif text.endswith("&") or " & " in text.split("#")[0]:
                out.append(text)  # the README sends it to the background and stops it itself
            else:
                out.append(f"{text} || fail {command.line} $? {quoted}")
    return "\n".join(out) + "\n"


def _run(blocks: list[list[Command]], directory: Path, timeout: float) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GSOMIA_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    script = directory / "readme.sh"
    script.write_text(_script(blocks), encoding="utf-8")
    try:
        done = subprocess.run(  # noqa: S603 - bash running the README's own commands
            ["/bin/bash", str(script)],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        if (directory / "net" / "net.json").exists():  # never leave a network running
            subprocess.run(  # noqa: S603
                [str(Path(sys.executable).parent / "gsomia"), "net", "down", "--dir", "net"],
                cwd=directory, env=env, capture_output=True, check=False, timeout=600,
            )  # fmt: skip
    if done.returncode != 0:
        failed = [line for line in done.stderr.splitlines() if line.startswith("README.md line")]
        pytest.fail(
            (failed[-1] if failed else f"the README's commands stopped (exit {done.returncode})")
            + f"\n--- its output (last 40 lines) ---\n{chr(10).join(done.stdout.splitlines()[-40:])}"
            + f"\n--- stderr ---\n{done.stderr[-3000:]}"
        )


def test_the_readme_is_read_as_a_new_user_would() -> None:
    """The extraction sees the README's commands: the examples, the node, the network, the duties."""
    commands = [c.text.split(" #")[0].strip() for block in readme_commands() for c in block]
    assert commands[0] == "gsomia samples"
    assert any(SERVE.match(c) for c in commands)
    assert "gsomia net down --dir ./net" in commands  # the README stops the network it started
    placeholders = re.compile(r"\[--|PORT|TOKEN|ENTRY_ID|MSG_ID|--kid KID|\.\.\.")
    assert not [c for c in commands if placeholders.search(c)]  # every command runs as written


def test_the_first_examples_run_as_written(tmp_path: Path) -> None:
    """The default suite's share: the first block (samples, agreements, decisions), without the demo."""
    first = [c for c in readme_commands()[0] if not c.text.startswith("gsomia demo")]
    _run([first], tmp_path, timeout=1800)


@pytest.mark.slow
def test_the_whole_readme_runs_as_written_in_order(tmp_path: Path) -> None:
    _run(readme_commands(), tmp_path, timeout=3600)


def test_the_spif_examples_run_after_the_samples(tmp_path: Path) -> None:
    """``gsomia spif`` needs no node: after ``gsomia samples`` (which writes the partner's own policy
    file, gbr-policy.xml), the README's spif commands run as written."""
    commands = [c for block in readme_commands() for c in block]
    first = next(n for n, c in enumerate(commands) if c.text.startswith("gsomia spif "))
    mine = next(n for n, c in enumerate(commands) if c.text.startswith("mkdir -p my-data"))
    # the export at an instant, then the data directory, the import and the party list with it (the
    # commands between them need the running network: the whole README's run has them)
    spif = [commands[first], *commands[mine : mine + 3]]
    assert spif[2].text.startswith("gsomia spif import gbr-policy.xml")
    assert spif[-1].text.startswith("gsomia --data my-data party list")
    _run([[commands[0], *spif]], tmp_path, timeout=1800)
    party = (tmp_path / "my-data" / "GBR.toml").read_text(encoding="utf-8")
    assert 'code = "GBR"' in party
    assert 'name = "SECRET"' in party
