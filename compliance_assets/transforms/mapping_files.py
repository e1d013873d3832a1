"""Source mapping files: where a mapping may come from, where its data may be, and reading one.

The mapping's location arrives through run config or the run tag `source_mapping`, so whoever can
launch a run chooses it; it is untrusted. A mapping is read only from the mappings folder
(SOURCE_MAPPINGS_DIR, LakeResource.source_mappings_dir; default: the repository's examples/ folder),
after resolving symbolic links; its data `path` (a file or glob per partition day with a {date} placeholder,
or, with `split_by`, one export covering many days) is relative to the landing area (LakeResource.landing)
and must stay inside it (no `..` segment; in a local landing folder every matched file, symbolic links
resolved, must be inside the landing folder). Error messages name the file, the line and the rule that
failed, never the file's contents (source column names are shown only when they look like names, else
masked with masked_excerpt).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

from contracts import load_contract
from resources.masking import masked_excerpt

_DATE_PLACEHOLDER = re.compile(r"\{date(?::([^}]+))?\}")

SOURCE_MAPPINGS_ENV = "SOURCE_MAPPINGS_DIR"
DEFAULT_MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "examples"
MAX_MAPPING_BYTES = 256 * 1024  # a mapping is a few dozen lines; a bigger file is not one

_PARENT_SEGMENT = re.compile(r"(^|[/\\{,:])\.\.($|[/\\},])")  # `..` as a path element, also in a {a,b} glob or a {date:..}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ()./%-]{0,39}$")


class SourceMappingError(ValueError):
    """A source mapping that cannot be applied; the message says what to fix (never quoting the file)."""


EVENT_TIME = "event_time"  # split_by: event_time


@dataclass(frozen=True)
class SourceMapping:
    name: str
    format: str
    path: str  # absolute data path or glob inside the landing area, with the {date} placeholder (none when split)
    options: dict[str, Any]
    columns: dict[str, dict[str, Any]]
    origin: str
    landing: str = ""  # the landing area the data path must stay in
    split_by: str | dict[str, Any] | None = None  # "event_time" or {column, format}: one export split into days

    def path_for(self, day: dt.date) -> str:
        return _DATE_PLACEHOLDER.sub(lambda m: day.strftime(m.group(1) or "%Y-%m-%d"), self.path)

    def split_spec(self) -> dict[str, Any]:
        """Where a split export's record date is read: event_time's mapping, or the split_by column and format."""
        return self.columns[EVENT_TIME] if self.split_by == EVENT_TIME else dict(self.split_by or {})

    def source_columns(self) -> list[str]:
        specs = [*self.columns.values(), *([self.split_by] if isinstance(self.split_by, dict) else [])]
        return sorted({spec["column"] for spec in specs if "column" in spec})


def shown_name(name: Any) -> str:
    """A key or column name for an error message: as is when it looks like a name, else masked."""
    text = str(name)
    if _PLAIN_NAME.match(text) and not re.search(r"\d{4}", text):
        return text
    return masked_excerpt(text, 20)


def shown_names(names) -> str:
    names = list(names)
    shown = ", ".join(shown_name(n) for n in names[:30])
    return shown + (f", … ({len(names)} in all)" if len(names) > 30 else "")


# Where a mapping may come from and where its data may be.

def mappings_dir(setting: str | Path | None = None) -> Path:
    """The folder source mappings are read from (symbolic links resolved): the setting
    (LakeResource.source_mappings_dir, from SOURCE_MAPPINGS_DIR), else the repository's examples/ folder."""
    return Path(setting or DEFAULT_MAPPINGS_DIR).resolve()


def resolve_mapping_path(path: str | Path, allowed: str | Path) -> Path:
    """The real path of a mapping file inside the mappings folder (a relative path is relative to it);
    anything else is refused before the file is opened."""
    allowed = Path(os.path.realpath(allowed))
    raw = str(path).strip()
    if not raw or "\x00" in raw:
        raise SourceMappingError(f"Source mapping path is empty or invalid; give a file in the mappings folder {allowed} ({SOURCE_MAPPINGS_ENV})")
    candidate = Path(raw) if os.path.isabs(raw) else allowed / raw
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(allowed):
        raise SourceMappingError(
            f"Source mapping {raw} is outside the mappings folder {allowed}: mappings are read only from there "
            f"(setting {SOURCE_MAPPINGS_ENV}, symbolic links resolved)"
        )
    if not real.is_file():
        raise SourceMappingError(f"Source mapping file not found: {raw} (looked in the mappings folder {allowed}, {SOURCE_MAPPINGS_ENV})")
    return real


def _local_landing(landing: str) -> str | None:
    """The local folder of a landing area, None for a remote URI (abfss://...)."""
    if landing.startswith("file:"):
        return urlsplit(landing).path
    return None if "://" in landing else landing


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder if folder.endswith("/") else folder + "/")


def data_pattern(path: str, landing: str, name: str = "") -> str:
    """The absolute data path (or glob) of a mapping's `path`: relative paths are relative to the landing
    area; the result must be inside it and have no `..` segment. Raises SourceMappingError otherwise."""
    who = f"Source mapping '{name}'" if name else "Source mapping"
    where = f"the landing area {landing} (LakeResource.landing)"
    if not landing:
        raise SourceMappingError(f"{who}: no landing area configured, so its data path cannot be checked")
    if "\x00" in path or _PARENT_SEGMENT.search(path):
        raise SourceMappingError(f"{who}: its data path {path} has a '..' segment; data paths must stay inside {where}")
    local = _local_landing(landing)
    if local is not None:
        if _SCHEME.match(path):
            raise SourceMappingError(f"{who}: its data path {path} is a URI; the landing area is a local folder, data must be inside {where}")
        full = os.path.normpath(path if os.path.isabs(path) else os.path.join(local, path))
        if not any(_inside(full, os.path.normpath(root)) for root in (local, os.path.realpath(local))):
            raise SourceMappingError(f"{who}: its data path {path} is outside {where}; use a path relative to the landing area")
        return full
    base = landing.rstrip("/")
    if "://" in path:
        full = path
    elif path.startswith("/"):
        raise SourceMappingError(f"{who}: its data path {path} is a local path; data must be inside {where}")
    else:
        full = f"{base}/{path}"
    if not full.startswith(base + "/"):
        raise SourceMappingError(f"{who}: its data path {path} is outside {where}; use a path relative to the landing area")
    return full


def check_matched_files(mapping: SourceMapping, files: list[str]) -> None:
    """In a local landing folder: every matched file, and every entry of a matched folder, must really be
    inside the landing folder once symbolic links are resolved."""
    local = _local_landing(mapping.landing)
    if local is None:
        return
    root = os.path.realpath(local)

    def refuse(entry: str):
        return SourceMappingError(
            f"Source mapping '{mapping.name}': {entry} resolves outside the landing area {mapping.landing} "
            "(a symbolic link?); data is read only from inside the landing area (LakeResource.landing)"
        )

    for file in files:
        if not _inside(os.path.realpath(file), root):
            raise refuse(file)
        if os.path.isdir(file):
            for folder, dirs, names in os.walk(file):
                for entry in (*dirs, *names):
                    if not _inside(os.path.realpath(os.path.join(folder, entry)), root):
                        raise refuse(os.path.join(folder, entry))


# Reading the mapping file.

class _Refused(Exception):
    def __init__(self, what: str, mark) -> None:
        super().__init__(what)
        self.what, self.line = what, (mark.line + 1 if mark is not None else None)


class _MappingLoader(yaml.SafeLoader):
    """Safe YAML without aliases (no exponential expansion) and without repeated keys (no silent 'last wins')."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _Refused("uses a YAML alias (*name); aliases are not allowed in a mapping", self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if repeated:
                    raise _Refused("repeats a key (each key may appear once per block)", key_node.start_mark)
        return super().construct_mapping(node, deep)


def _json_type(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (str, "a string"), ((int, float), "a number"), (dict, "a set of keys"), (list, "a list")):
        if isinstance(value, kind):
            return name
    return "empty" if value is None else "something else"


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors to report for one schema error: for a oneOf/anyOf, those of the alternative whose type fits."""
    if not error.context:
        return [error]
    branches: dict[int, list] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [subs for _, subs in sorted(branches.items()) if not any(s.validator == "type" and not s.relative_path for s in subs)]
    if len(fitting) != 1:
        return [error]
    return [leaf for sub in fitting[0] for leaf in _leaves(sub)]


def describe_schema_error(error: jsonschema.ValidationError) -> str:
    """`at '<key path>': <rule>`, from the schema's side only: never the offending value (jsonschema's own
    message quotes it, and for a file that is not a mapping that value is the file)."""
    where = "/".join(shown_name(p) for p in error.absolute_path) or "(top)"
    rule, expected, instance = error.validator, error.validator_value, error.instance
    if rule == "type":
        allowed = expected if isinstance(expected, list) else [expected]
        what = f"must be of type {' or '.join(allowed)}, not {_json_type(instance)}"
    elif rule == "enum":
        what = f"must be one of {', '.join(map(str, expected))}"
    elif rule == "const":
        what = f"must be {expected}"
    elif rule == "pattern":
        what = f"does not have the required form (pattern {expected})"
    elif rule == "required":
        missing = [k for k in expected if not isinstance(instance, dict) or k not in instance]
        what = f"misses the required key(s) {', '.join(missing)}"
    elif rule == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        what = "has key(s) that are not allowed here" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    elif rule == "maxProperties":
        what = f"has more than {expected} entries (at most {expected} allowed)"
    elif rule == "minProperties":
        what = f"needs at least {expected} entr{'y' if expected == 1 else 'ies'}"
    elif rule in ("maxLength", "maxItems"):
        what = f"is longer than {expected} {'characters' if rule == 'maxLength' else 'items'}"
    elif rule in ("minimum", "minLength"):
        what = f"must be at least {expected}" + (" characters long" if rule == "minLength" else "")
    elif rule == "maximum":
        what = f"must be at most {expected}"
    elif rule in ("oneOf", "anyOf"):
        what = "matches none (or more than one) of the allowed forms"
    else:
        what = f"breaks the schema rule '{rule}'"
    return f"at '{where}': {what} ({rule})"


def load_mapping(path: str | Path, *, landing: str, folder: str | Path | None = None) -> SourceMapping:
    """Read and check a mapping file from the mappings folder `folder` (default: mappings_dir()), its data path
    resolved inside the landing area `landing`; raise SourceMappingError with a precise message if anything is wrong."""
    shown = str(path).strip()
    real = resolve_mapping_path(path, folder if folder is not None else mappings_dir())
    with open(real, "rb") as handle:
        data = handle.read(MAX_MAPPING_BYTES + 1)
    if len(data) > MAX_MAPPING_BYTES:
        raise SourceMappingError(f"Source mapping {shown} is larger than {MAX_MAPPING_BYTES // 1024} KiB: not a source mapping")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceMappingError(f"Source mapping {shown} is not UTF-8 text: not a source mapping") from None
    try:
        raw = yaml.load(text, Loader=_MappingLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as exc:
        raise SourceMappingError(f"Source mapping {shown} {exc.what}: line {exc.line}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise SourceMappingError(f"Source mapping {shown} is not valid YAML{where}") from None
    except (yaml.YAMLError, RecursionError):
        raise SourceMappingError(f"Source mapping {shown} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise SourceMappingError(
            f"Source mapping {shown} is not a source mapping: its top level is {_json_type(raw)}, not the keys name, format, path, columns"
        )
    schema = load_contract("source_mapping")
    errors = [leaf for e in jsonschema.Draft202012Validator(schema).iter_errors(raw) for leaf in _leaves(e)]
    if errors:
        errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
        details = "; ".join(describe_schema_error(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise SourceMappingError(f"Source mapping {shown} is invalid: {details}{more}")
    contract = load_contract("transactions")
    unknown = sorted(set(raw["columns"]) - set(contract["properties"]))
    if unknown:
        raise SourceMappingError(
            f"Source mapping {shown} maps unknown contract fields [{shown_names(unknown)}]; the transactions contract has: {', '.join(contract['properties'])}"
        )
    missing = [f for f in contract["required"] if f not in raw["columns"]]
    if missing:
        raise SourceMappingError(f"Source mapping {shown} does not map required contract fields {missing}")
    split_by = raw.get("split_by")
    if split_by is not None and _DATE_PLACEHOLDER.search(raw["path"]):
        raise SourceMappingError(
            f"Source mapping {shown} is invalid: with split_by its path names the export itself (a file or glob read once "
            "per run), so it may not have a {date} placeholder"
        )
    columns = {field: ({"column": spec} if isinstance(spec, str) else dict(spec)) for field, spec in raw["columns"].items()}
    if split_by == EVENT_TIME and EVENT_TIME not in columns:
        raise SourceMappingError(f"Source mapping {shown} splits by event_time but does not map event_time")
    file_path = data_pattern(raw["path"], landing, raw["name"])
    split = dict(split_by) if isinstance(split_by, dict) else split_by
    return SourceMapping(raw["name"], raw["format"], file_path, dict(raw.get("options", {})), columns, str(real), landing, split)
