/*
 * joined_util.c - the other half of the joined module (see joined_main.c
 * for the build); it calls a kernel export on its own.
 */
#include <kernel.h>

static const char joined_word[] = "joined";

/* strlen("joined") = 6, computed by the kernel's strlen at run time. */
static __noinline __noclone long joined_util_factor(void)
{
	return strlen(joined_word);
}

/* 6 * x */
__noinline __noclone long joined_util_scale(long x)
{
	return x * joined_util_factor();
}
