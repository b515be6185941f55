"""No input, however malformed, makes the service answer 500; every refusal is a problem."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Api

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
leg = st.fixed_dictionaries(
    {"account_id": st.uuids().map(str) | json_values, "amount": json_values}
)
transaction_like = st.fixed_dictionaries(
    {"legs": st.lists(leg, max_size=4)},
    optional={"kind": json_values, "memo": json_values, "meta": json_values},
)


async def test_random_bodies_never_crash(api: Api) -> None:
    book = await api.book()
    issuance, member = await api.funded(book, 10)
    urls = [
        f"/v1/books/{book}/transactions",
        f"/v1/books/{book}/holds",
        f"/v1/books/{book}/accounts",
        "/v1/books",
        f"/v1/holds/{uuid.uuid4()}/post",
        f"/v1/accounts/{member}",
    ]
    bodies: list[Any] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=transaction_like | json_values, url=st.sampled_from(urls))
    def collect(body: Any, url: str) -> None:
        bodies.append((url, body))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(raw=st.binary(max_size=200), url=st.sampled_from(urls))
    def collect_raw(raw: bytes, url: str) -> None:
        bodies.append((url, raw))

    collect()
    collect_raw()
    assert len(bodies) >= 150
    for url, body in bodies:
        method = "PATCH" if url.startswith("/v1/accounts/") else "POST"
        headers = {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}
        try:
            if isinstance(body, bytes):
                response = await api.client.request(method, url, content=body, headers=headers)
            else:
                response = await api.client.request(method, url, json=body, headers=headers)
        except ValueError:  # httpx cannot send NaN or infinities as JSON: nothing to test
            continue
        assert response.status_code < 500, (url, body, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["type"].startswith("urn:timebank:problem:")
