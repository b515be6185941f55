"""docs/errors.md lists every problem type the code can return."""

from __future__ import annotations

from pathlib import Path

import app.audit.errors
import app.identity.errors
import app.kiosk.errors
import app.ledger.errors
import app.volunteering.errors
import app.volunteering.proof_errors  # noqa: F401 - registers the problem types
from app.kit.problems import all_problem_types

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def test_every_problem_type_is_documented() -> None:
    text = DOC.read_text()
    missing = [
        cls.__name__
        for cls in all_problem_types()
        if f"`urn:timebank:problem:{cls.slug}`" not in text
    ]
    assert missing == []
    assert "`urn:timebank:problem:malformed-json`" in text
