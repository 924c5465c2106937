"""The page's form to start a rollout: rules in percent for people, fractions for the service."""

from __future__ import annotations

import re
from typing import Any, cast

from django import forms

DEFAULT_WEIGHTS = "5, 25, 50, 100"
_CODE = re.compile(r"[1-5]([0-9]{2}|xx)", re.ASCII)  # a status or a class: 500, 5xx


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

    replay_first = forms.BooleanField(
        required=False,
        label="First replay the captured failed requests against the new version",
        help_text="deployed at 0% first; any still failing rolls back before a call moves",
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


class CaptureForm(forms.Form):
    codes = forms.CharField(
        required=False, max_length=200, initial="5xx",
        help_text='statuses or classes, e.g. "5xx, 429"; blank: capture nothing',
    )  # fmt: skip
    max_requests = forms.IntegerField(
        initial=50, min_value=1, max_value=1000, label="Keep at most (requests)"
    )
    max_body_bytes = forms.IntegerField(initial=65536, min_value=0, max_value=1024 * 1024,
                                        label="Of each body, at most (bytes)")  # fmt: skip

    def clean_codes(self) -> list[int | str]:
        words = [
            w.strip().lower() for w in self.cleaned_data["codes"].replace(" ", ",").split(",") if w.strip()
        ]
        bad = [w for w in words if not _CODE.fullmatch(w)]
        if bad:
            raise forms.ValidationError(f"Not a status or a class: {', '.join(bad)} (e.g. 500, 5xx).")
        return [int(w) if w.isdigit() else w for w in words]


class ReplayForm(forms.Form):
    version = forms.TypedChoiceField(coerce=int)

    def __init__(self, *args: Any, versions: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["version"]).choices = [(n, f"v{n}") for n in versions]
