"""Smart grouping of clashes: clashes closer than a distance to one another form one group.

ifcclash's own grouping needs scikit-learn (OPTICS), a heavy dependency for what single-linkage
clustering over the clash points does as well: a grid of cells the size of the distance limits the
comparisons to neighbouring cells, so large clash sets stay fast.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence

Point = Sequence[float]


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def cluster(points: Sequence[Point], max_distance: float) -> list[list[int]]:
    """Indices of ``points`` grouped so that each point is within ``max_distance`` of another in its
    group; groups are ordered by their first index, singletons included."""
    parent = list(range(len(points)))
    cells: defaultdict[tuple[int, int, int], list[int]] = defaultdict(list)
    for i, point in enumerate(points):
        cells[
            (
                math.floor(point[0] / max_distance),
                math.floor(point[1] / max_distance),
                math.floor(point[2] / max_distance),
            )
        ].append(i)
    for (cx, cy, cz), members in cells.items():
        for dx, dy, dz in itertools.product((-1, 0, 1), repeat=3):
            for j in cells.get((cx + dx, cy + dy, cz + dz), ()):
                for i in members:
                    if i < j and math.dist(points[i], points[j]) <= max_distance:
                        parent[_find(parent, i)] = _find(parent, j)
    groups: dict[int, list[int]] = {}
    for i in range(len(points)):
        groups.setdefault(_find(parent, i), []).append(i)
    return sorted(groups.values(), key=lambda group: group[0])
