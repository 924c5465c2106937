"""Data-plane backends. ``get_backend()`` returns the one PORTAL_BACKEND selects."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from django.conf import settings

from functions.backends.base import Backend

if TYPE_CHECKING:
    from functions.backends.k8s_adapter import KubeAdapter


def get_backend() -> Backend:
    if settings.PORTAL_BACKEND == "kubernetes":
        from functions.backends.k8s import KubernetesBackend

        return KubernetesBackend(kube_adapter())
    from functions.backends.local import LocalBackend

    return LocalBackend()


def kube_adapter() -> KubeAdapter:
    """The adapter for the configured cluster (KUBECONFIG, or in-cluster)."""
    return _adapter(settings.KUBECONFIG, settings.KUBERNETES_CONTEXT, settings.KUBERNETES_TIMEOUT_S)


@lru_cache(maxsize=4)
def _adapter(kubeconfig: str, context: str, timeout_s: int) -> KubeAdapter:
    """One adapter (and its connection pool) per configuration and process."""
    from functions.backends.k8s_adapter import KubeAdapter

    return KubeAdapter.from_config(kubeconfig=kubeconfig, context=context, timeout_s=float(timeout_s))
