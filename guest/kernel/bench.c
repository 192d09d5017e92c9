/*
 * bench.c - a call-heavy workload for measuring the cost of tracing: small
 * functions called in a loop.  Plain C with no kernel dependencies, so
 * scripts/bench_native.py can build the same file natively for uftrace.
 */

#define __bench_noinline __attribute__((noinline, noclone))

long bench_sink;

__bench_noinline long bench_leaf(long x)
{
	return x * 3 + 1;
}

__bench_noinline long bench_mid(long x)
{
	return bench_leaf(x) ^ bench_leaf(x + 1);
}

/* n iterations, 3 traced calls each (bench_mid and two bench_leaf). */
__bench_noinline long bench_calls(long n)
{
	long acc = 0;
	long i;

	for (i = 0; i < n; i++)
		acc += bench_mid(i);
	bench_sink = acc;
	return acc;
}
