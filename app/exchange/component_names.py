"""The OpenAPI component names exchange's schemas were published under.

Pydantic names a schema's component after its class, and two classes of one name after their
module paths (`app__exchange__gifts_schemas__EntryRef`). Six schemas were published so before
the package took its sub-packages, which moved them (and renamed some, one class per
meaning; each keeps its published `title`): the document keeps the names clients know.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel

from app.exchange.pools.schemas import DonationCreate, DonationRead
from app.exchange.public_pool.schemas import PublicPoolDonationCreate, PublicPoolDonationRead
from app.exchange.recognition.schemas import LinkedEntry
from app.exchange.schemas import EntryRef
from app.kit.canonical_json import JsonObject

PUBLISHED: Final[dict[type[BaseModel], str]] = {
    DonationCreate: "app__exchange__schemas__DonationCreate",
    DonationRead: "app__exchange__schemas__DonationRead",
    PublicPoolDonationCreate: "app__exchange__gifts_schemas__DonationCreate",
    PublicPoolDonationRead: "app__exchange__gifts_schemas__DonationRead",
    EntryRef: "app__exchange__gifts_schemas__EntryRef",
    LinkedEntry: "app__exchange__recognition_schemas__EntryRef",
}
REF_PREFIX = "#/components/schemas/"


def _rewrite_refs(node: Any, renamed: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in renamed:
            node["$ref"] = renamed[ref]
        for value in node.values():
            _rewrite_refs(value, renamed)
    elif isinstance(node, list):
        for item in node:
            _rewrite_refs(item, renamed)


def keep_published_names(document: dict[str, Any]) -> JsonObject:
    """The OpenAPI document with each schema of `PUBLISHED` under its published name (a
    KeyError if pydantic no longer names one after its class: a new clash of names)."""
    components = document["components"]["schemas"]
    renamed: dict[str, str] = {}
    for model, published in PUBLISHED.items():
        components[published] = components.pop(model.__name__)
        renamed[REF_PREFIX + model.__name__] = REF_PREFIX + published
    _rewrite_refs(document, renamed)
    return document
