"""Peak memory of ``gsomia import`` on a 64 MiB junk transfer file (issue 15 §6).

Usage: ``python scripts/measure_import_memory.py [SRC]`` with SRC the ``src`` directory of the
gsomia to measure (default: this checkout's), e.g. an older checkout's to compare. Prints the
import's peak resident set size (``/usr/bin/time -f %M``) beside a bare ``gsomia node init``'s,
the process's own baseline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

JUNK_MIB = 64


def _peak_kib(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(  # noqa: S603 - our own CLI under GNU time
        ["/usr/bin/time", "-f", "MAXRSS_KB=%M", sys.executable, "-m", "gsomia", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return int(done.stderr.split("MAXRSS_KB=")[1].split()[0]), done.stderr.split("\n")[0]


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": str(src)}
    with tempfile.TemporaryDirectory() as tmp:
        node = Path(tmp) / "jpn"
        baseline, _ = _peak_kib(["node", "init", "--party", "JPN", "--dir", str(node)], env)
        junk = Path(tmp) / "junk.json"
        with junk.open("wb") as out:
            out.write(b'{"format":"gsomia-transfer/1","manifest":"x","envelopes":["')
            out.write(b"A" * (JUNK_MIB * 1_048_576))
            out.write(b'"]}')
        peak, said = _peak_kib(["import", "--dir", str(node), str(junk)], env)
    print(f"{src}: import of a {JUNK_MIB} MiB junk file: peak RSS {peak / 1024:.0f} MiB "
          f"(node init alone: {baseline / 1024:.0f} MiB); it said: {said}")  # fmt: skip


if __name__ == "__main__":
    main()
