"""The page's form to start a rollout: rules in percent for people, fractions for the service."""

from __future__ import annotations

from typing import Any, cast

from django import forms

DEFAULT_WEIGHTS = "5, 25, 50, 100"


class RolloutForm(forms.Form):
    alias = forms.ChoiceField()
    to_version = forms.TypedChoiceField(coerce=int, label="To version")
    weights = forms.CharField(initial=DEFAULT_WEIGHTS, max_length=100,
                              help_text="B's % at each step, rising, ending at 100")  # fmt: skip
    interval_s = forms.IntegerField(initial=300, min_value=1, max_value=86400, label="Step interval (s)")
    min_calls = forms.IntegerField(initial=20, min_value=0, max_value=1_000_000, label="Minimum calls to B")
    traffic_wait_s = forms.IntegerField(
        initial=600, min_value=0, max_value=86400, label="Wait for traffic (s)",
        help_text="after the interval, before failing for lack of calls",
    )  # fmt: skip
    max_error_rate = forms.FloatField(
        initial=5,
        min_value=0,
        max_value=100,
        required=False,
        label="Max error rate (%)",
        help_text="blank: off",
    )
    max_error_rate_increase = forms.FloatField(
        initial=2, min_value=0, max_value=100, required=False, label="Max error rate above A (points)",
        help_text="blank: off",
    )  # fmt: skip
    max_latency_ratio = forms.FloatField(
        initial=2,
        min_value=1,
        max_value=1000,
        required=False,
        label="Max p95 vs A (x)",
        help_text="blank: off",
    )

    def __init__(self, *args: Any, aliases: list[str], versions: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["alias"]).choices = [(name, name) for name in aliases]
        cast(forms.ChoiceField, self.fields["to_version"]).choices = [(n, f"v{n}") for n in versions]

    def clean_weights(self) -> list[int]:
        parts = [part.strip() for part in self.cleaned_data["weights"].replace(" ", ",").split(",")]
        try:
            return [int(part) for part in parts if part]
        except ValueError:
            raise forms.ValidationError("Whole numbers separated by commas, e.g. 5, 25, 50, 100.") from None

    def service_arguments(self) -> dict[str, Any]:
        """What rollout_start takes: the percents as fractions."""
        data = dict(self.cleaned_data)
        for name in ("max_error_rate", "max_error_rate_increase"):
            data[name] = None if data[name] is None else data[name] / 100
        return data
