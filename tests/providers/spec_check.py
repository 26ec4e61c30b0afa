"""Check JSON values against the small schema subset the spec excerpts under ``specs/`` use.

The excerpts keep only what the providers' own OpenAPI descriptions declare: objects with named
properties (any other key is a drift), arrays, enums, date-times, and ``$ref`` to a named schema.
A problem is reported with its JSON path, so a failing test says which field drifted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

_KINDS: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


def problems(
    value: Any, schema: dict[str, Any], schemas: dict[str, Any], path: str = "$"
) -> list[str]:
    """Every way ``value`` departs from ``schema``; empty when it fits.

    ``null`` fits any field: the excerpts' sources declare every field optional.
    """
    if "$ref" in schema:
        return problems(value, schemas[schema["$ref"]], schemas, path)
    if value is None:
        return []
    kind: str = schema["type"]
    # bool is an int in Python; the JSON kinds are distinct
    if not isinstance(value, _KINDS[kind]) or (isinstance(value, bool) and kind != "boolean"):
        return [f"{path}={value!r} is not {kind}"]
    checked: Any = value  # of the JSON kind the schema names, as just checked
    found: list[str] = []
    if "enum" in schema and checked not in schema["enum"]:
        found.append(f"{path}={checked!r} is not one of {schema['enum']}")
    if schema.get("format") == "date-time":
        try:
            datetime.fromisoformat(checked.replace("Z", "+00:00"))
        except ValueError:
            found.append(f"{path}={checked!r} is not an ISO 8601 date-time")
    if kind == "object" and "properties" in schema:
        declared = schema["properties"]
        found += [f"{path}.{name} is not declared" for name in checked if name not in declared]
        found += [
            f"{path}.{name} is required"
            for name in schema.get("required", ())
            if name not in checked
        ]
        for name, item in checked.items():
            if name in declared:
                found += problems(item, declared[name], schemas, f"{path}.{name}")
    if kind == "array" and "items" in schema:
        for i, item in enumerate(checked):
            found += problems(item, schema["items"], schemas, f"{path}[{i}]")
    return found
