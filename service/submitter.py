"""Submits that arrive together share one Redis round trip; a lone one takes the shortest path.

Each submit is one script call (``store.enqueue``); what costs the gateway most is not the
script but redis-py's work around each call (taking a connection from the pool and checking it, the
round trip itself). Calls made while the event loop is busy with other requests are queued here and
sent as one pipeline as soon as the loop gets to them, so under load many submits share that cost.
A submit with nothing else in flight goes out at once on a connection kept for it, without the
pool's checkout and checks (with them a lone submit cost the gateway half again as much CPU).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from arq import ArqRedis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from settings import Settings
from store.enqueue import CREATE_SHA, CreateCall, NewJob, create_call, load_create_script, run_create

T = TypeVar("T")


class JobSubmitter:
    """Records and enqueues jobs for the gateway; made and closed by the lifespan."""

    def __init__(self, redis: ArqRedis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._pending: list[tuple[CreateCall, asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._direct = 0  # calls sent on their own, in flight
        self._own: Connection | None = None  # the connection lone calls use, out of the pool for good
        self._late = False  # the lone call in flight had no reply in time

    def _busy(self) -> bool:
        return bool(self._pending or self._flushes or self._direct)

    async def create(self, job: NewJob, meanwhile: Callable[[], T]) -> tuple[bool, T]:
        """As ``store.enqueue.create_job`` (True when made, False for a replay of the same request),
        with what ``meanwhile`` returns: it runs once the call is on its way, so whatever the caller
        needs next (its answer) is made while Redis works rather than after."""
        call = create_call(self._redis, self._settings, job)
        if not self._busy():
            # Alone: sent from here, sparing a task and a future. Calls arriving meanwhile are batched.
            self._direct += 1
            try:
                return await self._alone(call, meanwhile)
            finally:
                self._direct -= 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((call, future))
        if len(self._pending) == 1:
            # Runs once the loop has handled what is ready now, taking every call queued by then.
            task = asyncio.create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        made = meanwhile()
        return call.created(await future), made

    async def _alone(self, call: CreateCall, meanwhile: Callable[[], T]) -> tuple[bool, T]:
        if self._own is not None and _closed_by_server(self._own):
            await self._drop_own()  # Redis dropped it while idle (restart, client timeout, CLIENT KILL)
        conn = self._own
        if conn is None:
            conn = self._own = await self._redis.connection_pool.get_connection()
        reader, writer = getattr(conn, "_reader", None), getattr(conn, "_writer", None)
        if reader is None or writer is None or writer.transport.is_closing():
            # Nothing of this call was sent: the pool (which reconnects) can take it.
            await self._drop_own()
            made = meanwhile()
            return call.created(await run_create(self._redis, call)), made
        # Written and read as is: redis-py's send path (a timeout context, its generic packing, a drain)
        # cost as much as the round trip itself, and its reply path half as much again. A command of a
        # few hundred bytes never fills the buffer.
        writer.write(_resp("EVALSHA", CREATE_SHA, len(call.keys), *call.keys, *call.args))
        # The read timeout: a reply overdue ends the connection, which ends the read (a bare timer
        # costs a third of what a timeout context does).
        overdue = None
        if conn.socket_timeout:
            self._late = False
            overdue = asyncio.get_running_loop().call_later(conn.socket_timeout, self._overdue, writer)
        try:
            made = meanwhile()
            taken = await _script_reply(reader)
        except NoScriptError:  # Redis restarted and forgot the script
            taken = await run_create(self._redis, call)
        except BaseException as exc:
            # The reply may still come (cancelled) or the connection is broken: either way it is done.
            await self._drop_own()
            if overdue is not None and self._late:
                raise RedisTimeoutError(f"no reply from Redis within {conn.socket_timeout} s") from exc
            raise
        finally:
            if overdue is not None:
                overdue.cancel()
        return call.created(taken), made

    def _overdue(self, writer: asyncio.StreamWriter) -> None:
        self._late = True  # one lone call at a time (others are batched meanwhile): it is that one's
        writer.transport.abort()

    async def _drop_own(self) -> None:
        conn, self._own = self._own, None
        if conn is not None:
            await conn.disconnect()
            await self._redis.connection_pool.release(conn)

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            if len(batch) == 1:
                results: list[Any] = [await run_create(self._redis, batch[0][0])]
            else:
                results = await self._pipelined([call for call, _ in batch])
        except BaseException as exc:  # every waiting request gets the failure, whatever it is
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its request went away meanwhile
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _pipelined(self, calls: list[CreateCall]) -> list[Any]:
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for call in calls:
                    await run_create(pipe, call)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                await load_create_script(self._redis)  # Redis restarted and forgot it: load, send again
                continue
            break
        return results

    async def close(self) -> None:
        """Let the submits in flight finish, and give the kept connection back."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        if self._own is not None:
            await self._redis.connection_pool.release(self._own)
            self._own = None


def _resp(*args: Any) -> bytes:
    """A command in Redis's wire format (RESP), as redis-py's ``pack_command`` makes it for these args."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


async def _script_reply(reader: asyncio.StreamReader) -> bytes | None:
    """The create script's reply as Redis writes it: nil (made), a bulk string (taken), or an error."""
    line = await reader.readline()
    kind = line[:1]
    try:
        if kind == b"$":
            size = int(line[1:])
            return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
        if kind == b"_":  # RESP3's nil
            return None
    except (ValueError, asyncio.IncompleteReadError):
        pass
    else:
        if kind == b"-":
            message = line[1:].rstrip().decode(errors="replace")
            raise (NoScriptError if message.startswith("NOSCRIPT") else ResponseError)(message)
    raise RedisConnectionError("Redis closed the connection" if not line else f"unexpected reply {line[:40]!r}")


def _closed_by_server(conn: Connection) -> bool:
    # What the pool checks at every checkout (with a read attempt under a timeout), read here for free:
    # the event loop has already seen the end of the stream if Redis closed the connection.
    reader = getattr(conn, "_reader", None)
    return reader is None or reader.at_eof()
