"""The raw HTTP gateway: the least an HTTP-to-RabbitMQ bridge can do, with no product code.

A bare ASGI app under the same uvicorn (uvloop, httptools) as the product: parse the JSON array,
publish every element with confirms pipelined, answer 202. No validation, no FastAPI.
``python -m bench.raw_gateway --port P --amqp-url U --exchange E``

With ``--fastapi``, the same bridge as the smallest FastAPI app that does it (one route, the
body read as bytes, aio-pika publishing with confirms): the "bare FastAPI + aio-pika gateway"
that issue 11 measures the product's single-event path against.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RawGateway:
    def __init__(self, amqp_url: str, exchange: str) -> None:
        self._amqp_url = amqp_url
        self._exchange_name = exchange
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def open(self) -> None:
        self._connection = await aio_pika.connect(self._amqp_url)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.get_exchange(self._exchange_name)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.open()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.close()
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
        response = await self.publish(body)
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": response})

    async def publish(self, body: bytes | bytearray) -> bytes:
        """Publish the body's event(s) with confirms; the answer's body."""
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
        return orjson.dumps({"accepted": len(events)})


def fastapi_gateway(amqp_url: str, exchange: str) -> FastAPI:
    """The same bridge as a one-route FastAPI app, sharing :class:`RawGateway`'s broker code."""
    gateway = RawGateway(amqp_url, exchange)

    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gateway.open()
        yield
        await gateway.close()

    app = FastAPI(lifespan=asynccontextmanager(lifespan))

    @app.get("/")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/publish", status_code=202)
    async def publish(request: Request) -> Response:
        answer = await gateway.publish(await request.body())
        return Response(answer, status_code=202, media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_gateway")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--fastapi", action="store_true", help="the one-route FastAPI gateway")
    args = parser.parse_args()
    app = fastapi_gateway if args.fastapi else RawGateway
    uvicorn.run(
        app(args.amqp_url, args.exchange),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
