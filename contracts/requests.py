"""Request bodies of each operation: what a client sends, the job carries, and the service receives.

Field names are those of the RQ system ifcflow replaces (ifcpipeline's ``shared/classes.py``), every
one of them, so its clients keep working unchanged; a field neither system knows is refused (422 naming
it) rather than silently ignored. Where ifcopenshell 0.9 cannot do what a field asks, the request is
refused naming it, or the result says how it was done instead.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.convert_fields import ConvertFlags
from contracts.operations import Operation
from contracts.paths import InputPath, OutputPath, suffix_of

# Formats the ifcopenshell.geom serializers of ifcopenshell 0.9 write, by output file extension. Not
# here: .gltf (0.9 only writes binary glTF, .glb), .xml, .h5, .ifc and .usd (no such serializer plug-in).
CONVERT_FORMATS = frozenset({"glb", "obj", "dae", "stp", "step", "igs", "iges", "svg", "ttl"})


# More keys than any request has (IfcConvert's ~110 fields and the job options): refused at once, with
# one error rather than one per unknown key (80,000 of them would take seconds to report).
MAX_KEYS = 256


class OperationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _not_too_many_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) > MAX_KEYS:
            raise ValueError(f"{len(data)} fields: more than any request has ({MAX_KEYS})")
        return data


class VersionPins(BaseModel):
    """Which version of each input a job reads, as ifcpipeline's ``VersionPinOptional`` (its
    ``shared.object_storage.pin_for``): ``input_version_ids[<name as in the request>]``, else
    ``input_version_id`` for the main input, else the latest when the job is submitted. A version is
    the sha256 an upload answered with (``version_id``). The gateway resolves them at submit: the job
    records ``input_version_ids`` for every input, keyed by its stored path, and reads those bytes
    whatever is uploaded under the same names later."""

    input_version_id: str | None = Field(None, max_length=200)
    input_version_ids: dict[str, str] | None = Field(None, max_length=64)
    input_audit_id: int | None = None

    @model_validator(mode="after")
    def _no_audit_pin(self) -> VersionPins:
        if self.input_audit_id is not None:
            raise ValueError("input_audit_id: ifcflow has no audit database; pin a version with input_version_id")
        return self


class IfcConvertRequest(OperationRequest, ConvertFlags, VersionPins):
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


class IfcClashRequest(OperationRequest, VersionPins):
    clash_sets: list[ClashSet] = Field(min_length=1, max_length=50)
    output_filename: OutputPath
    tolerance: float = Field(0.01, ge=0)
    smart_grouping: bool = False
    max_cluster_distance: float = Field(5.0, gt=0)
    mode: ClashMode = ClashMode.intersection
    clearance: float = Field(0.0, ge=0)
    check_all: bool = False
    allow_touching: bool = False
    previous: InputPath | None = Field(
        None, description="an earlier clash job's id or result (.json or .bcf): each clash is then new, "
        "persisting or resolved",
    )
    bcf_version: Literal["2.1", "3.0"] = Field("2.1", description="BCF-XML version of a .bcf output")


class _TableColumn(BaseModel):
    # ifccsv's own dicts: keys it does not read are passed over, as the RQ system let them through.
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=500, description="one of the attributes")


class CsvGroup(_TableColumn):
    type: Literal["GROUP", "CONCAT", "VARIES", "SUM", "AVERAGE", "MIN", "MAX"]
    varies_value: str = Field("VARIES", max_length=200, description="shown where a VARIES column differs")

    @field_validator("type", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class CsvSort(_TableColumn):
    order: Literal["ASC", "DESC"] = "ASC"

    @field_validator("order", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class CsvSummary(_TableColumn):
    type: Literal["SUM", "AVERAGE", "MIN", "MAX"]

    @field_validator("type", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class CsvFormat(_TableColumn):
    format: str = Field(min_length=1, max_length=2000, description="ifcopenshell format query, {{value}} the cell")


class IfcCsvRequest(OperationRequest, VersionPins):
    filename: InputPath
    output_filename: OutputPath
    format: Literal["csv", "xlsx", "ods"] = "csv"
    delimiter: str = Field(",", min_length=1, max_length=1)
    null_value: str = Field("-", alias="null", max_length=32)
    query: str = Field("IfcProduct", min_length=1, max_length=2000)
    attributes: list[str] = Field(default_factory=lambda: ["Name", "Description"], max_length=500)
    headers: list[str | None] | None = Field(None, max_length=500, description="column titles, by attribute")
    groups: list[CsvGroup] | None = Field(None, max_length=500)
    sort: list[CsvSort] | None = Field(None, max_length=500)
    summaries: list[CsvSummary] | None = Field(None, max_length=500)
    formatting: list[CsvFormat] | None = Field(None, max_length=500)
    include_global_id: bool = True

    @model_validator(mode="after")
    def _known_columns(self) -> IfcCsvRequest:
        columns = {*self.attributes, *(["GlobalId"] if self.include_global_id else [])}
        for name in ("groups", "sort", "summaries", "formatting"):
            for i, column in enumerate(getattr(self, name) or []):
                if column.name not in columns:
                    raise ValueError(f"{name}[{i}].name: {column.name!r} is not one of the attributes")
        if self.headers is not None and len(self.headers) > len(self.attributes):
            raise ValueError("headers: more titles than attributes")
        return self


class IfcCsvImportRequest(OperationRequest, VersionPins):
    ifc_filename: InputPath
    csv_filename: InputPath
    output_filename: OutputPath | None = Field(None, description="default: <ifc name>_updated.ifc")

    @model_validator(mode="after")
    def _default_output(self) -> IfcCsvImportRequest:
        if self.output_filename is None:
            self.output_filename = f"{PurePosixPath(self.ifc_filename).stem}_updated.ifc"
        return self


class IfcTesterRequest(OperationRequest, VersionPins):
    ifc_filename: InputPath
    ids_filename: InputPath
    output_filename: OutputPath
    report_type: Literal["json", "html", "bcf"] = "json"
    bcf_version: Literal["2.1", "3.0"] = Field("2.1", description="BCF-XML version of a bcf report")


# Report formats of /ifcvalidate, by output file extension.
VALIDATE_FORMATS = ("json", "html", "bcf")


class IfcValidateRequest(OperationRequest, VersionPins):
    """ifcflow's own (the RQ system had none): the model against its schema, and its EXPRESS rules."""

    ifc_filename: InputPath
    output_filename: OutputPath | None = Field(
        None, description="extension chooses the report: .json, .html or .bcf; default <ifc name>_validation.json"
    )
    rules: bool = Field(True, description="also check the schema's EXPRESS where-rules and functions (slower)")

    @model_validator(mode="after")
    def _known_format(self) -> IfcValidateRequest:
        if self.output_filename is None:
            self.output_filename = f"{PurePosixPath(self.ifc_filename).stem}_validation.json"
        suffix = suffix_of(self.output_filename).lower().lstrip(".")
        if suffix not in VALIDATE_FORMATS:
            known = ", ".join(VALIDATE_FORMATS)
            raise ValueError(f"output_filename: unsupported report format {suffix or '(none)'!r}; use one of {known}")
        return self


class IfcDiffRequest(OperationRequest, VersionPins):
    old_file: InputPath
    new_file: InputPath
    output_file: OutputPath = "diff.json"
    relationships: list[str] | None = Field(None, max_length=50)
    is_shallow: bool = True
    filter_elements: str | None = Field(None, max_length=2000)
    old_version_id: str | None = Field(None, max_length=200)
    new_version_id: str | None = Field(None, max_length=200)


class IFC2JSONRequest(OperationRequest, VersionPins):
    filename: InputPath
    output_filename: OutputPath


class IfcQtoRequest(OperationRequest, VersionPins):
    input_file: InputPath
    output_file: OutputPath | None = Field(None, description="default: <input name>_qto.ifc")

    @model_validator(mode="after")
    def _default_output(self) -> IfcQtoRequest:
        if self.output_file is None:
            self.output_file = f"{PurePosixPath(self.input_file).stem}_qto.ifc"
        return self


# Fields only the RQ system had: a job records them only when they differ from their default, so the
# common request stays as small on the queue as before they existed.
RQ_ONLY_FIELDS: frozenset[str] = frozenset(
    {*ConvertFlags.model_fields, *VersionPins.model_fields, "old_version_id", "new_version_id", "headers", "groups",
     "sort", "summaries", "formatting", "include_global_id"}
)

REQUEST_MODELS: dict[Operation, type[OperationRequest]] = {
    Operation.ifcconvert: IfcConvertRequest,
    Operation.ifcclash: IfcClashRequest,
    Operation.ifccsv: IfcCsvRequest,
    Operation.ifccsv_import: IfcCsvImportRequest,
    Operation.ifctester: IfcTesterRequest,
    Operation.ifcvalidate: IfcValidateRequest,
    Operation.ifcdiff: IfcDiffRequest,
    Operation.ifc2json: IFC2JSONRequest,
    Operation.calculate_qtos: IfcQtoRequest,
}

# ifcpipeline's ifcpatch and download endpoints: their models register themselves in REQUEST_MODELS.
import contracts.compat_requests  # noqa: E402,F401
