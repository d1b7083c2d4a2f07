"""Connecting to a Dask distributed cluster, for the stages that can run on one."""

from __future__ import annotations

from stemstore.errors import StemstoreError


def connect(address: str):
    """A ``distributed.Client`` for the scheduler at ``address``; an unreachable or malformed
    address is a one-line :class:`StemstoreError`."""
    from distributed import Client

    try:
        return Client(address, timeout="20s")
    except Exception as exc:
        raise StemstoreError(f"cannot connect to the Dask scheduler at {address}: {exc}") from exc
