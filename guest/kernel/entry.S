/*
 * entry.S - the guest kernel's hand-written pieces: the mcount stub, the
 * ftrace trampoline with its patchable call sites, the text-write routine
 * and the return trap the host uses to know a call has finished.
 */

	.text

/*
 * With dynamic ftrace every "call __fentry__" is turned into a nop at boot;
 * until then (and for any site ftrace never saw) the stub just returns.
 */
	.globl __fentry__
	.type __fentry__, @function
__fentry__:
	ret
	.size __fentry__, . - __fentry__

/*
 * ftrace_caller: where an enabled call site points.  On entry (%rsp) is the
 * return address into the traced function, just after its 5-byte call site,
 * and 8(%rsp) is the traced function's own return address (the parent).
 * It calls the tracer as func(ip, parent_ip, op, regs) through ftrace_call,
 * a 5-byte call that ftrace_update_ftrace_func() rewrites; regs is NULL here.
 * As the kernel's save_mcount_regs, it keeps only what a function may receive
 * its arguments in (rdi, rsi, rdx, rcx, r8, r9, and rax for varargs).
 */
	.globl ftrace_caller
	.type ftrace_caller, @function
ftrace_caller:
	pushq %rbp
	movq %rsp, %rbp
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %r8
	pushq %r9
	movq 8(%rbp), %rdi
	subq $5, %rdi			/* ip: the call site itself */
	movq 16(%rbp), %rsi		/* parent_ip */
	movq function_trace_op(%rip), %rdx
	xorl %ecx, %ecx
	.globl ftrace_call
	.type ftrace_call, @function
	.size ftrace_call, 5
ftrace_call:
	/* Encoded by hand so the site is always the 5-byte e8 rel32 form. */
	.byte 0xe8
	.long ftrace_stub - . - 4
	.globl ftrace_graph_call
	.type ftrace_graph_call, @function
	.size ftrace_graph_call, 5
ftrace_graph_call:
	.byte 0xe9
	.long ftrace_graph_return - . - 4
	.globl ftrace_graph_return
ftrace_graph_return:
	popq %r9
	popq %r8
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rax
	popq %rbp
	.globl ftrace_stub
	.type ftrace_stub, @function
	.size ftrace_stub, 1
ftrace_stub:
	ret
	.size ftrace_caller, . - ftrace_caller

/*
 * The function graph tracer's entry: ftrace_graph_call jumps here when the
 * function_graph tracer is on.  prepare_ftrace_return() saves the traced
 * function's return address and puts return_to_handler in its place; then
 * the registers are restored as on the way out of ftrace_caller.
 */
	.globl ftrace_graph_caller
	.type ftrace_graph_caller, @function
ftrace_graph_caller:
	leaq 16(%rbp), %rdi		/* parent: where the return address lives */
	movq 8(%rbp), %rsi
	subq $5, %rsi			/* self_addr: the traced call site */
	call prepare_ftrace_return
	jmp ftrace_graph_return
	.size ftrace_graph_caller, . - ftrace_graph_caller

/*
 * A traced function "returns" here; ftrace_return_to_handler() pops the real
 * return address (and records the exit), and we go on there with the
 * function's return value intact.
 */
	.globl return_to_handler
	.type return_to_handler, @function
return_to_handler:
	subq $24, %rsp
	movq %rax, (%rsp)
	movq %rdx, 8(%rsp)
	call ftrace_return_to_handler
	movq %rax, %rdi
	movq 8(%rsp), %rdx
	movq (%rsp), %rax
	addq $24, %rsp
	jmp *%rdi
	.size return_to_handler, . - return_to_handler

/*
 * long ftrace_text_poke_batch(const struct text_poke *vec, long n)
 *
 * The only code that writes kernel or module text (the role of
 * probe_kernel_write).  vec holds n {dst, src, len} triples; each is copied
 * with a plain store, so the emulated MMU decides whether it may.  %rax
 * counts the finished entries: after a write fault it names the culprit.
 */
	.globl ftrace_text_poke_batch
	.type ftrace_text_poke_batch, @function
ftrace_text_poke_batch:
	pushq %rbx
	movq %rdi, %rbx
	movq %rsi, %r8
	xorl %eax, %eax
1:	cmpq %r8, %rax
	jae 2f
	movq (%rbx), %rdi
	movq 8(%rbx), %rsi
	movq 16(%rbx), %rcx
	rep movsb
	addq $24, %rbx
	incq %rax
	jmp 1b
2:	popq %rbx
	ret
	.size ftrace_text_poke_batch, . - ftrace_text_poke_batch

/*
 * The host pushes this address as the return address of every call it
 * makes into the guest and stops emulation when it is reached; it is never
 * executed.  Alone on its own page (see kernel.lds) so that Unicorn's
 * per-emu_start invalidation of the block at the stop address never touches
 * a real function.
 */
	.section .trap.text, "ax"
	.globl guest_return_trap
	.type guest_return_trap, @function
guest_return_trap:
	int3
	.size guest_return_trap, . - guest_return_trap

	.section .note.GNU-stack, "", @progbits
