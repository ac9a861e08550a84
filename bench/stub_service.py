"""The stand-in IFC service of a run: every POST answers a fixed JSON result after ``--delay`` seconds.

Runs as its own process (``python -m bench.stub_service --port P --delay 0.2``) so its CPU is not the
bench's, on loopback only. With ``--slots N`` it has N slots, as the real services have: a call beyond
them is answered 503 ``busy`` at once (the real services' answer), and ``/health`` says the capacity.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

RESULT = {"output_files": ["output/bench/out.bin"], "ok": True}


def make_app(delay: float, slots: int = 0) -> web.Application:
    calls = {"in_flight": 0, "max_in_flight": 0, "calls": 0, "busy": 0}

    async def health(_: web.Request) -> web.Response:
        if slots:
            return web.json_response({"status": "ok", "capacity": slots, "active": calls["in_flight"]})
        return web.json_response({"status": "ok"})

    async def stats(request: web.Request) -> web.Response:
        """Calls in flight now, the most at once, the count and the busy answers since the last reset
        (``?reset=1``)."""
        answer = dict(calls)
        if request.query.get("reset"):
            calls.update(max_in_flight=calls["in_flight"], calls=0, busy=0)
        return web.json_response(answer)

    async def call(request: web.Request) -> web.Response:
        await request.read()
        calls["calls"] += 1
        if slots and calls["in_flight"] >= slots:
            calls["busy"] += 1
            error = {"type": "busy", "message": f"busy: all {slots} slots are taken", "status_code": 503}
            return web.json_response({"error": error}, status=503, headers={"Retry-After": "5"})
        calls["in_flight"] += 1
        calls["max_in_flight"] = max(calls["max_in_flight"], calls["in_flight"])
        try:
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            calls["in_flight"] -= 1
        return web.json_response(RESULT)

    app = web.Application()
    app.router.add_get("/bench/stats", stats)
    app.router.add_get("/{tail:.*}", health)
    app.router.add_post("/{tail:.*}", call)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each call takes")
    parser.add_argument("--slots", type=int, default=0, help="calls at once before 503 busy (0: no limit)")
    args = parser.parse_args()
    web.run_app(
        make_app(args.delay, args.slots), host="127.0.0.1", port=args.port, access_log=None, print=None,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
