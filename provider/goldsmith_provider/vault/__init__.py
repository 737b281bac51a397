"""HashiCorp Vault KV v2 lookups: references in the spec (``refs``), read at build time (``client``)."""

from .refs import VaultSecret, VaultSettings, reference_problems

__all__ = ["VaultSecret", "VaultSettings", "reference_problems"]
