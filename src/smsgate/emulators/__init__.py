"""Local servers that speak each provider's wire contract (``smsgate emulate NAME``).

Which emulator belongs to which provider is declared on the provider class (its ``emulator``
attribute); the list here is read from those declarations, not kept by hand.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any


@cache
def emulators() -> dict[str, str]:
    """Provider scheme -> "module:Class" of its emulator, for every provider in this build."""
    from smsgate.providers import available_providers

    return {cls.scheme: cls.emulator for cls in available_providers() if cls.emulator}


def emulator_class(name: str) -> Any:
    """The emulator class of the provider ``name`` (its scheme); ``KeyError`` if it has none."""
    target = emulators().get(name)
    if target is None:
        raise KeyError(name)
    module, _, cls = target.partition(":")
    return getattr(import_module(module), cls)
