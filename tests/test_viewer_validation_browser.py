"""The viewer shows an ifcvalidate job's issues on the model: choosing a group of issues colours the
elements it names. The job's result is the real validator's, run on a copy of the FZK-Haus broken on
purpose; the stand-in service returns it (as tests/test_viewer_browser.py does for the other tools)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Behaviour, submit, until
from tests.test_viewer_browser import (  # noqa: F401 - browser, page and models are fixtures used here
    CHROMIUM,
    STAIR,
    WALL,
    browser,
    convert_job,
    loaded,
    models,
    page,
    place,
    shot,
)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
BROKEN = "uploads/house_broken.ifc"


def break_house(source: Path, target: Path) -> None:
    """The FZK-Haus with the spiral stair's PredefinedType no literal of IfcStairTypeEnum and an inner
    wall's Name a number."""
    lines = source.read_text(encoding="latin-1").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#") and f"('{STAIR}'," in line:
            assert line.endswith(",$);"), line
            lines[i] = line[: -len("$);")] + ".FOO.);"
        elif line.startswith("#") and f"('{WALL}'," in line:
            lines[i] = line.replace("'Wand-Int-ERDG-4'", "5", 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="latin-1")


def validation_result(data_dir: Path) -> dict[str, Any]:
    from contracts.requests import IfcValidateRequest
    from ifcservices.context import TaskContext
    from ifcservices.tools.validate import run

    request = IfcValidateRequest(ifc_filename=BROKEN, output_filename="output/ifctester/house.json", rules=False)
    return run(request, TaskContext(data_dir=data_dir))


# page and models are the fixtures imported above (hence noqa: F811).
async def test_choosing_a_validation_issue_highlights_its_element(
        page: Any, gateway: str, worker: Any, api: Any, stub: Any, data_dir: Path,  # noqa: F811
        models: dict[str, Path]) -> None:  # noqa: F811
    break_house(models["house.ifc"], data_dir / BROKEN)
    # The GlobalIds are the house's: its glb shows the broken copy's elements.
    await convert_job(api, stub, BROKEN, place(data_dir, models["house.glb"], "output/ifcconvert/house.glb"))
    result = await asyncio.to_thread(validation_result, data_dir)  # the stand-in service runs on this loop
    stub.will("/ifcvalidate", Behaviour(body=result))
    job = await submit(api, "/ifcvalidate", body={"ifc_filename": BROKEN, "output_filename": "house.json",
                                                   "rules": False})
    assert (await until(api, job))["status"] == "complete"

    await page.goto(f"{gateway}/viewer?job={job}")
    await loaded(page)
    assert "not valid" in await page.inner_text("#issue-list li.group")
    await page.click("#issue-list li[data-group='enumeration: IfcStair.PredefinedType']")
    summary = await page.evaluate("window.ifcflowViewer.summary()")
    looks = summary["looks"]
    assert looks.pop(STAIR) == "#e53935" and set(looks.values()) == {"ghost"}
    assert summary["focus"] == {"kind": "validation", "group": "enumeration: IfcStair.PredefinedType",
                                "global_ids": [STAIR]}

    await page.click("#issue-list li[data-group='type: IfcWallStandardCase.Name']")
    looks = (await page.evaluate("window.ifcflowViewer.summary()"))["looks"]
    assert looks.pop(WALL) == "#e53935" and set(looks.values()) == {"ghost"}
    # One of the group's elements: picking it shows its properties.
    await page.click(f"#issue-list li.chosen li[data-gid='{WALL}']")
    await page.wait_for_selector(f"#picked[data-gid='{WALL}']")
    await shot(page, "viewer-validation.png")
    assert page.blocked == [] and page.errors == []
