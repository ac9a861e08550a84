"""Request bodies of each operation: what a client sends, the job carries, and the service receives.

Field names are those of the RQ system ifcflow replaces, so its clients keep working unchanged.
Unknown fields are ignored for the same reason.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.operations import Operation
from contracts.paths import InputPath, OutputPath, suffix_of

# Formats the ifcopenshell.geom serializers of ifcopenshell 0.9 write, by output file extension. Not
# here: .gltf (0.9 only writes binary glTF, .glb), .xml, .h5, .ifc and .usd (no such serializer plug-in).
CONVERT_FORMATS = frozenset({"glb", "obj", "dae", "stp", "step", "igs", "iges", "svg", "ttl"})


class OperationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class IfcConvertRequest(OperationRequest):
    input_filename: InputPath
    output_filename: OutputPath = Field(description="extension chooses the format: .glb, .obj, .dae, ...")
    verbose: bool = True
    plan: bool = False
    model: bool = True
    weld_vertices: bool = False
    use_world_coords: bool = False
    convert_back_units: bool = False
    sew_shells: bool = False
    merge_boolean_operands: bool = False
    disable_opening_subtractions: bool = False
    bounds: str | None = Field(None, max_length=64)
    include: list[str] | None = Field(None, max_length=200, description="IFC classes to keep, e.g. IfcWall")
    exclude: list[str] | None = Field(None, max_length=200, description="IFC classes to drop")
    log_file: OutputPath | None = None

    @model_validator(mode="after")
    def _known_format(self) -> IfcConvertRequest:
        suffix = suffix_of(self.output_filename).lower().lstrip(".")
        if suffix not in CONVERT_FORMATS:
            raise ValueError(
                f"output_filename: unsupported format {suffix or '(none)'!r}; use one of {sorted(CONVERT_FORMATS)}"
            )
        return self


class ClashMode(StrEnum):
    intersection = "intersection"
    collision = "collision"
    clearance = "clearance"


class ClashFile(OperationRequest):
    file: InputPath
    selector: str | None = Field(None, max_length=2000)
    mode: Literal["e", "i", "a"] | None = "e"


class ClashSet(OperationRequest):
    name: str = Field(min_length=1, max_length=200)
    a: list[ClashFile] = Field(min_length=1, max_length=50)
    b: list[ClashFile] = Field(default_factory=list, max_length=50)


class IfcClashRequest(OperationRequest):
    clash_sets: list[ClashSet] = Field(min_length=1, max_length=50)
    output_filename: OutputPath
    tolerance: float = Field(0.01, ge=0)
    smart_grouping: bool = False
    max_cluster_distance: float = Field(5.0, gt=0)
    mode: ClashMode = ClashMode.intersection
    clearance: float = Field(0.0, ge=0)
    check_all: bool = False
    allow_touching: bool = False


class IfcCsvRequest(OperationRequest):
    filename: InputPath
    output_filename: OutputPath
    format: Literal["csv", "xlsx", "ods"] = "csv"
    delimiter: str = Field(",", min_length=1, max_length=1)
    null_value: str = Field("-", alias="null", max_length=32)
    query: str = Field("IfcProduct", min_length=1, max_length=2000)
    attributes: list[str] = Field(default_factory=lambda: ["Name", "Description"], max_length=500)


class IfcCsvImportRequest(OperationRequest):
    ifc_filename: InputPath
    csv_filename: InputPath
    output_filename: OutputPath | None = Field(None, description="default: <ifc name>_updated.ifc")

    @model_validator(mode="after")
    def _default_output(self) -> IfcCsvImportRequest:
        if self.output_filename is None:
            self.output_filename = f"{PurePosixPath(self.ifc_filename).stem}_updated.ifc"
        return self


class IfcTesterRequest(OperationRequest):
    ifc_filename: InputPath
    ids_filename: InputPath
    output_filename: OutputPath
    report_type: Literal["json", "html", "bcf"] = "json"


class IfcDiffRequest(OperationRequest):
    old_file: InputPath
    new_file: InputPath
    output_file: OutputPath = "diff.json"
    relationships: list[str] | None = Field(None, max_length=50)
    is_shallow: bool = True
    filter_elements: str | None = Field(None, max_length=2000)


class IFC2JSONRequest(OperationRequest):
    filename: InputPath
    output_filename: OutputPath


class IfcQtoRequest(OperationRequest):
    input_file: InputPath
    output_file: OutputPath | None = Field(None, description="default: <input name>_qto.ifc")

    @model_validator(mode="after")
    def _default_output(self) -> IfcQtoRequest:
        if self.output_file is None:
            self.output_file = f"{PurePosixPath(self.input_file).stem}_qto.ifc"
        return self


REQUEST_MODELS: dict[Operation, type[OperationRequest]] = {
    Operation.ifcconvert: IfcConvertRequest,
    Operation.ifcclash: IfcClashRequest,
    Operation.ifccsv: IfcCsvRequest,
    Operation.ifccsv_import: IfcCsvImportRequest,
    Operation.ifctester: IfcTesterRequest,
    Operation.ifcdiff: IfcDiffRequest,
    Operation.ifc2json: IFC2JSONRequest,
    Operation.calculate_qtos: IfcQtoRequest,
}
