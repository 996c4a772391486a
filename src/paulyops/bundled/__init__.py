"""The agents bundled with PaulyOps: one importable folder each, in the package format.

Each folder holds a ``manifest.toml`` (id ``paulyops.<name>``, the reserved prefix) and a
committed ``CHECKSUMS``; :mod:`paulyops.services.marketplace.bundled` finds and validates
them at every load. After editing an agent, regenerate its ``CHECKSUMS`` with
``paulyops package checksums DIR``.
"""
