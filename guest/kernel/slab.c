/*
 * slab.c - kmalloc/kzalloc/kfree over a real heap: a first-fit free list of
 * 16-byte-aligned blocks with boundary headers, coalesced on free.
 */
#include <kernel.h>

#define HEAP_SIZE (512 * 1024)
#define ALIGN16(x) (((x) + 15UL) & ~15UL)
#define BLOCK_MAGIC 0x6b6d616cUL	/* "kmal" */

struct block {
	size_t size;		/* payload bytes */
	unsigned long magic;	/* BLOCK_MAGIC while allocated, 0 when free */
	struct block *next;	/* free list, address order */
	unsigned long pad;
};

static u8 heap[HEAP_SIZE] __attribute__((aligned(16)));
static struct block *free_list;
static DEFINE_SPINLOCK(kmem_lock);
unsigned long slab_allocated_bytes;

void kmem_cache_init(void)
{
	free_list = (struct block *)heap;
	free_list->size = HEAP_SIZE - sizeof(struct block);
	free_list->magic = 0;
	free_list->next = NULL;
	slab_allocated_bytes = 0;
}

static struct block *split_block(struct block *b, size_t size)
{
	struct block *rest;

	if (b->size < size + sizeof(struct block) + 16)
		return b->next;
	rest = (struct block *)((u8 *)(b + 1) + size);
	rest->size = b->size - size - sizeof(struct block);
	rest->magic = 0;
	rest->next = b->next;
	b->size = size;
	return rest;
}

void *kmalloc(size_t size)
{
	struct block **link, *b;

	if (size == 0 || size > HEAP_SIZE)
		return NULL;
	size = ALIGN16(size);
	spin_lock(&kmem_lock);
	for (link = &free_list; (b = *link); link = &b->next) {
		if (b->size >= size) {
			*link = split_block(b, size);
			b->magic = BLOCK_MAGIC;
			b->next = NULL;
			slab_allocated_bytes += b->size;
			spin_unlock(&kmem_lock);
			return b + 1;
		}
	}
	spin_unlock(&kmem_lock);
	return NULL;
}
EXPORT_SYMBOL(kmalloc);

void *kzalloc(size_t size)
{
	void *p = kmalloc(size);

	if (p)
		memset(p, 0, size);
	return p;
}
EXPORT_SYMBOL(kzalloc);

size_t ksize(const void *p)
{
	const struct block *b = (const struct block *)p - 1;

	return p ? b->size : 0;
}
EXPORT_SYMBOL(ksize);

static void coalesce(struct block *b)
{
	struct block *n = b->next;

	if (n && (u8 *)(b + 1) + b->size == (u8 *)n) {
		b->size += sizeof(struct block) + n->size;
		b->next = n->next;
	}
}

void kfree(const void *p)
{
	struct block *b, **link, *prev = NULL;

	if (!p)
		return;
	b = (struct block *)p - 1;
	if (b->magic != BLOCK_MAGIC) {
		printk(KERN_ERR "kfree: bad pointer %p\n", p);
		return;
	}
	spin_lock(&kmem_lock);
	b->magic = 0;
	slab_allocated_bytes -= b->size;
	for (link = &free_list; *link && *link < b; link = &(*link)->next)
		prev = *link;
	b->next = *link;
	*link = b;
	coalesce(b);
	if (prev)
		coalesce(prev);
	spin_unlock(&kmem_lock);
}
EXPORT_SYMBOL(kfree);
