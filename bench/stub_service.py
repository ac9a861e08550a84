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
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def call(request: web.Request) -> web.Response:
        await request.read()
        if delay > 0:
            await asyncio.sleep(delay)
        return web.json_response(RESULT)

    app = web.Application()
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
