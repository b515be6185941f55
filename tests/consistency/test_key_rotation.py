"""`timebank keys rotate` fails or dies between storing the new key and its notices: a key is
never rotated without a `notice.key_rotated` in every book (docs/consistency.md)."""

from __future__ import annotations

import asyncpg
import pytest

from tests.audit.test_export_verifier import TIMEBANK, run
from tests.conftest import Api, ScratchDatabase

STATE = """
SELECT (SELECT count(*) FROM signing_keys),
       (SELECT count(*) FROM journal_entries WHERE kind = 'notice.key_rotated')
"""


async def _state(database: ScratchDatabase) -> tuple[int, int]:
    conn = await asyncpg.connect(database.app_url)
    try:
        keys, notices = await conn.fetchrow(STATE)
    finally:
        await conn.close()
    return int(keys), int(notices)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["raise", "kill"])
@pytest.mark.parametrize("point", ["keys.rotate.rotated", "keys.rotate.announced"])
async def test_a_rotation_cut_short_leaves_neither_key_nor_notice(
    api: Api, database: ScratchDatabase, cli_env: dict[str, str], point: str, mode: str
) -> None:
    books = [await api.book(), await api.book()]
    await api.funded(books[0], 1)  # a receipt: the first key exists
    before = await _state(database)
    env = {**cli_env, "TIMEBANK_SIGNING_KEY_ROTATION_LEAD_S": "0"}
    cut = await run(
        [TIMEBANK, "keys", "rotate", "--yes"], {**env, "TIMEBANK_FAULT_POINTS": f"{point}={mode}"}
    )
    assert cut.returncode == (-9 if mode == "kill" else 1), cut.stderr
    assert await _state(database) == before
    done = await run([TIMEBANK, "keys", "rotate", "--yes"], env)
    assert done.returncode == 0, done.stderr
    assert await _state(database) == (before[0] + 1, before[1] + len(books))
