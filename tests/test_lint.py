"""The code's own rules, run by the test command: ruff, the import contract of docs/ARCHITECTURE.md, module size."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_finds_nothing():
    out = _run(sys.executable, "-m", "ruff", "check", "--no-cache", "pyzdb", "tests", "bench")
    assert out.returncode == 0, out.stdout + out.stderr


def test_imports_keep_the_layers_and_have_no_circles():
    lint_imports = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    out = _run(lint_imports if os.path.exists(lint_imports) else "lint-imports", "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout, out.stdout


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "pyzdb").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_nothing_in_the_product_imports_bench():
    for path in (ROOT / "pyzdb").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import bench", "from bench")), f"{path}: {line}"
