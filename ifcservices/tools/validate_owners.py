"""The elements an issue belongs to when its own entity has no GlobalId (a representation, a quantity,
a property set's value): so that the viewer can show it on the model and BCF can name a component.

The walk goes up the model's references (``get_inverse``) to the products that use the entity, through
property and quantity sets to the elements they are assigned to. It is bounded: an entity referenced by
many others is a shared resource (owner history, units, a context, a common point), which belongs to
no element in particular, and the walk stops there.
"""

from __future__ import annotations

from typing import Any

import ifcopenshell

_MAX_DEPTH = 5
_MAX_VISITED = 100
_SHARED = 20  # more users than this: a shared resource, not part of one element
_MAX_OWNERS = 10
# Entities looked up per validation: each walk costs up to _MAX_VISITED lookups.
MAX_LOOKUPS = 2_000


def _products(relation: Any) -> list[str]:
    related = getattr(relation, "RelatedObjects", None) or ()
    return [obj.GlobalId for obj in related if obj.is_a("IfcProduct")]


def owners(model: ifcopenshell.file, entity_id: int) -> list[str]:
    """GlobalIds of the products using entity ``entity_id`` (at most ``_MAX_OWNERS``), nearest first."""
    try:
        start: Any = model.by_id(entity_id)
    except RuntimeError:
        return []
    found: list[str] = []
    seen = {entity_id}
    frontier = [start]
    for _ in range(_MAX_DEPTH):
        following: list[Any] = []
        for node in frontier:
            users: Any = model.get_inverse(node)
            if len(users) > _SHARED:
                continue
            for user in users:
                if user.id() in seen:
                    continue
                seen.add(user.id())
                if user.is_a("IfcProduct"):
                    found.append(user.GlobalId)
                elif user.is_a("IfcRelDefines") or user.is_a("IfcRelAssociates"):
                    found += _products(user)
                elif not user.is_a("IfcRoot") or user.is_a("IfcPropertyDefinition"):
                    following.append(user)  # types and other rooted entities are not on the model
                if len(found) >= _MAX_OWNERS or len(seen) > _MAX_VISITED:
                    return list(dict.fromkeys(found))[:_MAX_OWNERS]
        frontier = following
    return list(dict.fromkeys(found))[:_MAX_OWNERS]
