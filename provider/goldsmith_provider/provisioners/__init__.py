"""Provisioners: the same list runs on every builder through the communicator interface.

Each provisioner is a frozen spec dataclass (its settings table) with a ``provision(comm, pctx)``
method. ``Provisioner`` is the tagged union the spec parser understands (by the ``type`` key).
"""

from __future__ import annotations

from typing import Union

from .base import ProvisionContext
from .file import FileProvisioner
from .packages import PackagesProvisioner, UpdatesProvisioner
from .shell import ShellProvisioner

Provisioner = Union[ShellProvisioner, FileProvisioner, UpdatesProvisioner, PackagesProvisioner]

__all__ = ["Provisioner", "ProvisionContext", "ShellProvisioner", "FileProvisioner",
           "UpdatesProvisioner", "PackagesProvisioner"]
