"""The process's open resources: engine, sessions, the sequencer's pool and the sequencer."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.ledger.sequencer import Sequencer


@dataclass
class Runtime:
    """What a server process (or a CLI command) holds open while it runs."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pool: asyncpg.Pool
    sequencer: Sequencer

    @classmethod
    async def open(cls, app_url: str, settings: Settings) -> Runtime:
        engine = make_engine(app_url, settings.db_pool_size)
        pool = await asyncpg.create_pool(app_url, min_size=1, max_size=4)
        return cls(
            engine,
            make_sessionmaker(engine),
            pool,
            Sequencer(pool, settings.max_batch_size, settings.idempotency_wait_s),
        )

    async def close(self) -> None:
        await self.sequencer.close()
        await self.pool.close()
        await self.engine.dispose()
