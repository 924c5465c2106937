"""Data-plane backends. ``get_backend()`` returns the one PORTAL_BACKEND selects."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from django.conf import settings

from dataplane.backends.base import Backend

if TYPE_CHECKING:
    from dataplane.backends.k8s_adapter import KubeAdapter


def get_backend() -> Backend:
    if settings.PORTAL_BACKEND == "kubernetes":
        # Each backend is imported when chosen: the kubernetes client is a large import (about
        # 0.2 s and 38 MB here) that a process on the local backend never needs.
        from dataplane.backends.k8s import KubernetesBackend

        return KubernetesBackend(kube_adapter())
    # (see above)
    from dataplane.backends.local import LocalBackend

    return LocalBackend()


def kube_adapter() -> KubeAdapter:
    """The adapter for the configured cluster (KUBECONFIG, or in-cluster)."""
    return _adapter(settings.KUBECONFIG, settings.KUBERNETES_CONTEXT, settings.KUBERNETES_TIMEOUT_S)


@lru_cache(maxsize=4)
def _adapter(kubeconfig: str, context: str, timeout_s: int) -> KubeAdapter:
    """One adapter (and its connection pool) per configuration and process."""
    # Imported here for the reason given in get_backend().
    from dataplane.backends.k8s_adapter import KubeAdapter

    return KubeAdapter.from_config(kubeconfig=kubeconfig, context=context, timeout_s=float(timeout_s))
