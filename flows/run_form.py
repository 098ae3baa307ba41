"""A locked deployment's run form: only what a UI user may set, typed, run controls first.

Prefect builds a deployment's parameter schema from the flow's signature, so the UI's custom-run
form of a locked deployment showed the whole config (a hundred fields, every one refused if
changed) and `overrides` as a raw JSON box. The narrowed schema has the run controls (`cycle`,
`force`, stages, ...) at the top and `overrides` as a form of the allowed paths, each typed by
the config's own schema (durations, numbers, toggles) and pre-filled with the deployed value; a
wildcard path (`config.period.*`, `forecast_length_by_hour.*`) is an object of its fields, typed
where the schema types them, else a mapping. The config and the allowlist are not in the form:
Prefect merges a run's parameters over the deployment's, so they stay as deployed.
"""

from typing import Any

from flows.policy import LOCKED_PARAMETERS

CONFIG_PARAMETERS = ("pipeline", "ensemble", "forecast")
RUN_CONTROLS_FIRST = ("cycle", "force")


def narrowed_schema(schema: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any] | None:
    """The deployment's parameter schema narrowed to its allowed overrides; None if it is not locked."""
    allowed = parameters.get("allowed_overrides")
    config_name = next((name for name in CONFIG_PARAMETERS if name in parameters), None)
    if not allowed or config_name is None:
        return None
    definitions = schema.get("definitions", {})
    config_schema = schema["properties"][config_name]
    fields: dict[str, Any] = {}
    for pattern in allowed:
        wildcard = pattern.endswith(".*")
        path = pattern[:-2] if wildcard else pattern
        if any(char in path for char in "*?["):  # a glob inside the path: no single type
            fields[pattern] = {"title": pattern, "description": "any value (a glob of paths)"}
            continue
        node = _resolve(_schema_at(config_schema, path.split("."), definitions, parameters[config_name]), definitions)
        fields[path] = _wildcard_field(node, path) if wildcard else _leaf_field(node, path, parameters[config_name])
    controls = [name for name in schema["properties"] if name not in (*LOCKED_PARAMETERS, "overrides")]
    ordered = [*[n for n in RUN_CONTROLS_FIRST if n in controls], *[n for n in controls if n not in RUN_CONTROLS_FIRST]]
    properties = {
        name: {**_plain_optional(schema["properties"][name]), "position": i} for i, name in enumerate(ordered)
    }
    properties["overrides"] = {
        "title": "overrides",
        "description": "What this deployment lets a run change (its allowed_overrides); the rest is as deployed",
        "type": "object",
        "properties": fields,
        # dotted paths as the shell sends them (`config.period.duration`), where the allowlist matches
        "patternProperties": {_glob_regex(pattern): {} for pattern in allowed},
        "additionalProperties": False,
        "position": len(ordered),
    }
    return {
        "title": "Parameters",
        "type": "object",
        "properties": properties,
        "definitions": _used(definitions, properties),
    }


def _used(definitions: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """Only the definitions the form refers to, directly or through another definition.

    The API validates every run's parameters against this schema: with the config's 31
    definitions (52 KB) Prefect's validator took 0.3 s per run created, with none 8 ms.
    """
    used: dict[str, Any] = {}
    pending = [properties]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                name = ref.removeprefix("#/definitions/")
                if name not in used and name in definitions:
                    used[name] = definitions[name]
                    pending.append(definitions[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return used


def _glob_regex(pattern: str) -> str:
    """An allowed-overrides glob as a JSON-schema (ECMA 262) regular expression."""
    import re

    return "^" + "".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern) + "$"


def _leaf_field(node: dict[str, Any], path: str, config: Any) -> dict[str, Any]:
    """One allowed path, typed, pre-filled with the deployed value (submitting it unchanged changes nothing)."""
    field = _without_default(node)
    field["title"] = f"{node.get('title', path)} ({path})"
    deployed = _value_at(config, path.split("."))
    if deployed is not _MISSING:
        field["default"] = deployed
    return field


def _wildcard_field(node: dict[str, Any], path: str) -> dict[str, Any]:
    """The fields under `path.*`: typed where the schema types them (no defaults: what is left empty is unchanged)."""
    # titled by the field's name as pydantic titles fields (a model's own title is its class name: TimeRange)
    title = path.rsplit(".", 1)[-1].replace("_", " ").title()
    field: dict[str, Any] = {"title": f"{title} ({path}.*)", "type": "object"}
    if "properties" in node:
        field["properties"] = {name: _without_default(_plain_optional(sub)) for name, sub in node["properties"].items()}
        field["additionalProperties"] = False
    else:
        field["additionalProperties"] = node.get("additionalProperties", True)
    if "description" in node:
        field["description"] = node["description"]
    return field


def _plain_optional(node: dict[str, Any]) -> dict[str, Any]:
    """A field that is `X | None = None` (a run control, a wildcard's field) as a plain optional X:
    the form shows an empty date-time picker for `cycle` (left empty, the run omits it) instead of
    an X/None switch."""
    options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
    if node.get("default", 0) is not None or len(options) != 1 or len(node["anyOf"]) != 2:
        return node
    if "$ref" in options[0] or options[0].get("type") in ("object", "array"):
        return node  # structured: the switch says "not given" better than an empty editor
    return {**{k: v for k, v in node.items() if k not in ("anyOf", "default")}, **options[0]}


def _without_default(node: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in node.items() if key != "default"}


_MISSING = object()


def _value_at(config: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(config, dict) or part not in config:
            return _MISSING
        config = config[part]
    return config


def _resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """`node` with a `$ref` followed, and a nullable `anyOf [X, null]` with an object X opened."""
    while "$ref" in node:
        node = {**definitions[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1 and ("$ref" in options[0] or options[0].get("type") == "object"):
        inner = _resolve(options[0], definitions)
        return {**inner, **{k: v for k, v in node.items() if k not in ("anyOf", "default")}}
    return node


def _schema_at(node: dict[str, Any], parts: list[str], definitions: dict[str, Any], config: Any) -> dict[str, Any]:
    """The schema of the field at `parts` under `node` (a mapping of anything where untyped).

    A union with a discriminator (the model config: `model_type`) is followed into the branch
    the deployed `config` chose, so `config.config.settings.A_h` is typed as Veros types it."""
    for part in parts:
        node = _resolve(_chosen_branch(node, config), definitions)
        config = config.get(part) if isinstance(config, dict) else None
        if part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {"title": part}
    return node


def _chosen_branch(node: dict[str, Any], config: Any) -> dict[str, Any]:
    """The branch of a discriminated union that `config` names; `node` itself otherwise."""
    discriminator = node.get("discriminator") or {}
    chosen = config.get(discriminator.get("propertyName")) if isinstance(config, dict) else None
    ref = discriminator.get("mapping", {}).get(chosen) if isinstance(chosen, str) else None
    return {"$ref": ref} if ref else node


def flattened_overrides(overrides: dict[str, Any] | None, allowed: list[str] | None) -> dict[str, Any] | None:
    """The form's overrides as dotted paths: a wildcard path's object (`config.period: {duration: 2d}`)
    becomes its fields (`config.period.duration: 2d`); fields left empty (None) in it are unchanged."""
    if not overrides or not allowed:
        return overrides
    wildcards = {pattern[:-2] for pattern in allowed if pattern.endswith(".*")}
    flat: dict[str, Any] = {}
    for path, value in overrides.items():
        if path in wildcards and isinstance(value, dict):
            flat.update({f"{path}.{key}": item for key, item in value.items() if item is not None})
        else:
            flat[path] = value
    return flat
