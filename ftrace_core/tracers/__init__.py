"""What runs beside the function tracers: the stack tracer (kernel/trace/trace_stack.c), the
function profiler (the profiler part of kernel/trace/ftrace.c), the function probe commands
of set_ftrace_filter (commands: kernel/trace/trace_functions.c), and what those commands
and func_stack_trace record or print: stack-trace events (stacktrace) and ftrace_dump()
(dump)."""

from __future__ import annotations

from .profile import FunctionProfiler
from .stack import StackTracer

__all__ = ["FunctionProfiler", "StackTracer"]
