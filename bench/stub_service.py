"""The stand-in IFC service of a run: every POST answers a fixed JSON result after ``--delay`` seconds.

Runs as its own process (``python -m bench.stub_service --port P --delay 0.2``) so its CPU is not the
bench's, on loopback only.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

RESULT = {"output_files": ["output/bench/out.bin"], "ok": True}


def make_app(delay: float) -> web.Application:
    calls = {"in_flight": 0, "max_in_flight": 0, "calls": 0}

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stats(request: web.Request) -> web.Response:
        """Calls in flight now, the most at once and the count since the last reset (``?reset=1``)."""
        answer = dict(calls)
        if request.query.get("reset"):
            calls.update(max_in_flight=calls["in_flight"], calls=0)
        return web.json_response(answer)

    async def call(request: web.Request) -> web.Response:
        await request.read()
        calls["calls"] += 1
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
    args = parser.parse_args()
    web.run_app(
        make_app(args.delay), host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096
    )


if __name__ == "__main__":
    main()
