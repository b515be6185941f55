"""The HTTP answer to an action run once per Idempotency-Key (a replay says so)."""

from __future__ import annotations

from starlette.responses import Response

from app.identity.actions import Action, run_action
from app.identity.dependencies import PostingContext
from app.kit.responses import replayable_response


async def answer_action(ctx: PostingContext, action: Action) -> Response:
    """Run `action` for the caller's key (or replay its answer) and shape the response."""
    answer = await run_action(ctx.sessions, ctx.sequencer, ctx.idem, action)
    return replayable_response(answer.status_code, answer.body, answer.replayed)
