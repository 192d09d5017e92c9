/*
 * Preloaded into trace-cmd by `ftrace-emu trace-cmd`: points libtracefs at the emulated
 * system's tracefs (a FUSE mount, which libtracefs would not find by itself: it looks for a
 * mount whose type is exactly "tracefs").  The directory comes from FTRACE_EMU_TRACING_DIR.
 * The symbol is weak so that other programs the library is preloaded into (the shell that
 * starts trace-cmd) run unharmed.
 */
#include <stdlib.h>

int tracefs_set_tracing_dir(char *tracing_dir) __attribute__((weak));

__attribute__((constructor)) static void ftrace_emu_set_tracing_dir(void)
{
	char *dir = getenv("FTRACE_EMU_TRACING_DIR");

	if (dir && *dir && tracefs_set_tracing_dir)
		tracefs_set_tracing_dir(dir);
}
