"""One module per scenario; each has ``async def run(h: Harness) -> Section``."""
