"""The one detector of personal data in free text bound for the journal or a shared register.

The journal is immutable and exported to auditors: a phone or resident ID number written into
a memo, a reason or a `meta` value would outlive the member's erasure. Text that looks like a
mainland mobile number (11 digits from 13-19) or a resident ID number (17 digits and a digit
or X) is refused, whatever surrounds it, as `personal-data-in-text` (422).
"""

from __future__ import annotations

import re
from typing import Any, Final

from app.kit.problems import TimebankError

PERSONAL_DATA_CODE: Final = "personal_data"
PERSONAL_DATA_MESSAGE: Final = (
    "looks like it holds a phone or resident ID number; say what happened without personal data"
)
# A mainland mobile number or a resident ID number, anywhere in a text.
_PERSONAL_NUMBER = re.compile(r"(?<!\d)(1[3-9]\d{9}|\d{17}[\dXx])(?![\dXx])")


class PersonalDataInText(TimebankError):
    status, slug, title = 422, "personal-data-in-text", "Free text must not hold personal data"


def holds_personal_data(text: str) -> bool:
    """Whether `text` looks like it holds a phone or resident ID number."""
    return _PERSONAL_NUMBER.search(text) is not None


def personal_paths(value: Any) -> list[str]:
    """The `/`-separated paths of the strings (values and keys, at any depth) of a JSON value
    that hold personal data; "" for `value` itself."""
    found: list[str] = []
    # Without recursion: the door bounds the depth, but meta may come from elsewhere too.
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _PERSONAL_NUMBER.search(item):
                found.append(path)
        elif isinstance(item, dict):
            for key, member in item.items():
                at = f"{path}/{key}" if path else str(key)
                if isinstance(key, str) and _PERSONAL_NUMBER.search(key):
                    found.append(at)
                stack.append((member, at))
        elif isinstance(item, list):
            stack.extend(
                (member, f"{path}/{i}" if path else str(i)) for i, member in enumerate(item)
            )
    return sorted(found)
