"""Exploring schedules: every schedule of a scenario on a variant (`runner`), and every bug
of this history on every variant, checked against the trees (`history`)."""

from __future__ import annotations

from .runner import (
    GRANULARITIES, RUNNERS, Outcome, Prepared, ScheduleRun, VariantReport, cross_replay, explore_random,
    explore_variant, map_forked, outcome_of, state_digest,
)

__all__ = ["GRANULARITIES", "RUNNERS", "Outcome", "Prepared", "ScheduleRun", "VariantReport", "cross_replay",
           "explore_random", "explore_variant", "map_forked", "outcome_of", "state_digest"]
