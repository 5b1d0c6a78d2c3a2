"""Checking a config mapping against a frozen dataclass: known keys and types, one-line errors."""
from __future__ import annotations


def checked_fields(cls: type, d: dict | None, prefix: str = "") -> dict:
    """``d`` merged over ``cls``'s defaults as plain data (lists for tuples). An unknown key or a
    wrong type raises one ``ValueError`` line naming ``<prefix><field>``."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    base = OmegaConf.structured(cls)

    def writable(node) -> None:   # frozen dataclasses come read-only, all the way down
        OmegaConf.set_readonly(node, False)
        for k in (node.keys() if OmegaConf.is_dict(node) else range(len(node))):
            child = node._get_node(k)
            if OmegaConf.is_config(child):
                writable(child)

    writable(base)
    try:
        return OmegaConf.to_container(OmegaConf.merge(base, d or {}))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise ValueError(f"{prefix}{key}: {str(getattr(e, 'msg', e)).splitlines()[0]}") from None


def tuples(d: dict) -> dict:
    """Lists back to the tuples a frozen dataclass holds."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
