from __future__ import annotations

from tests.conftest import Api


async def test_healthz_readyz_metrics(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["migration"] == "0015"
    book = await api.book()
    await api.funded(book, 10)
    metrics = await api.client.get("/metrics")
    assert metrics.status_code == 200
    assert "timebank_postings_total" in metrics.text
    assert "timebank_ledger_batch_size_bucket" in metrics.text
    assert 'route="/v1/books/{code}/transactions"' in metrics.text
