"""The TypeScript client (clients/typescript) is the API's: its generated types are what the
pinned generator makes of openapi/openapi.json today. (That the client compiles in strict mode
against them is shown by tests/e2e/test_integration.py, which builds it to run the journeys.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.node import CLIENT, ROOT, require_node, run_tool

pytestmark = pytest.mark.slow


def test_the_committed_types_are_generated_from_the_committed_openapi(tmp_path: Path) -> None:
    tools = require_node()
    fresh = tmp_path / "schema.ts"
    run_tool(
        [
            str(tools / "openapi-typescript"),
            str(ROOT / "openapi" / "openapi.json"),
            "-o",
            str(fresh),
        ]
    )
    committed = (CLIENT / "src" / "schema.ts").read_text()
    assert fresh.read_text() == committed, (
        "clients/typescript/src/schema.ts is stale: run `npm run generate` in clients/typescript"
    )


def test_a_stale_type_would_be_caught(tmp_path: Path) -> None:
    """The check bites: types generated from a changed document differ from the committed."""
    import json

    tools = require_node()
    document = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    document["components"]["schemas"]["MemberBalances"]["properties"]["extra"] = {"type": "string"}
    changed = tmp_path / "openapi.json"
    changed.write_text(json.dumps(document))
    fresh = tmp_path / "schema.ts"
    run_tool([str(tools / "openapi-typescript"), str(changed), "-o", str(fresh)])
    assert fresh.read_text() != (CLIENT / "src" / "schema.ts").read_text()
