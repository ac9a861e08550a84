"""The IFC services: ifcopenshell and its tools behind small HTTP services, one per tool.

Each service answers ``GET /health`` and the operation routes of ``contracts.operations``; the IFC work
itself runs in child processes (see ``runner``), so a crash or a two-hour job never stalls a service.
Start one with ``python -m ifcservices <tool>`` or every one at once with ``python -m ifcservices all``.
"""
