"""Every function in engine/ and workbench/ takes at most 7 positional parameters.

scripts/check_signatures.py is the check; these tests run it on the code and
prove it catches what it is meant to catch, so a passing run means something.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_signatures.py"


def check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_engine_and_workbench_have_no_long_positional_signatures():
    done = check(ROOT / "engine", ROOT / "workbench")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


PLANTED = """
def eight(a, b, c, d, e, f, g, h): ...
def seven(a, b, c, d, e, f, g): ...
def keyword_only(a, b, c, d, e, f, g, *, h, i, j): ...
def star_args(a, b, c, d, e, f, g, *rest, **kw): ...
def positional_only(a, b, c, d, /, e, f, g, h): ...

class Holder:
    def method(self, a, b, c, d, e, f, g): ...
    def too_long(self, a, b, c, d, e, f, g, h): ...
    @classmethod
    def build(cls, a, b, c, d, e, f, g): ...
    @staticmethod
    def static(a, b, c, d, e, f, g, h): ...
    async def later(self, a, b, c, d, e, f, g, h): ...

def outer():
    def inner(self, a, b, c, d, e, f, g): ...  # not a method: `self` counts here
    return inner
"""


def test_the_checker_names_each_offender_and_fails(tmp_path: Path):
    planted = tmp_path / "planted.py"
    planted.write_text(PLANTED, encoding="utf-8")
    done = check(tmp_path)
    assert done.returncode == 1
    names = [line.split()[1] for line in done.stdout.splitlines()]
    assert names == ["eight", "positional_only", "too_long", "static", "later", "inner"]
    first = done.stdout.splitlines()[0]
    assert first == f"{planted}:2 eight (8 positional)"
    assert "6 function(s)" in done.stderr


def test_a_clean_file_passes_and_a_missing_path_is_one_line(tmp_path: Path):
    ok = tmp_path / "ok.py"
    ok.write_text("def f(a, b, *, c, d, e, f, g, h, i): ...\n", encoding="utf-8")
    assert check(ok).returncode == 0
    missing = check(tmp_path / "nowhere")
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "no such path" in missing.stderr
