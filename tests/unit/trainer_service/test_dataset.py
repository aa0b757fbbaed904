"""The dataset's rules: splits by hash, label resolution, propagation, the training-set filter."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hone_trainer.dataset import (
    Member,
    Row,
    SplitLeak,
    Vote,
    assert_no_test,
    choose_classes,
    examples_sha256,
    plan_examples,
    resolve,
    split_for,
    training_set,
)
from hone_trainer.settings import DatasetSettings, SplitShares

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def vote(seq: int, verdict: str = "label", label: str | None = "cat", **kw: object) -> Vote:
    return Vote(
        seq=seq,
        occurred_at=kw.pop("at", T0 + timedelta(seconds=seq)),  # type: ignore[arg-type]
        verdict=verdict,  # type: ignore[arg-type]
        label=label,
        labeler_id=str(kw.pop("by", "ann")),
        **kw,  # type: ignore[arg-type]
    )


# --- splits ---------------------------------------------------------------------------------


def test_an_image_always_gets_the_same_split_whoever_asks_and_in_any_order() -> None:
    shares = SplitShares()
    ids = [uuid.uuid4() for _ in range(500)]
    first = [split_for(i, shares) for i in ids]
    again = [split_for(i, SplitShares()) for i in reversed(ids)]
    assert first == list(reversed(again))


def test_splits_follow_the_configured_shares() -> None:
    shares = SplitShares(train=0.7, weakness=0.1, test=0.2)
    counts = Counter(split_for(uuid.uuid4(), shares) for _ in range(20_000))
    assert counts["train"] / 20_000 == pytest.approx(0.7, abs=0.015)
    assert counts["weakness"] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert counts["test"] / 20_000 == pytest.approx(0.2, abs=0.015)


def test_a_zero_share_split_gets_no_image() -> None:
    shares = SplitShares(train=0.8, weakness=0.0, test=0.2)
    assert "weakness" not in {split_for(uuid.uuid4(), shares) for _ in range(2000)}


def test_another_salt_redraws_the_assignment() -> None:
    ids = [uuid.uuid4() for _ in range(200)]
    a = [split_for(i, SplitShares()) for i in ids]
    b = [split_for(i, SplitShares(salt="other")) for i in ids]
    assert a != b


def test_shares_that_do_not_add_up_to_one_are_refused() -> None:
    with pytest.raises(ValueError, match="add up to 1"):
        SplitShares(train=0.7, weakness=0.2, test=0.2)


# --- label resolution -----------------------------------------------------------------------


def test_the_latest_human_answer_wins() -> None:
    resolution = resolve([vote(1, label="cat"), vote(3, label="fox"), vote(2, label="dog")])
    assert resolution is not None
    assert (resolution.kind, resolution.label) == ("human", "fox")


def test_an_answer_redone_after_an_undo_supersedes_the_first() -> None:
    # Undo publishes nothing; the next answer to the task is a new, later event.
    resolution = resolve([vote(1, label="cat", by="ann"), vote(2, label="dog", by="ann")])
    assert resolution is not None
    assert resolution.label == "dog"


def test_events_with_the_same_time_are_ordered_by_arrival() -> None:
    votes = [vote(1, label="cat", at=T0), vote(2, label="dog", at=T0)]
    resolution = resolve(votes)
    assert resolution is not None
    assert resolution.label == "dog"


def test_an_ambiguous_latest_answer_keeps_the_image_out_of_training() -> None:
    resolution = resolve([vote(1, label="cat"), vote(2, "ambiguous", None)])
    assert resolution is not None
    assert (resolution.kind, resolution.label) == ("ambiguous", None)


def test_wrong_with_a_class_counts_as_that_class() -> None:
    resolution = resolve([vote(1, "wrong", "dog")])
    assert resolution is not None
    assert (resolution.kind, resolution.label) == ("human", "dog")


def test_wrong_without_a_class_is_a_flag_not_a_label() -> None:
    assert resolve([vote(1, "wrong", None)]) is None
    # ... and it does not undo an earlier answer either.
    resolution = resolve([vote(1, label="cat"), vote(2, "wrong", None)])
    assert resolution is not None
    assert resolution.label == "cat"


def test_propagated_events_are_not_human_answers() -> None:
    assert resolve([vote(1, label="cat", source="propagated")]) is None


def test_consensus_needs_that_many_agreeing_labelers() -> None:
    one = [vote(1, label="cat", by="ann")]
    assert resolve(one, consensus=2) is None
    same_person_twice = [*one, vote(2, label="cat", by="ann")]
    assert resolve(same_person_twice, consensus=2) is None
    two = [*one, vote(2, label="cat", by="bob")]
    resolution = resolve(two, consensus=2)
    assert resolution is not None
    assert resolution.label == "cat"


def test_consensus_counts_each_labelers_latest_answer_once() -> None:
    votes = [
        vote(1, label="cat", by="ann"),
        vote(2, label="cat", by="bob"),
        vote(3, label="dog", by="ann"),  # ann changed her mind
    ]
    assert resolve(votes, consensus=2) is None
    resolution = resolve([*votes, vote(4, label="dog", by="cy")], consensus=2)
    assert resolution is not None
    assert resolution.label == "dog"


# --- examples and propagation ---------------------------------------------------------------


def member(
    split: str = "train",
    votes: tuple[Vote, ...] = (),
    object_id: str | None = "obj-1",
    at: datetime = T0,
) -> Member:
    return Member(uuid.uuid4(), split, at, object_id, votes)  # type: ignore[arg-type]


def test_a_label_propagates_to_train_views_of_the_same_object_with_a_lower_weight() -> None:
    source = member("test", (vote(1, label="cat"),))
    target = member("train", at=T0 + timedelta(seconds=30))
    plan = plan_examples([source, target], DatasetSettings(propagation_weight=0.5))
    example = plan[target.image_id]
    assert example is not None
    assert (example.kind, example.label, example.weight) == ("propagated", "cat", 0.5)
    assert example.propagated_from == source.image_id
    source_example = plan[source.image_id]
    assert source_example is not None
    assert source_example.kind == "human"


def test_a_human_answer_overrides_a_propagated_label() -> None:
    source = member("train", (vote(1, label="cat"),))
    target = member("train", (vote(2, label="dog", by="bob"),))
    plan = plan_examples([source, target], DatasetSettings())
    example = plan[target.image_id]
    assert example is not None
    assert (example.kind, example.label) == ("human", "dog")


@pytest.mark.parametrize("split", ["weakness", "test"])
def test_no_label_propagates_into_weakness_or_test(split: str) -> None:
    source = member("train", (vote(1, label="cat"),))
    target = member(split)
    assert plan_examples([source, target], DatasetSettings())[target.image_id] is None


def test_nothing_propagates_outside_the_time_window_or_across_objects() -> None:
    source = member("train", (vote(1, label="cat"),))
    late = member("train", at=T0 + timedelta(hours=2))
    other = member("train", object_id="obj-2")
    plan = plan_examples([source, late, other], DatasetSettings(propagation_window_seconds=300))
    assert plan[late.image_id] is None
    assert plan[other.image_id] is None


def test_views_labelled_differently_propagate_nothing() -> None:
    a = member("train", (vote(1, label="cat"),))
    b = member("train", (vote(2, label="dog", by="bob"),))
    target = member("train")
    assert plan_examples([a, b, target], DatasetSettings())[target.image_id] is None


def test_an_image_called_ambiguous_gets_no_propagated_label() -> None:
    source = member("train", (vote(1, label="cat"),))
    target = member("train", (vote(2, "ambiguous", None, by="bob"),))
    example = plan_examples([source, target], DatasetSettings())[target.image_id]
    assert example is not None
    assert example.kind == "ambiguous"


def test_a_zero_propagation_weight_turns_propagation_off() -> None:
    source = member("train", (vote(1, label="cat"),))
    target = member("train")
    assert (
        plan_examples([source, target], DatasetSettings(propagation_weight=0))[target.image_id]
        is None
    )


def test_a_propagated_event_from_elsewhere_is_used_only_for_train_images() -> None:
    outside = (vote(1, label="cat", source="propagated"),)
    train_image = member("train", outside, object_id=None)
    test_image = member("test", outside, object_id=None)
    plan = plan_examples([train_image, test_image], DatasetSettings())
    example = plan[train_image.image_id]
    assert example is not None
    assert example.kind == "propagated"
    assert plan[test_image.image_id] is None


votes_strategy = st.lists(
    st.builds(
        lambda seq, verdict, label, by: vote(
            seq, verdict, None if verdict == "ambiguous" else label, by=by
        ),
        st.integers(0, 50),
        st.sampled_from(["label", "ambiguous", "wrong"]),
        st.sampled_from(["cat", "dog", None]),
        st.sampled_from(["ann", "bob"]),
    ).filter(lambda v: v.verdict != "label" or v.label is not None),
    max_size=3,
)
groups = st.lists(
    st.tuples(
        st.sampled_from(["train", "weakness", "test"]),
        votes_strategy,
        st.sampled_from(["obj-1", "obj-2", None]),
        st.integers(0, 600),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(groups, st.integers(1, 2))
def test_propagation_never_reaches_weakness_or_test_whatever_the_group(
    spec: list[tuple[str, list[Vote], str | None, int]], consensus: int
) -> None:
    members = [
        Member(uuid.uuid4(), split, T0 + timedelta(seconds=s), obj, tuple(votes))  # type: ignore[arg-type]
        for split, votes, obj, s in spec
    ]
    plan = plan_examples(members, DatasetSettings(consensus=consensus))
    by_id = {m.image_id: m for m in members}
    for image_id, example in plan.items():
        if example is None:
            continue
        assert example.split == by_id[image_id].split
        if example.kind == "propagated":
            assert example.split == "train"
            assert resolve(by_id[image_id].votes, consensus) is None  # humans always win


# --- the training set -----------------------------------------------------------------------


def row(split: str, kind: str = "human", label: str = "cat") -> Row:
    return Row(
        uuid.uuid4(),
        split,  # type: ignore[arg-type]
        kind,  # type: ignore[arg-type]
        label,
        1.0,
        "s3://b/k",
        "0" * 64,
        "cam",
        12.0,
        0.5,
        0.2,
        3.0,  # type: ignore[arg-type]
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["train", "weakness", "test"]),
            st.sampled_from(["human", "propagated", "ambiguous"]),
        ),
        max_size=40,
    )
)
def test_the_training_set_never_holds_a_test_or_ambiguous_image(
    spec: list[tuple[str, str]],
) -> None:
    rows = [row(split, kind) for split, kind in spec]
    chosen = training_set(rows)
    test_ids = {r.image_id for r in rows if r.split == "test"}
    assert not test_ids & {r.image_id for r in chosen}
    assert all(r.kind != "ambiguous" and r.split == "train" for r in chosen)
    assert len(chosen) == sum(1 for s, k in spec if s == "train" and k != "ambiguous")


def test_a_test_row_in_a_training_set_is_caught() -> None:
    with pytest.raises(SplitLeak, match="1 test-split images"):
        assert_no_test([row("train"), row("test")])


def test_the_examples_hash_ignores_order_and_sees_label_changes() -> None:
    a, b = row("train"), row("train")
    assert examples_sha256([a, b]) == examples_sha256([b, a])
    relabelled = Row(**{**a.__dict__, "label": "dog"})
    assert examples_sha256([a, b]) != examples_sha256([relabelled, b])


def test_classes_keep_productions_order_and_append_new_ones() -> None:
    assert choose_classes(["b", "z", "a"], ["b", "a"], None) == ["b", "a", "z"]
    assert choose_classes(["b", "a"], None, None) == ["a", "b"]
    assert choose_classes(["b", "z"], ["b", "a"], ["a", "b", "c"]) == ["a", "b", "c"]
