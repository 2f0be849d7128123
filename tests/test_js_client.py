"""The browser client's own tests (``clients/js/test``), run with node's test runner.

They drive ``clients/js/nexios.js`` against a fake WebSocket and a fake clock: backoff,
resubscribe, merge, dedupe, gap repair, epochs, presence diffs, command timeouts,
publish retries, token refresh; plus the size budget (minified + gzip, with terser) and
the TypeScript declarations (tsc). Their devDependencies are installed with ``npm ci``
when missing or out of date.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).parents[1] / "clients" / "js"
TESTS = sorted((JS / "test").glob("*.test.mjs"))


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed: apt-get install nodejs npm (see .ci/run)")
    installed = JS / "node_modules" / ".package-lock.json"
    lock = JS / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed: apt-get install npm (see .ci/run)")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS,
            check=True,
            timeout=300,
        )
    return path


def test_every_js_test_file_is_collected() -> None:
    names = {path.name for path in TESTS}
    assert {"messages.test.mjs", "connection.test.mjs", "presence.test.mjs"} <= names
    assert {"size.test.mjs", "types.test.mjs"} <= names


@pytest.mark.parametrize("path", TESTS, ids=lambda path: path.name)
def test_js(node: str, path: Path) -> None:
    result = subprocess.run(
        [node, "--test", str(path.relative_to(JS))],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", output, re.MULTILINE)
    assert passed and failed, output
    assert int(passed.group(1)) > 0 and int(failed.group(1)) == 0, output
    for line in output.splitlines():
        if "minified + gzip" in line and line.startswith("# nexios.js"):
            print(line[2:])
