"""The RQ system's path forms (``/uploads/a.ifc``, ``/output/csv/x.csv``, ``/app/uploads/a.ifc``,
``s3://bucket/uploads/a.ifc``) map into the data directory, and nothing else gets out of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.files import input_candidates, output_path, resolve_input, resolve_output
from contracts.paths import check_relative_path


@pytest.mark.parametrize(
    "sent,mapped",
    [
        ("/uploads/model.ifc", "uploads/model.ifc"),  # the upload answer's file_path, the dropdowns
        ("/app/uploads/model.ifc", "uploads/model.ifc"),  # the node's formatFileName
        ("uploads/model.ifc", "uploads/model.ifc"),
        ("/output/csv/x.csv", "output/csv/x.csv"),  # results' output_path, the node's placeholders
        ("/output/ifcconvert/a.glb", "output/ifcconvert/a.glb"),
        ("/examples/Building-Architecture.ifc", "examples/Building-Architecture.ifc"),
        ("s3://ifcpipeline/uploads/model.ifc", "uploads/model.ifc"),  # an S3-mode answer's file_path
        ("s3://ifcpipeline/model.ifc", "model.ifc"),
        ("//uploads//./model.ifc", "uploads/model.ifc"),
        ("model.ifc", "model.ifc"),
    ],
)
def test_rq_path_forms_map_to_data_dir_relative_paths(sent: str, mapped: str) -> None:
    assert check_relative_path(sent) == mapped


@pytest.mark.parametrize(
    "sent",
    [
        "/etc/passwd",
        "/tmp/x.glb",
        "/app/secrets.ifc",
        "/uploads/../etc/passwd",
        "/output/../../x.glb",
        "s3://bucket/../x.ifc",
        "s3://bucket/",
        "s3:///uploads/a.ifc",
        "s3://bad bucket/uploads/a.ifc",
        "/uploads/a\\..\\b.ifc",
        "/uploads/a.ifc\x00",
    ],
)
def test_other_absolute_paths_and_traversal_are_refused(sent: str) -> None:
    with pytest.raises(ValueError):
        check_relative_path(sent)


def test_an_rq_output_kind_is_looked_for_below_the_service_that_wrote_it_first() -> None:
    candidates = input_candidates("output/csv/x.csv")
    assert candidates[:4] == [
        "output/csv/x.csv",
        "uploads/output/csv/x.csv",
        "output/ifccsv/csv/x.csv",
        "output/ifccsv/x.csv",
    ]
    assert "output/ifcconvert/csv/x.csv" in candidates  # then every other service
    # ifcflow's own output paths and plain names are not searched for elsewhere.
    assert input_candidates("output/ifccsv/x.csv") == ["output/ifccsv/x.csv", "uploads/output/ifccsv/x.csv"]
    assert input_candidates("model.ifc") == ["model.ifc", "uploads/model.ifc"]


@pytest.mark.parametrize(
    "rel,path",
    [
        ("a.glb", "output/ifcconvert/a.glb"),
        ("output/glb/a.glb", "output/ifcconvert/glb/a.glb"),  # the node's placeholder
        ("output/a.glb", "output/ifcconvert/a.glb"),
        ("output/ifcconvert/a.glb", "output/ifcconvert/a.glb"),
        ("uploads/a.glb", "output/ifcconvert/uploads/a.glb"),
    ],
)
def test_outputs_stay_below_the_services_folder(rel: str, path: str) -> None:
    assert output_path("ifcconvert", rel) == path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "uploads").mkdir(parents=True)
    (root / "output" / "ifccsv").mkdir(parents=True)
    (root / "uploads" / "model.ifc").write_text("ISO-10303-21;")
    (root / "output" / "ifccsv" / "x.csv").write_text("GlobalId\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("secret")
    (root / "output" / "ifccsv" / "link.csv").symlink_to(secret)
    return root


def test_rq_inputs_are_found_where_ifcflow_wrote_them(data: Path) -> None:
    assert resolve_input(data, check_relative_path("/uploads/model.ifc")) == "uploads/model.ifc"
    assert resolve_input(data, check_relative_path("/app/uploads/model.ifc")) == "uploads/model.ifc"
    assert resolve_input(data, check_relative_path("/output/csv/x.csv")) == "output/ifccsv/x.csv"
    assert resolve_input(data, check_relative_path("/output/ifccsv/x.csv")) == "output/ifccsv/x.csv"


def test_the_rq_lookups_still_refuse_links_out_of_the_data_dir(data: Path) -> None:
    assert resolve_input(data, check_relative_path("/output/csv/link.csv")) is None
    assert resolve_input(data, check_relative_path("/output/csv/missing.csv")) is None


def test_rq_outputs_are_written_below_the_services_folder(data: Path) -> None:
    assert resolve_output(data, "ifccsv", check_relative_path("/output/csv/new.csv")) == "output/ifccsv/csv/new.csv"
    assert resolve_output(data, "ifccsv", check_relative_path("/output/link.csv")) is None  # the link leads out
