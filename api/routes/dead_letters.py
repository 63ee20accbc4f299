"""``GET /dead-letters`` and ``POST /dead-letters/replay``: the dead-letter queue over HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from aggregator import dead_letters
from aggregator.connection import BROKER_ERRORS
from aggregator.errors import BrokerUnavailable
from api.deps import PublisherDep, Reading, SettingsDep, caller_with
from api.examples import AUTH_RESPONSES
from api.schemas import DeadLetterOut, DeadLetters, Replayed

router = APIRouter(tags=["dead letters"])

Administering = Annotated[object, Depends(caller_with("admin"))]


@router.get(
    "/dead-letters",
    response_model=DeadLetters,
    summary="Look at the dead letters, without taking them",
    description="The first `limit` messages of the dead-letter queue, each with why it is there"
    " and where it was published, and how many the queue holds. They stay in the queue.",
    responses=AUTH_RESPONSES,
)
async def peek(
    caller: Reading,
    publisher: PublisherDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100, description="most dead letters shown")] = 20,
) -> DeadLetters:
    try:
        async with publisher.side_channel(confirms=False) as channel:
            # Counted first: a message given back is ready again a moment after the nack.
            queue = await channel.declare_queue(settings.dead_letter_queue, passive=True)
            count = queue.declaration_result.message_count or 0
            letters = await dead_letters.peek(channel, settings.dead_letter_queue, limit)
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(f"cannot read the dead letters: {exc!r}", reason="broker") from exc
    return DeadLetters(
        count=count,
        dead_letters=[
            DeadLetterOut.model_validate(letter, from_attributes=True) for letter in letters
        ],
    )


@router.post(
    "/dead-letters/replay",
    response_model=Replayed,
    summary="Move dead letters back to the exchange, after a fix",
    description="Each moved once: republished under its original routing key, confirmed, then"
    " taken off the dead-letter queue. Needs the `admin` scope when API keys are on.",
    responses=AUTH_RESPONSES,
)
async def replay(
    caller: Administering,
    publisher: PublisherDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=10_000, description="most messages moved")] = 1000,
) -> Replayed:
    try:
        async with publisher.side_channel(confirms=True) as channel:
            moved = await dead_letters.replay(
                channel,
                settings.dead_letter_queue,
                settings.exchange,
                limit,
                timeout=settings.confirm_timeout_s,
            )
            queue = await channel.declare_queue(settings.dead_letter_queue, passive=True)
            left = queue.declaration_result.message_count or 0
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(
            f"cannot replay the dead letters: {exc!r}", reason="broker"
        ) from exc
    return Replayed(replayed=moved, left=left)
