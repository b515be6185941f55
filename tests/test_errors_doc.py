"""docs/errors.md lists every problem type the code can return."""

from __future__ import annotations

from pathlib import Path

from app.problem_types import problem_types

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def test_every_problem_type_is_documented() -> None:
    text = DOC.read_text()
    missing = [
        cls.__name__ for cls in problem_types() if f"`urn:timebank:problem:{cls.slug}`" not in text
    ]
    assert missing == []
    assert "`urn:timebank:problem:malformed-json`" in text


def test_the_list_of_problem_types_is_complete() -> None:
    # Every TimebankError subclass the app can raise (all imported by app.main) is listed.
    import app.main  # noqa: F401
    from app.kit.problems import RecordedProblem, TimebankError

    found: set[type[TimebankError]] = set()
    todo: list[type[TimebankError]] = [TimebankError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    listed = problem_types()
    assert len(listed) == len(set(listed))
    assert found - {RecordedProblem} == set(listed)
