"""Tenant-schema models of safe releases: a rollout moves an alias from version A to version B
in steps of traffic weight, judging B against A after each step (DESIGN.md section 5)."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from functions.models import Alias, Deployment, Function, Version


class RolloutState(models.TextChoices):
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"  # B took all the traffic: the alias points at B alone
    ROLLED_BACK = "rolled_back"  # a rule was breached (or B never got enough calls): back to A
    ABORTED = "aborted"  # stopped by a user: back to A


ACTIVE_STATES = (RolloutState.RUNNING, RolloutState.PAUSED)


class Rollout(models.Model):
    """Moving ``alias`` from ``from_version`` (A) to ``to_version`` (B) through ``weights`` (the %
    of the alias's calls B gets at each step, rising, the last 100).

    After a step's weights serve (its deployment is live) and ``interval_s`` has passed, B is
    judged on the calls of that window against A's in the same window (releases/judge.py). A step
    with fewer than ``min_calls`` calls to B waits, up to ``traffic_wait_s`` more, then rolls back.
    ``step`` is the index of the step in progress; ``decisions`` the log of every judgement.
    The engine (releases/services.py: rollout_tick) changes a rollout only under its row lock."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="rollouts")
    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="rollouts")
    from_version = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="+")
    to_version = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="+")
    weights = models.JSONField()
    interval_s = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(86400)])
    min_calls = models.PositiveIntegerField(default=20, validators=[MaxValueValidator(1_000_000)])
    traffic_wait_s = models.PositiveIntegerField(default=600, validators=[MaxValueValidator(86400)])
    # None disables a rule. Rates are fractions (0.05 = 5 %).
    max_error_rate = models.FloatField(null=True, blank=True, default=0.05)
    max_error_rate_increase = models.FloatField(null=True, blank=True, default=0.02)
    max_latency_ratio = models.FloatField(null=True, blank=True, default=2.0)
    state = models.CharField(max_length=16, choices=RolloutState.choices, default=RolloutState.RUNNING)
    step = models.PositiveSmallIntegerField(default=0)
    step_deployment = models.ForeignKey(
        Deployment, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    step_started_at = models.DateTimeField(null=True, blank=True)  # when the step's weights served
    next_check_at = models.DateTimeField(null=True, blank=True)
    decisions = models.JSONField(default=list, blank=True)
    reason = models.TextField(blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["alias"],
                condition=models.Q(state__in=["running", "paused"]),
                name="rollout_one_active_per_alias",
            )
        ]

    def __str__(self) -> str:
        return f"rollout {self.pk} ({self.state})"

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def weight(self) -> int:
        """B's weight at the step in progress (or the last one reached)."""
        weights: list[int] = self.weights
        return weights[min(self.step, len(weights) - 1)]
