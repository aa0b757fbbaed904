"""The promotion rules: when a candidate may replace production, with a reason for every check.

With a production model, a candidate is promoted only if all of these hold:

* its accuracy gain is at least `min_accuracy_gain` and significant: the one-sided exact
  McNemar test on the discordant pairs has p < `alpha`;
* its macro-F1 drops by no more than `max_macro_f1_drop` (a gain bought on common classes at
  the cost of rare ones is not an improvement);
* no class and no camera with at least `min_slice_examples` images loses more than
  `slice_tolerance` of accuracy;
* its p95 per-request latency is within `max_p95_latency_ms`.

Small evaluation sets (fewer than `min_evaluation_examples` usable images) are judged by the
same rules, so a candidate is promoted only when its gain is significant even there, which
takes a large, lopsided gain; the decision then says "insufficient evaluation data (n=...)",
so a rejection for lack of data is never mistaken for a worse model.

Without a production model (bootstrap) the candidate is promoted if it passes a sanity check:
accuracy at least chance (1 / classes) plus `bootstrap_margin`, or no evaluation data yet, and
latency within budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from hone_gatekeeper.evaluation import Comparison, SliceScore


class GateRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the McNemar test.")
    min_accuracy_gain: float = Field(
        0.005, ge=0, le=1, description="Smallest accuracy gain worth a promotion (0.005 = 0.5 pt)."
    )
    max_macro_f1_drop: float = Field(0.01, ge=0, le=1, description="Largest macro-F1 loss allowed.")
    slice_tolerance: float = Field(
        0.03, ge=0, le=1, description="Largest accuracy loss allowed on any class or camera."
    )
    min_slice_examples: int = Field(
        50, ge=1, description="Slices with fewer images are too noisy to be checked."
    )
    max_p95_latency_ms: float = Field(
        1000.0, gt=0, description="Budget for the candidate's p95 latency of one request."
    )
    min_evaluation_examples: int = Field(
        200, ge=1, description="Below this, decisions say the evaluation data is insufficient."
    )
    bootstrap_margin: float = Field(
        0.10, ge=0, le=1, description="A first model must beat chance by this much."
    )


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    """Every check, passed or failed, in plain words; failures first."""


def _pt(value: float) -> str:
    return f"{value * 100:+.1f} pt"


def judge(comparison: Comparison | None, rules: GateRules, *, production: str | None) -> Verdict:
    """Decide on a candidate; `comparison` is None when there was no evaluation data at all."""
    if production is None:
        return _judge_bootstrap(comparison, rules)
    if comparison is None or comparison.examples == 0:
        return Verdict(
            False,
            [
                f"no usable evaluation data: a candidate is promoted over production "
                f"{production} only on the frozen test split"
            ],
        )
    failed: list[str] = []
    passed: list[str] = []
    _check_gain(comparison, rules, failed, passed)
    _check_slices("class", comparison.per_class, rules, failed, passed)
    _check_slices("camera", comparison.per_camera, rules, failed, passed)
    _check_latency(comparison, rules, failed, passed)
    notes = _small_set_note(comparison, rules)
    return Verdict(not failed, failed + notes + passed)


def _judge_bootstrap(comparison: Comparison | None, rules: GateRules) -> Verdict:
    head = "no production version yet: the first model is promoted if it passes a sanity check"
    if comparison is None or comparison.examples == 0:
        return Verdict(True, [head, "no evaluation data yet: promoted without a test"])
    failed: list[str] = []
    passed: list[str] = []
    chance = 1.0 / max(comparison.classes, 1)
    needed = chance + rules.bootstrap_margin
    numbers = (
        f"accuracy {comparison.candidate_accuracy:.3f} on {comparison.examples} images "
        f"vs chance {chance:.3f} + margin {rules.bootstrap_margin:.3f}"
    )
    (passed if comparison.candidate_accuracy >= needed else failed).append(numbers)
    _check_latency(comparison, rules, failed, passed)
    return Verdict(not failed, [head, *failed, *_small_set_note(comparison, rules), *passed])


def _check_gain(
    comparison: Comparison, rules: GateRules, failed: list[str], passed: list[str]
) -> None:
    gain = comparison.accuracy_delta
    test = comparison.mcnemar
    assert gain is not None
    assert test is not None
    assert comparison.production_accuracy is not None
    accuracy = (
        f"accuracy {comparison.candidate_accuracy:.3f} vs production "
        f"{comparison.production_accuracy:.3f} ({_pt(gain)}; needs {_pt(rules.min_accuracy_gain)})"
    )
    (passed if gain >= rules.min_accuracy_gain else failed).append(accuracy)
    significance = (
        f"McNemar exact p={test.p_value:.4g} (alpha {rules.alpha}): candidate alone right on "
        f"{test.candidate_only}, production alone right on {test.production_only}"
    )
    if test.p_value < rules.alpha:
        passed.append(significance)
    else:
        failed.append(f"improvement not significant: {significance}")
    f1_delta = comparison.macro_f1_delta
    assert f1_delta is not None
    f1 = (
        f"macro-F1 {comparison.candidate_macro_f1:.3f} vs {comparison.production_macro_f1:.3f} "
        f"({_pt(f1_delta)}; may drop at most {rules.max_macro_f1_drop * 100:.1f} pt)"
    )
    (passed if f1_delta >= -rules.max_macro_f1_drop else failed).append(f1)


def _check_slices(
    kind: str,
    slices: dict[str, SliceScore],
    rules: GateRules,
    failed: list[str],
    passed: list[str],
) -> None:
    checked = 0
    for name, score in slices.items():
        if score.delta is None or score.examples < rules.min_slice_examples:
            continue
        checked += 1
        if score.delta < -rules.slice_tolerance:
            failed.append(
                f"{kind} {name!r} accuracy {score.candidate:.3f} vs {score.production:.3f} "
                f"({_pt(score.delta)}, n={score.examples}) loses more than the "
                f"{rules.slice_tolerance * 100:.1f} pt tolerance"
            )
    skipped = sum(1 for s in slices.values() if s.examples < rules.min_slice_examples)
    passed.append(
        f"{kind} slices: {checked} checked (tolerance {rules.slice_tolerance * 100:.1f} pt), "
        f"{skipped} with fewer than {rules.min_slice_examples} images not checked"
    )


def _check_latency(
    comparison: Comparison, rules: GateRules, failed: list[str], passed: list[str]
) -> None:
    latency = comparison.candidate_latency
    if latency is None:
        return
    text = (
        f"p95 latency {latency.p95_ms:.0f} ms per request ({latency.requests} requests; "
        f"budget {rules.max_p95_latency_ms:.0f} ms)"
    )
    if latency.p95_ms <= rules.max_p95_latency_ms:
        passed.append(text)
    else:
        failed.append(f"too slow: {text}")


def _small_set_note(comparison: Comparison, rules: GateRules) -> list[str]:
    if comparison.examples >= rules.min_evaluation_examples:
        return []
    return [
        f"insufficient evaluation data (n={comparison.examples} < "
        f"{rules.min_evaluation_examples}): only a large, significant gain can be promoted"
    ]
