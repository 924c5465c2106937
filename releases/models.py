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


class ReplayState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"


class Replay(models.Model):
    """Sending a function's captured failed requests (``captures``: their ids in the data plane's
    store, in order) straight to ``version``, once each; ``results`` holds one entry per capture
    (releases/services/replays.py), ``passed`` whether none still fails once finished."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="replays")
    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="+")
    captures = models.JSONField(default=list, blank=True)
    results = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=16, choices=ReplayState.choices, default=ReplayState.QUEUED)
    passed = models.BooleanField(null=True)
    summary = models.TextField(blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"replay {self.pk} ({self.state})"


class Rollout(models.Model):
    """Moving ``alias`` from ``from_version`` (A) to ``to_version`` (B) through ``weights`` (the %
    of the alias's calls B gets at each step, rising, the last 100).

    After a step's weights serve (its deployment is live) and ``interval_s`` has passed, B is
    judged on the calls of that window against A's in the same window (releases/judge.py). A step
    with fewer than ``min_calls`` calls to B waits, up to ``traffic_wait_s`` more, then rolls back.
    ``step`` is the index of the step in progress; ``decisions`` the log of every judgement.
    The engine (releases/services/rollouts.py: rollout_tick) changes a rollout only under its row lock."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="rollouts")
    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="rollouts")
    # CASCADE: a function's versions go with it (functions/services: function_delete), and its
    # rollouts and replays with them; a version is never deleted otherwise.
    from_version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="+")
    to_version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="+")
    weights = models.JSONField()
    interval_s = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(86400)])
    min_calls = models.PositiveIntegerField(default=20, validators=[MaxValueValidator(1_000_000)])
    traffic_wait_s = models.PositiveIntegerField(default=600, validators=[MaxValueValidator(86400)])
    # None disables a rule. Rates are fractions (0.05 = 5 %).
    max_error_rate = models.FloatField(null=True, blank=True, default=0.05)
    max_error_rate_increase = models.FloatField(null=True, blank=True, default=0.02)
    max_latency_ratio = models.FloatField(null=True, blank=True, default=2.0)
    # The gate before any traffic moves: B, deployed at 0 %, must pass a replay of the captured
    # failed requests (``replay``); ``gate_passed_at`` once it has.
    replay_first = models.BooleanField(default=False)
    replay = models.ForeignKey(Replay, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    gate_passed_at = models.DateTimeField(null=True, blank=True)
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
    def gating(self) -> bool:
        """True while the replay gate holds B at 0 %."""
        return self.replay_first and self.gate_passed_at is None

    @property
    def weight(self) -> int:
        """B's weight at the step in progress (or the last one reached); 0 while gating."""
        if self.gating:
            return 0
        weights: list[int] = self.weights
        return weights[min(self.step, len(weights) - 1)]
