"""IfcConvert's command-line options as request fields: the RQ system's ``IfcConvertRequest`` (one field
per IfcConvert 0.8 flag) beyond the few ifcflow had, with how each is carried out on ifcopenshell 0.9.

Most are ifcopenshell.geom settings of the same name ("mesher_linear_deflection" is the
"mesher-linear-deflection" setting), set only when given, so an absent flag means IfcConvert's default
as it did. The others are done another way (include/exclude types, threads, log format), have no
effect on what is written (``NO_EFFECT``: listed in the result's ``ignored_options``), or cannot be
done by ifcopenshell 0.9's Python API (``UNSUPPORTED``: a 422 naming the field).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, model_validator

Text = Field(None, max_length=500)


class ConvertFlags(BaseModel):
    """IfcConvert flags beyond ifcflow's own convert fields (``contracts.requests.IfcConvertRequest``)."""

    # --- command line ---------------------------------------------------------------------------------
    quiet: bool = False
    cache_file: str | None = Field(None, max_length=1024)
    stderr_progress: bool = False
    yes: bool = False
    no_progress: bool = False
    log_format: Literal["plain", "json"] | None = None

    # --- geometry -------------------------------------------------------------------------------------
    kernel: str | None = Field(None, max_length=64, description="geometry library: opencascade, cgal, ...")
    threads: int | None = Field(None, ge=1, le=1024)
    center_model: bool = False
    center_model_geometry: bool = False
    include_type: Literal["entities", "layers", "attribute"] | None = None
    include_plus: list[str] | None = Field(None, max_length=200)
    include_plus_type: Literal["entities", "layers", "attribute"] | None = None
    exclude_type: Literal["entities", "layers", "attribute"] | None = None
    exclude_plus: list[str] | None = Field(None, max_length=200)
    exclude_plus_type: Literal["entities", "layers", "attribute"] | None = None
    filter_file: str | None = Field(None, max_length=1024)
    default_material_file: str | None = Field(None, max_length=1024)
    exterior_only: str | None = Field(None, max_length=64)
    apply_default_materials: bool = False
    use_material_names: bool = False
    surface_colour: bool = False
    dimensionality: int | None = Field(None, ge=0, le=2)
    mesher_linear_deflection: float | None = Field(None, gt=0)
    mesher_angular_deflection: float | None = Field(None, gt=0)
    reorient_shells: bool = False
    length_unit: float | None = Field(None, gt=0)
    angle_unit: float | None = Field(None, gt=0)
    precision: float | None = Field(None, gt=0)
    precision_factor: float | None = Field(None, gt=0)
    layerset_first: bool = False
    enable_layerset_slicing: bool = False
    disable_boolean_result: bool = False
    boolean_attempt_2d: bool = False
    debug: bool = False
    no_wire_intersection_check: bool = False
    no_wire_intersection_tolerance: float | None = Field(None, ge=0)
    edge_arrows: bool = False
    unify_shapes: bool = False
    building_local_placement: bool = False
    site_local_placement: bool = False
    model_offset: str | None = Field(None, max_length=200, description="x;y;z")
    model_rotation: str | None = Field(None, max_length=200, description="quaternion x;y;z;w")
    context_ids: list[str] | None = Field(None, max_length=50)
    iterator_output: int | None = None
    no_normals: bool = False
    generate_uvs: bool = False
    validate_geometry: bool = Field(False, validation_alias=AliasChoices("validate_geometry", "validate"))
    element_hierarchy: bool = False
    force_space_transparency: float | None = Field(None, ge=0, le=1)
    keep_bounding_boxes: bool = False
    circle_segments: int | None = Field(None, ge=3, le=10_000)
    function_step_type: int | None = Field(None, ge=0, le=1)
    function_step_param: float | None = Field(None, gt=0)
    no_parallel_mapping: bool = False
    triangulation_type: int | None = Field(None, ge=0, le=1)

    # --- serialization: SVG ---------------------------------------------------------------------------
    scale: str | None = Field(None, max_length=200)
    center: str | None = Field(None, max_length=200)
    section_ref: str | None = Text
    elevation_ref: str | None = Text
    elevation_ref_guid: list[str] | None = Field(None, max_length=200)
    auto_section: bool = False
    auto_elevation: bool = False
    draw_storey_heights: str | None = Field(None, max_length=64)
    storey_height_line_length: float | None = Field(None, gt=0)
    svg_xmlns: bool = False
    svg_poly: bool = False
    svg_prefilter: bool = False
    svg_segment_projection: bool = False
    svg_write_poly: bool = False
    svg_project: bool = False
    svg_without_storeys: bool = False
    svg_no_css: bool = False
    door_arcs: bool = False
    section_height: float | None = None
    section_height_from_storeys: bool = False
    print_space_names: bool = False
    print_space_areas: bool = False
    space_name_transform: str | None = Text

    # --- serialization: naming and coordinates --------------------------------------------------------
    use_element_names: bool = False
    use_element_guids: bool = False
    use_element_step_ids: bool = False
    use_element_types: bool = False
    y_up: bool = False
    ecef: bool = False
    digits: int | None = Field(None, ge=1, le=17)
    base_uri: str | None = Text
    wkt_use_section: bool = False

    @model_validator(mode="after")
    def _supported(self) -> ConvertFlags:
        for name, reason in UNSUPPORTED.items():
            if getattr(self, name) not in (None, False):
                raise ValueError(f"{name}: not available with ifcopenshell 0.9 ({reason}); leave it out")
        for name in ("include_type", "include_plus_type", "exclude_type", "exclude_plus_type"):
            if getattr(self, name) == "layers":
                raise ValueError(f"{name}: 'layers' is not available with ifcopenshell 0.9; use entities or attribute")
        for name in ("model_offset", "model_rotation"):
            value = getattr(self, name)
            if value is not None:
                numbers(name, value, 4 if name == "model_rotation" else 3)
        return self


# Flags ifcopenshell 0.9's Python API cannot carry out, and why.
UNSUPPORTED: dict[str, str] = {
    "center_model": "it needs IfcConvert's two passes over the model",
    "center_model_geometry": "it needs IfcConvert's two passes over the model",
    "filter_file": "give include/exclude instead",
    "default_material_file": "no material file setting",
    "exterior_only": "no exterior-only setting",
    "iterator_output": "the output format chooses it",
}
# Flags that change nothing in what is written here: accepted, and named in the result.
NO_EFFECT: dict[str, str] = {
    "cache_file": "no geometry cache file (send cache: true for ifcflow's result cache)",
    "stderr_progress": "progress is always in the job status",
    "no_progress": "progress is always in the job status",
    "yes": "outputs are always overwritten",
}
# Flags that are ifcopenshell.geom settings by their own name (underscores as dashes), and the one that
# is not ("validate_geometry" is "validate").
SETTING_NAMES: dict[str, str] = {"validate_geometry": "validate"}
DIRECT_SETTINGS: tuple[str, ...] = (
    "apply_default_materials", "use_material_names", "surface_colour", "dimensionality",
    "mesher_linear_deflection", "mesher_angular_deflection", "reorient_shells", "length_unit", "angle_unit",
    "precision", "precision_factor", "layerset_first", "enable_layerset_slicing", "disable_boolean_result",
    "boolean_attempt_2d", "debug", "no_wire_intersection_check", "no_wire_intersection_tolerance", "edge_arrows",
    "unify_shapes", "building_local_placement", "site_local_placement", "no_normals", "generate_uvs",
    "validate_geometry", "element_hierarchy", "force_space_transparency", "keep_bounding_boxes", "circle_segments",
    "function_step_type", "function_step_param", "no_parallel_mapping", "triangulation_type", "scale", "center",
    "section_ref", "elevation_ref", "auto_section", "auto_elevation", "draw_storey_heights",
    "storey_height_line_length", "svg_xmlns", "svg_poly", "svg_prefilter", "svg_segment_projection",
    "svg_write_poly", "svg_project", "svg_without_storeys", "svg_no_css", "door_arcs", "section_height",
    "section_height_from_storeys", "print_space_names", "print_space_areas", "space_name_transform",
    "use_element_names", "use_element_guids", "use_element_step_ids", "use_element_types", "y_up", "ecef",
    "digits", "base_uri", "wkt_use_section",
)


def numbers(name: str, value: str, count: int) -> list[float]:
    """``"1;2;3"`` (or commas, or spaces) as floats; ``ValueError`` naming the field otherwise."""
    parts = [p for p in value.replace(",", ";").replace(" ", ";").split(";") if p]
    try:
        floats = [float(p) for p in parts]
    except ValueError:
        floats = []
    if len(floats) != count:
        raise ValueError(f"{name}: give {count} numbers separated by ';', e.g. {';'.join(['0'] * count)}")
    return floats
