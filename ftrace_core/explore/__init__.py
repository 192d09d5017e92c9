"""Exploring schedules: every schedule of a scenario on a variant (`runner`), its search split
among worker processes (`parallel`) or the actors of a Ray cluster (`cluster`, optional), and
every bug of this history on every variant, checked against the trees (`history`)."""

from __future__ import annotations

from .runner import (
    GRANULARITIES, REDUCTIONS, RUNNERS, Outcome, Prepared, ScheduleRun, VariantReport, cross_replay,
    explore_random, explore_variant, make_runner, map_forked, outcome_of, state_digest,
)

__all__ = ["GRANULARITIES", "REDUCTIONS", "RUNNERS", "Outcome", "Prepared", "ScheduleRun", "VariantReport",
           "cross_replay", "explore_random", "explore_variant", "make_runner", "map_forked", "outcome_of",
           "state_digest"]
