"""The process's open resources: the engine and sessions for reads, and the ledger sequencer."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.ledger.sequencer import Sequencer


@dataclass
class Runtime:
    """What a server process (or a CLI command) holds open while it runs."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    sequencer: Sequencer

    @classmethod
    async def open(cls, app_url: str, settings: Settings) -> Runtime:
        engine = make_engine(app_url, settings.db_pool_size)
        sequencer = Sequencer(app_url, settings.max_batch_size, settings.idempotency_wait_s)
        await sequencer.start()
        return cls(engine, make_sessionmaker(engine), sequencer)

    async def close(self) -> None:
        await self.sequencer.close()
        await self.engine.dispose()
