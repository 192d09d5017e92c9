"""Flag layouts and enums of the seed era (v4.5-v4.8.17; legacy has no FTRACE_FL_DISABLED): dyn_ftrace flags, ftrace_ops flags,
update commands, per-record actions and bug types."""

from __future__ import annotations

import enum

# dyn_ftrace.flags: state bits at the top, the reference count in the low bits.
FTRACE_FL_ENABLED = 1 << 31
FTRACE_FL_REGS = 1 << 30
FTRACE_FL_REGS_EN = 1 << 29
FTRACE_FL_TRAMP = 1 << 28
FTRACE_FL_TRAMP_EN = 1 << 27
FTRACE_FL_IPMODIFY = 1 << 26
FTRACE_FL_DISABLED = 1 << 25  # the seed commit: "the record is not ready to be touched yet"

FTRACE_REF_MAX_SHIFT = 25
FTRACE_FL_BITS = 7
FTRACE_FL_MASKED_BITS = (1 << FTRACE_FL_BITS) - 1
FTRACE_FL_MASK = FTRACE_FL_MASKED_BITS << FTRACE_REF_MAX_SHIFT
FTRACE_REF_MAX = (1 << FTRACE_REF_MAX_SHIFT) - 1

RECORD_FLAG_NAMES = (
    (FTRACE_FL_ENABLED, "ENABLED"), (FTRACE_FL_REGS, "REGS"), (FTRACE_FL_REGS_EN, "REGS_EN"),
    (FTRACE_FL_TRAMP, "TRAMP"), (FTRACE_FL_TRAMP_EN, "TRAMP_EN"), (FTRACE_FL_IPMODIFY, "IPMODIFY"),
    (FTRACE_FL_DISABLED, "DISABLED"),
)


def ftrace_rec_count(flags: int) -> int:
    return flags & ~FTRACE_FL_MASK & 0xFFFFFFFF


def record_flag_names(flags: int) -> str:
    return "|".join(name for bit, name in RECORD_FLAG_NAMES if flags & bit) or "0"


# ftrace_ops.flags
FTRACE_OPS_FL_ENABLED = 1 << 0
FTRACE_OPS_FL_DYNAMIC = 1 << 1
FTRACE_OPS_FL_SAVE_REGS = 1 << 2
FTRACE_OPS_FL_SAVE_REGS_IF_SUPPORTED = 1 << 3
FTRACE_OPS_FL_RECURSION_SAFE = 1 << 4
FTRACE_OPS_FL_STUB = 1 << 5
FTRACE_OPS_FL_INITIALIZED = 1 << 6
FTRACE_OPS_FL_DELETED = 1 << 7
FTRACE_OPS_FL_ADDING = 1 << 8
FTRACE_OPS_FL_REMOVING = 1 << 9
FTRACE_OPS_FL_MODIFYING = 1 << 10
FTRACE_OPS_FL_ALLOC_TRAMP = 1 << 11
FTRACE_OPS_FL_IPMODIFY = 1 << 12
FTRACE_OPS_FL_PID = 1 << 13  # "Is affected by set_ftrace_pid"

# commands for ftrace_run_update_code / ftrace_modify_all_code
FTRACE_UPDATE_CALLS = 1 << 0
FTRACE_DISABLE_CALLS = 1 << 1
FTRACE_UPDATE_TRACE_FUNC = 1 << 2
FTRACE_START_FUNC_RET = 1 << 3
FTRACE_STOP_FUNC_RET = 1 << 4


class UpdateAction(enum.IntEnum):
    """What ftrace_check_record decides for one record."""

    IGNORE = 0
    MAKE_CALL = 1
    MODIFY_CALL = 2
    MAKE_NOP = 3


class BugType(enum.IntEnum):
    UNKNOWN = 0
    INIT = 1
    NOP = 2
    CALL = 3
    UPDATE = 4


# errno values the ftrace paths return (negated, as in the kernel)
EPERM, ENOENT, EFAULT, EBUSY, ENODEV, EINVAL, ENOMEM = 1, 2, 14, 16, 19, 22, 12
