/*
 * printk.c - vsnprintf and printk into the kernel log buffer, which the host
 * reads as dmesg.  Each line gets the kernel's "[%5lu.%06lu] " timestamp from
 * the CPU's virtual clock; a printk without a newline is continued by the
 * next one, as with pr_cont.
 */
#include <kernel.h>
#include <stdarg.h>

#define LOG_BUF_LEN (64 * 1024)

char __log_buf[LOG_BUF_LEN];
unsigned long log_next;		/* bytes used in __log_buf */
unsigned long log_dropped;	/* bytes that did not fit */
static bool log_midline;
static DEFINE_SPINLOCK(logbuf_lock);

u64 local_clock(void)
{
	return this_cpu_area()->clock_ns;
}
EXPORT_SYMBOL(local_clock);

struct outbuf {
	char *buf;
	size_t size;
	size_t len;		/* what the full output would need */
};

static void put_char(struct outbuf *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_number(struct outbuf *o, unsigned long v, unsigned int base,
		       bool neg, int width, char pad, bool left, bool upper)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int n = 0, len;

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	len = n + neg;
	if (neg && pad == '0')
		put_char(o, '-');
	for (; !left && width > len; width--)
		put_char(o, pad);
	if (neg && pad != '0')
		put_char(o, '-');
	while (n)
		put_char(o, tmp[--n]);
	for (; left && width > len; width--)
		put_char(o, ' ');
}

static void put_string(struct outbuf *o, const char *s, int width, bool left)
{
	int len;

	if (!s)
		s = "(null)";
	len = strlen(s);
	for (; !left && width > len; width--)
		put_char(o, ' ');
	while (*s)
		put_char(o, *s++);
	for (; left && width > len; width--)
		put_char(o, ' ');
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct outbuf o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		int width = 0, lng = 0;
		bool left = false;
		char pad = ' ';
		unsigned long v;

		if (*fmt != '%') {
			put_char(&o, *fmt);
			continue;
		}
		fmt++;
		if (*fmt == '-') {
			left = true;
			fmt++;
		}
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case 'd':
		case 'i': {
			long sv = lng ? va_arg(ap, long) : va_arg(ap, int);

			v = sv < 0 ? -(unsigned long)sv : (unsigned long)sv;
			put_number(&o, v, 10, sv < 0, width, pad, left, false);
			break;
		}
		case 'u':
		case 'x':
		case 'X':
			v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
			put_number(&o, v, *fmt == 'u' ? 10 : 16, false, width,
				   pad, left, *fmt == 'X');
			break;
		case 'p':
			put_number(&o, (unsigned long)va_arg(ap, void *), 16,
				   false, 16, '0', false, false);
			break;
		case 's':
			put_string(&o, va_arg(ap, const char *), width, left);
			break;
		case 'c':
			put_char(&o, (char)va_arg(ap, int));
			break;
		case '%':
			put_char(&o, '%');
			break;
		case '\0':
			fmt--;
			break;
		default:
			put_char(&o, '%');
			put_char(&o, *fmt);
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return o.len;
}
EXPORT_SYMBOL(vsnprintf);

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}
EXPORT_SYMBOL(snprintf);

static void log_store(const char *text, size_t len)
{
	size_t room = LOG_BUF_LEN - log_next;

	if (len > room) {
		log_dropped += len - room;
		len = room;
	}
	memcpy(__log_buf + log_next, text, len);
	log_next += len;
}

int vprintk(const char *fmt, va_list ap)
{
	char line[512], stamp[32];
	const char *text = line;
	u64 ns = local_clock();
	int n;

	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n >= (int)sizeof(line))
		n = sizeof(line) - 1;
	/* Drop a KERN_<level> prefix: dmesg shows the text only. */
	if (text[0] == KERN_SOH[0] && text[1]) {
		text += 2;
		n -= 2;
	}
	spin_lock(&logbuf_lock);
	if (!log_midline) {
		int s = snprintf(stamp, sizeof(stamp), "[%5lu.%06lu] ",
				 ns / 1000000000UL, (ns % 1000000000UL) / 1000);
		log_store(stamp, s);
	}
	log_store(text, n);
	log_midline = n > 0 ? text[n - 1] != '\n' : log_midline;
	spin_unlock(&logbuf_lock);
	return n;
}
EXPORT_SYMBOL(vprintk);

int printk(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintk(fmt, ap);
	va_end(ap);
	return n;
}
EXPORT_SYMBOL(printk);
