"""Building one config section: a schema dataclass merged with the composed values, OmegaConf's errors turned into
``ConfigError``s that name the key, the value and the fix. The one step every group's validation shares."""

from __future__ import annotations

from dataclasses import fields

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from distillkit.errors import ConfigError


def build_section(group: str, schema: type, node: dict):
    """Merge ``node`` into ``schema`` and instantiate it, turning OmegaConf errors into ConfigErrors."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except MissingMandatoryValue as err:
        key = f"{group}.{err.full_key}"
        raise ConfigError(key, "???", "is required by this option but was not set.", f"add {key}=VALUE.") from None
    except ConfigKeyError as err:
        key = f"{group}.{err.key}"
        known = ", ".join(f.name for f in fields(schema))
        raise ConfigError(
            key,
            lookup(node, str(err.key)),
            f"is not a setting of {group}={node['name']}." if "name" in node else f"is not a setting of {group}.",
            f"check the spelling; valid keys are: {known}.",
        ) from None
    except ValidationError as err:
        key = f"{group}.{err.full_key}"
        expected = getattr(err.object_type, "__name__", None) or "the schema's type"
        raise ConfigError(
            key,
            lookup(node, str(err.full_key)),
            f"has the wrong type ({err.msg}).",
            f"give a value of the expected type (see {expected} in distillkit/config/).",
        ) from None
    except OmegaConfBaseException as err:
        raise ConfigError(group, None, f"could not be read: {err}", "check the overrides for this group.") from None


def lookup(node: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
