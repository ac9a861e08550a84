"""BCF-XML 2.1 and 3.0 files of issues on a model, one topic per issue, on bcf-client's public API.

bcf-client's ``add_topic`` draws a random GUID for every topic, so a rerun would make a coordination tool
import each issue again as a new topic. Here the caller gives each topic its GUID (derived from what the
issue is), and the viewpoint's GUID is derived from it, so the same issue is the same topic, and the
same viewpoint, in every file: importing a rerun updates topics instead of duplicating them.
"""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
from bcf.geometry import camera_vectors_from_target_position
from bcf.v2 import model as mdl2
from bcf.v2.bcfxml import BcfXml as BcfXml2
from bcf.v2.topic import TopicHandler as TopicHandler2
from bcf.v2.visinfo import VisualizationInfoHandler as VisInfo2
from bcf.v3 import model as mdl3
from bcf.v3.bcfxml import BcfXml as BcfXml3
from bcf.v3.topic import TopicHandler as TopicHandler3
from bcf.v3.visinfo import VisualizationInfoHandler as VisInfo3
from bcf.xml_parser import AbstractXmlParserSerializer, XmlParserSerializer
from xsdata.models.datatype import XmlDateTime

BcfVersion = Literal["2.1", "3.0"]
AUTHOR = "ifcflow"
# Where the camera stands from the point it looks at, in metres: far enough to see two elements around
# a clash, near enough that they fill the view (bcf-client's own default offset).
CAMERA_OFFSET = (5.0, 5.0, 5.0)
FIELD_OF_VIEW = 60.0


@dataclass(frozen=True, slots=True)
class BcfTopic:
    """One issue: a topic with one viewpoint that selects its elements and looks at ``point``."""

    guid: str  # topic GUID (UUID string), stable across reruns (the caller derives it, e.g. uuid5)
    title: str
    description: str
    status: str
    topic_type: str  # e.g. "Clash", "Error", "Warning"
    global_ids: tuple[str, ...]  # GlobalIds of the elements: components, selected in the viewpoint
    point: tuple[float, float, float] | None = None  # where the viewpoint camera looks, in metres
    labels: tuple[str, ...] = ()


def _serializer() -> AbstractXmlParserSerializer:
    # bcf-client's own default handler, which its type hints say does not fit its protocol (ns_map's
    # key type differs); shared by a file's handlers (see write_bcf).
    return cast(AbstractXmlParserSerializer, XmlParserSerializer())


def _viewpoint_guid(topic_guid: str) -> str:
    return str(uuid.uuid5(uuid.UUID(topic_guid), "viewpoint"))


def _camera_vectors(point: tuple[float, float, float]) -> tuple[list[float], list[float], list[float]]:
    return camera_vectors_from_target_position(np.array(point, dtype=float), np.array(CAMERA_OFFSET))


def _check(topics: Sequence[BcfTopic]) -> None:
    seen: set[str] = set()
    for topic in topics:
        uuid.UUID(topic.guid)  # ValueError names the bad GUID
        if topic.guid in seen:
            raise ValueError(f"two BCF topics share the GUID {topic.guid}")
        seen.add(topic.guid)


def _visinfo2(topic: BcfTopic) -> mdl2.VisualizationInfo:
    camera = None
    if topic.point is not None:
        position, direction, up = _camera_vectors(topic.point)
        camera = mdl2.PerspectiveCamera(
            camera_view_point=mdl2.Point(x=position[0], y=position[1], z=position[2]),
            camera_direction=mdl2.Direction(x=direction[0], y=direction[1], z=direction[2]),
            camera_up_vector=mdl2.Direction(x=up[0], y=up[1], z=up[2]),
            field_of_view=FIELD_OF_VIEW,
        )
    components = mdl2.Components(
        # The schema wants at least one component in a selection: none, no selection.
        selection=mdl2.ComponentSelection(component=[mdl2.Component(ifc_guid=g) for g in topic.global_ids])
        if topic.global_ids
        else None,
        visibility=mdl2.ComponentVisibility(default_visibility=True),
    )
    return mdl2.VisualizationInfo(guid=_viewpoint_guid(topic.guid), components=components, perspective_camera=camera)


def _visinfo3(topic: BcfTopic) -> mdl3.VisualizationInfo:
    camera = None
    if topic.point is not None:
        position, direction, up = _camera_vectors(topic.point)
        camera = mdl3.PerspectiveCamera(
            camera_view_point=mdl3.Point(x=position[0], y=position[1], z=position[2]),
            camera_direction=mdl3.Direction(x=direction[0], y=direction[1], z=direction[2]),
            camera_up_vector=mdl3.Direction(x=up[0], y=up[1], z=up[2]),
            field_of_view=FIELD_OF_VIEW,
            aspect_ratio=1.0,
        )
    components = mdl3.Components(
        # The schema wants at least one component in a selection: none, no selection.
        selection=mdl3.ComponentSelection(component=[mdl3.Component(ifc_guid=g) for g in topic.global_ids])
        if topic.global_ids
        else None,
        visibility=mdl3.ComponentVisibility(default_visibility=True),
    )
    return mdl3.VisualizationInfo(guid=_viewpoint_guid(topic.guid), components=components, perspective_camera=camera)


def _bcf2(topics: Sequence[BcfTopic], project_name: str, ifc_filename: str | None, now: XmlDateTime) -> BcfXml2:
    xml = _serializer()
    bcfxml = BcfXml2.create_new(project_name, xml)
    for topic in topics:
        header = mdl2.Header(file=[mdl2.HeaderFile(filename=ifc_filename, date=now)]) if ifc_filename else None
        markup = mdl2.Markup(
            header=header,
            topic=mdl2.Topic(
                guid=topic.guid,
                title=topic.title,
                description=topic.description,
                topic_status=topic.status,
                topic_type=topic.topic_type,
                labels=list(topic.labels),
                creation_date=now,
                creation_author=AUTHOR,
            ),
        )
        # bcf-client's own create_new names the topic's folder with a plain Path, as here.
        handler = TopicHandler2(topic_dir=Path(topic.guid), xml_handler=xml)  # type: ignore[arg-type]
        handler.markup = markup
        handler.add_visinfo_handler(VisInfo2(_visinfo2(topic), xml_handler=xml))
        bcfxml.topics[topic.guid] = handler
    return bcfxml


def _bcf3(topics: Sequence[BcfTopic], project_name: str, ifc_filename: str | None, now: XmlDateTime) -> BcfXml3:
    # BCF 3.0 readers check a topic's type, status and labels against extensions.xml: list what is used.
    extensions = mdl3.Extensions(
        topic_types=mdl3.ExtensionsTopicTypes(topic_type=sorted({t.topic_type for t in topics})),
        topic_statuses=mdl3.ExtensionsTopicStatuses(topic_status=sorted({t.status for t in topics})),
        topic_labels=mdl3.ExtensionsTopicLabels(topic_label=sorted({label for t in topics for label in t.labels})),
        users=mdl3.ExtensionsUsers(user=[AUTHOR]),
    )
    xml = _serializer()
    bcfxml = BcfXml3.create_new(project_name, extensions, xml)
    for topic in topics:
        header = None
        if ifc_filename:
            header = mdl3.Header(files=mdl3.HeaderFiles(file=[mdl3.File(filename=ifc_filename, date=now)]))
        markup = mdl3.Markup(
            header=header,
            topic=mdl3.Topic(
                guid=topic.guid,
                title=topic.title,
                description=topic.description,
                topic_status=topic.status,
                topic_type=topic.topic_type,
                labels=mdl3.TopicLabels(label=list(topic.labels)) if topic.labels else None,
                creation_date=now,
                creation_author=AUTHOR,
            ),
        )
        # bcf-client's own create_new names the topic's folder with a plain Path, as here.
        handler = TopicHandler3(topic_dir=Path(topic.guid), xml_handler=xml)  # type: ignore[arg-type]
        handler.markup = markup
        handler.add_visinfo_handler(VisInfo3(_visinfo3(topic), xml_handler=xml))
        bcfxml.topics[topic.guid] = handler
    return bcfxml


def write_bcf(
    path: Path,
    topics: Sequence[BcfTopic],
    *,
    version: BcfVersion = "2.1",
    project_name: str = "ifcflow",
    ifc_filename: str | None = None,
) -> None:
    """Write ``topics`` as a BCF-XML ``version`` file at ``path``: one topic per ``BcfTopic`` with its
    GUID, status, type and labels, and one viewpoint selecting its elements (as IfcGuid components) with a
    perspective camera looking at its point. ``ifc_filename`` is named in each topic's header.

    Written to a temporary name beside ``path`` and renamed: whole or absent. Raises ValueError on a
    topic GUID that is not a UUID or appears twice."""
    _check(topics)
    # One serializer for the whole file: each one builds xsdata's class metadata anew, and a handler
    # left to make its own costs milliseconds per topic.
    now = XmlDateTime.from_datetime(datetime.datetime.now(datetime.UTC).replace(microsecond=0))
    bcfxml: BcfXml2 | BcfXml3
    if version == "2.1":
        bcfxml = _bcf2(topics, project_name, ifc_filename, now)
    elif version == "3.0":
        bcfxml = _bcf3(topics, project_name, ifc_filename, now)
    else:
        raise ValueError(f"BCF version {version!r} is not supported (2.1 or 3.0)")
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        bcfxml.save(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
