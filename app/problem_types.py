"""Every problem type the service answers with, by the modules that define them.

Listed here, not found by walking subclasses, so that docs/errors.md and its test see all of
them without importing the app (tests/test_errors_doc.py also holds this list complete).
"""

from __future__ import annotations

from types import ModuleType

from app.audit import errors as audit_errors
from app.exchange import errors as exchange_errors
from app.exchange.gifts import errors as gift_errors
from app.exchange.public_pool import errors as public_pool_errors
from app.exchange.recognition import errors as recognition_errors
from app.identity import errors as identity_errors
from app.kiosk import errors as kiosk_errors
from app.kit import personal_text, problems
from app.kit.problems import RecordedProblem, TimebankError
from app.ledger import errors as ledger_errors
from app.volunteering import errors as volunteering_errors
from app.witness import errors as witness_errors

PROBLEM_MODULES: tuple[ModuleType, ...] = (
    problems,
    personal_text,
    ledger_errors,
    identity_errors,
    audit_errors,
    exchange_errors,
    gift_errors,
    public_pool_errors,
    recognition_errors,
    volunteering_errors,
    kiosk_errors,
    witness_errors,
)


def problem_types() -> list[type[TimebankError]]:
    """Each problem type once, module by module in definition order (a recorded problem has no
    type of its own and is left out)."""
    return [
        value
        for module in PROBLEM_MODULES
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, TimebankError)
        and value.__module__ == module.__name__
        and value is not RecordedProblem
    ]
