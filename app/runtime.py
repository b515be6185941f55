"""The process's open resources: the engine and sessions for reads, and the ledger sequencer."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.ledger.sequencer import Sequencer

# A serving process's cyclic collector: young passes every 50,000 allocations rather than 700.
SERVING_GC_THRESHOLD = (50_000, 20, 20)


def settle_heap() -> None:
    """Once a serving process has started: objects alive now live as long as the process, so
    the cyclic collector stops walking them (its full passes showed as tail latency)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLD)


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
