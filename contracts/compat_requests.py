"""Request bodies of ifcpipeline's ifcpatch and download endpoints, with its field names and defaults.

Imported by ``contracts.requests`` (last lines), which registers them in ``REQUEST_MODELS``; importing
this module first works too (the registration is here, at the end).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, field_validator

from contracts.operations import Operation
from contracts.paths import InputPath, OutputPath
from contracts.requests import REQUEST_MODELS, OperationRequest, VersionPins

RECIPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_MAX_ARGUMENT_CHARS = 100_000
# What a name in uploads/ may not hold: path parts, and what ifcpipeline refused (shell metacharacters).
_BAD_NAME_CHARS = frozenset('/\\\x00;|`$&')


class IfcPatchRequest(OperationRequest, VersionPins):
    """ifcpipeline's ``IfcPatchRequest``: a recipe of ifcpatch (or a custom one) with positional arguments."""

    input_file: InputPath = Field(description="the IFC model to patch")
    output_file: OutputPath = Field(description="written to output/ifcpatch/")
    recipe: str = Field(description="an ifcpatch recipe (POST /patch/recipes/list), e.g. ExtractElements")
    arguments: list[Any] = Field(default_factory=list, max_length=50,
                                 description="the recipe's arguments, in order; strings are converted to the "
                                             "parameter's type ('1.5' for a float)")
    use_custom: bool = Field(False, description="run the custom recipe of that name (IFCFLOW_IFCPATCH_RECIPE_DIR)")

    @field_validator("recipe")
    @classmethod
    def _recipe_name(cls, value: str) -> str:
        if not RECIPE_NAME.match(value):
            raise ValueError("must be a recipe name: letters, digits and '_' (e.g. ExtractElements)")
        return value

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments(cls, value: Any) -> Any:
        if value is None:  # ifcpipeline's Optional[List] default
            return []
        if isinstance(value, list):
            for i, item in enumerate(value):
                if len(repr(item)) > _MAX_ARGUMENT_CHARS:
                    raise ValueError(f"argument {i} is longer than {_MAX_ARGUMENT_CHARS} characters")
        return value


class IfcPatchRecipesRequest(OperationRequest):
    """ifcpipeline's ``IfcPatchListRecipesRequest``."""

    include_custom: bool = Field(True, description="list the custom recipes (IFCFLOW_IFCPATCH_RECIPE_DIR)")
    include_builtin: bool = Field(True, description="list ifcpatch's own recipes")


def check_stored_name(value: str) -> str:
    """A file name for ``uploads/``: one plain name, as ifcpipeline allowed (spaces and Unicode too)."""
    name = value.strip()
    if not name or name in (".", "..") or name.startswith("."):
        raise ValueError("must be a file name, not empty and not starting with '.'")
    if any(c in _BAD_NAME_CHARS for c in name) or any(ord(c) < 32 for c in name):
        raise ValueError("must be one file name, without '/', '\\', control or shell characters (;|`$&)")
    if len(name.encode()) > 255:
        raise ValueError("must be at most 255 bytes long")
    return name


class DownloadUrlRequest(OperationRequest):
    """ifcpipeline's ``DownloadUrlRequest``: fetch a URL into ``uploads/``."""

    url: str = Field(min_length=1, max_length=2000, description="http(s) URL of the file")
    output_filename: str | None = Field(None, description="name in uploads/; default: the URL's last path part")
    # ifcpipeline skips a download whose upstream version it audited before (object storage only); ifcflow
    # downloads anyway and returns the tag in the result.
    source_etag: str | None = Field(None, max_length=500, validation_alias=AliasChoices("source_etag", "versionId"))

    @field_validator("output_filename")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_stored_name(value)

    def stored_name(self) -> str:
        """The name the file gets in ``uploads/``; ``ValueError`` when the URL gives no usable one."""
        if self.output_filename:
            return self.output_filename
        base = PurePosixPath(unquote(urlsplit(self.url).path)).name
        return check_stored_name(base or "download")


REQUEST_MODELS.update({
    Operation.ifcpatch: IfcPatchRequest,
    Operation.ifcpatch_recipes: IfcPatchRecipesRequest,
    Operation.download_from_url: DownloadUrlRequest,
})
