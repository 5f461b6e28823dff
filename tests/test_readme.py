"""The README's two set-up commands stay true: CI runs the test command verbatim."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
DEMO_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/gsomia demo"


def test_readme_gives_exactly_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```sh\n")[1:]]
    assert blocks[0] == DEMO_COMMAND
    assert blocks[1] == TEST_COMMAND
    assert sum("python3 -m venv" in b for b in blocks) == 2
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
