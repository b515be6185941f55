"""The package's shape: the import contracts (pyproject.toml, [tool.importlinter]) hold and
bite (an upward import planted in a copy of the package breaks them), and no module or
function under app/ outgrows its limit."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.slow


def _lint(project: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports reads the config in the working directory and imports `app` from it.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def _copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    return project


def test_the_contracts_hold(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        # The ledger imports a feature, inside a function (imports in functions count).
        (
            "app/ledger/journal.py",
            "\n\ndef _planted() -> None:\n    import app.volunteering.records  # noqa: F401\n",
            "Layers point one way",
        ),
        # The kit imports HTTP machinery.
        ("app/kit/clock.py", "\nimport app.http.caller  # noqa: F401\n", "Layers point one way"),
        # A feature reaches up into another: volunteering imports the kiosk.
        (
            "app/volunteering/checkin_codes.py",
            "\nimport app.kiosk.codes  # noqa: F401\n",
            "Layers point one way",
        ),
        # The witness reaches the ledger's database, through app.audit's service.
        (
            "app/witness/store.py",
            "\n\ndef _planted() -> None:\n    import app.audit.service  # noqa: F401\n",
            "The witness stands apart from the ledger",
        ),
        # A cycle inside one package: identity's errors import its members module.
        (
            "app/identity/errors.py",
            "\n\ndef _planted() -> None:\n    import app.identity.members  # noqa: F401\n",
            "No cycles between the modules of a package",
        ),
    ],
)
def test_a_planted_import_breaks_them(
    tmp_path: Path, module: str, planted: str, broken: str
) -> None:
    project = _copy(tmp_path)
    target = project / module
    target.write_text(target.read_text() + planted)
    result = _lint(project)
    assert result.returncode != 0
    assert f"{broken} BROKEN" in result.stdout


def test_no_module_over_600_lines_and_no_function_over_120() -> None:
    too_long: list[str] = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) > 600:
            too_long.append(f"{path.relative_to(ROOT)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 120:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.name}: {length} lines")
    assert too_long == []
