"""The raw HTTP gateway: the least an HTTP-to-RabbitMQ bridge can do, with no product code.

A bare ASGI app under the same uvicorn (uvloop, httptools) as the product: parse the JSON array,
publish every element with confirms pipelined, answer 202. No validation, no FastAPI.
``python -m bench.raw_gateway --port P --amqp-url U --exchange E``
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aio_pika
import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RawGateway:
    def __init__(self, amqp_url: str, exchange: str) -> None:
        self._amqp_url = amqp_url
        self._exchange_name = exchange
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._connection = await aio_pika.connect(self._amqp_url)
                    channel = await self._connection.channel(publisher_confirms=True)
                    self._exchange = await channel.get_exchange(self._exchange_name)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._connection is not None:
                        await self._connection.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["method"] == "GET":  # a health probe
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        document = orjson.loads(body)
        events = document if isinstance(document, list) else [document]
        assert self._exchange is not None
        await asyncio.gather(
            *(
                self._exchange.publish(
                    aio_pika.Message(
                        orjson.dumps(event),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=event["event_id"],
                    ),
                    routing_key=event["topic"],
                )
                for event in events
            )
        )
        response = orjson.dumps({"accepted": len(events)})
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": response})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_gateway")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--exchange", required=True)
    args = parser.parse_args()
    uvicorn.run(
        RawGateway(args.amqp_url, args.exchange),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
