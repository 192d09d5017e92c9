"""The bugs of this history: for each, the built-in scenario that shows it, the change that
brought it (None: it was there before the seed) and the change that fixed it.  Which variants
must fail follows from the catalogue of trees; the explorer checks that they do, over every
schedule, and that the others never fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import DISABLED_IGNORED_EVERYWHERE, DISABLED_RECORDS, ENABLE_AFTER_RO, KERNELS, KernelTree


@dataclass(frozen=True)
class Bug:
    name: str
    scenario: str  # a built-in scenario (ftrace_core/scenarios/NAME.scn)
    signature: str  # what the explorer's failure kind says when this bug is what failed
    summary: str
    fixed_by: str  # the feature whose change fixed it
    introduced_by: str | None = None  # the feature whose change brought it

    def present_in(self, tree: KernelTree) -> bool:
        """Does this tree have the bug: the change that brought it, not the one that fixed it."""
        brought = self.introduced_by is None or tree.has(self.introduced_by)
        return brought and not tree.has(self.fixed_by)

    def explains(self, kind: str) -> bool:
        return self.signature in kind

    def fixing_tree(self) -> KernelTree:
        """The first variant with the fix."""
        return next(t for t in KERNELS.values() if t.has(self.fixed_by))


BUGS = (
    Bug("module-load race", "race", "ftrace faulted on writing",
        "ftrace enables a loading module's call sites after its text became read-only: the write "
        "faults, ftrace_bug() disables ftrace until reboot",
        fixed_by=ENABLE_AFTER_RO),
    Bug("DISABLED records at shutdown", "disabled-shutdown", "in ftrace_shutdown()",
        "the last tracer goes away while a module's records are still DISABLED: ftrace_shutdown()'s "
        "sanity check (FTRACE_WARN_ON_ONCE(rec->flags)) kills ftrace",
        introduced_by=DISABLED_RECORDS, fixed_by=DISABLED_IGNORED_EVERYWHERE),
)
