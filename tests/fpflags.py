"""The x86 floating-point status flags (MXCSR) of the calling thread, for tests that check
that a kernel raised no underflow: an operation with a subnormal operand or result costs an
Intel CPU a microcode assist (one vector operation ~100x slower)."""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

X86 = platform.machine().lower() in ("x86_64", "amd64")
DENORMAL, UNDERFLOW = 0x02, 0x10


@intrinsic
def _swap(typingctx, new):
    """The MXCSR register (as int64), replaced by ``new``."""
    if not isinstance(new, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        i32, i8p = ir.IntType(32), ir.IntType(8).as_pointer()
        slot = cgutils.alloca_once(builder, i32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p])
        st = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.stmxcsr")
        ld = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.ldmxcsr")
        builder.call(st, [builder.bitcast(slot, i8p)])
        old = builder.load(slot)
        builder.store(builder.trunc(args[0], i32), slot)
        builder.call(ld, [builder.bitcast(slot, i8p)])
        return builder.zext(old, ir.IntType(64))

    return types.int64(new), codegen


@njit
def _mxcsr_swap(new):
    return _swap(new)


def raised(call) -> int:
    """The DENORMAL | UNDERFLOW flags that ``call()`` raised on this thread (x86 only)."""
    cur = _mxcsr_swap(0x1F80)
    _mxcsr_swap(cur & ~0x3F)  # the same control bits, flags cleared
    call()
    after = _mxcsr_swap(cur)
    return after & (DENORMAL | UNDERFLOW)
