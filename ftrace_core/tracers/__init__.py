"""The tracers that live beside the function tracer: the stack tracer (kernel/trace/
trace_stack.c) and the function profiler (the profiler part of kernel/trace/ftrace.c)."""

from __future__ import annotations

from .profile import FunctionProfiler
from .stack import StackTracer

__all__ = ["FunctionProfiler", "StackTracer"]
