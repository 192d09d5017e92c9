"""calls_traced holds for every tracer and option, and still catches a tracer that loses calls."""

from __future__ import annotations

import pytest

from ftrace_core.scenario import parse_scenario, run_scenario
from ftrace_core.system import boot

SETUPS = {
    "function": [],
    "function_graph": [],
    "function, filter": ["echo 'do_syscall_64 get_current_pid' > set_ftrace_filter"],
    "function_graph, filter": ["echo 'do_syscall_64 get_current_pid' > set_ftrace_filter"],
    "function_graph, notrace": ["echo '*pid*' > set_ftrace_notrace"],
    "function, :mod: filter": ["echo '*:mod:!' > set_ftrace_filter"],
    "function_graph, tracing off": ["echo 0 > tracing_on"],
}


@pytest.mark.parametrize("setup", SETUPS)
def test_every_call_the_tracer_selects_is_traced_once(setup):
    tracer = setup.split(",")[0]
    lines = [f"cpu 0: {cmd}" for cmd in SETUPS[setup]] + [
        f"cpu 0: echo {tracer} > current_tracer", "cpu 0: call workload_getpid", "cpu 1: call workload_getpid"]
    r = run_scenario(parse_scenario("\n".join(lines) + "\nschedule: 0\n", "calls.scn"), "fixed")
    assert all(r.invariants.values()), r.violations
    traced = [l for l in r.trace.splitlines() if not l.startswith("#")]
    assert bool(traced) == ("off" not in setup)


def test_a_graph_tracer_that_drops_calls_is_caught():
    system = boot("fixed")
    scn = parse_scenario("cpu 0: echo function_graph > current_tracer\ncpu 1: call workload_getpid\n"
                         "schedule: 0 1\n", "drop.scn")
    system.graph.tracing_on = False  # the graph tracer stops recording behind the ring buffer's back
    r = run_scenario(scn, "fixed", system=system)
    assert not r.invariants["calls_traced"]
    assert any("call of workload_getpid from guest_return_trap not traced" in v
               for v in r.violations["calls_traced"])
