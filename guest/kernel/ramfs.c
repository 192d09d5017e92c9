/*
 * ramfs.c - the root filesystem: inodes whose data is a kmalloc'd buffer,
 * and the libfs helpers (simple_*) it is built from, as in fs/ramfs.
 */
#include "fs.h"

#define RAMFS_MAGIC 0x858458f6UL
/* The heap is 512 KiB; one file may take at most a quarter of it. */
#define RAMFS_MAX_FILE_SIZE (128 * 1024)
#define PAGE_SIZE 4096UL

static const struct inode_operations ramfs_dir_inode_operations;
static const struct file_operations ramfs_file_operations;
static const struct file_operations simple_dir_operations;

static unsigned long last_ino;

static __noinline __noclone unsigned long get_next_ino(void)
{
	return ++last_ino;
}

/* "User" pointers are kernel pointers here; only NULL faults. */
__noinline __noclone unsigned long _copy_from_user(void *to, const void *from,
						   unsigned long n)
{
	if (unlikely(!from))
		return n;
	memcpy(to, from, n);
	return 0;
}

__noinline __noclone unsigned long _copy_to_user(void *to, const void *from,
						 unsigned long n)
{
	if (unlikely(!to))
		return n;
	memcpy(to, from, n);
	return 0;
}

__noinline __noclone struct inode *ramfs_get_inode(struct super_block *sb,
						   const struct inode *dir,
						   unsigned int mode)
{
	struct inode *inode = new_inode(sb);

	if (!inode)
		return NULL;
	inode->i_ino = get_next_ino();
	inode->i_mode = mode;
	if (S_ISDIR(mode)) {
		inode->i_op = &ramfs_dir_inode_operations;
		inode->i_fop = &simple_dir_operations;
		/* "." counts as a link to a directory. */
		inode->i_nlink++;
	} else {
		inode->i_fop = &ramfs_file_operations;
	}
	return inode;
}

static __noinline __noclone long ramfs_mknod(struct inode *dir,
					     struct dentry *dentry,
					     unsigned int mode)
{
	struct inode *inode = ramfs_get_inode(dir->i_sb, dir, mode);

	if (!inode)
		return -ENOSPC;
	d_add(dentry, inode);
	/* Nothing backs a ramfs dentry: pin it until it is unlinked. */
	dget(dentry);
	return 0;
}

static __noinline __noclone long ramfs_create(struct inode *dir,
					      struct dentry *dentry,
					      unsigned int mode)
{
	return ramfs_mknod(dir, dentry, mode | S_IFREG);
}

static __noinline __noclone long ramfs_mkdir(struct inode *dir,
					     struct dentry *dentry,
					     unsigned int mode)
{
	long ret = ramfs_mknod(dir, dentry, mode | S_IFDIR);

	/* The new directory's ".." links to its parent. */
	if (!ret)
		dir->i_nlink++;
	return ret;
}

static __noinline __noclone long simple_unlink(struct inode *dir,
					       struct dentry *dentry)
{
	dentry->d_inode->i_nlink--;
	/* Drop the pin ramfs_mknod took; open files keep their own. */
	dput(dentry);
	return 0;
}

/* Grow a file's buffer, krealloc-style: new block, copy, free the old. */
static __noinline __noclone long ramfs_expand(struct inode *inode, size_t size)
{
	size_t cap = inode->i_capacity ? inode->i_capacity : 64;
	u8 *data;

	while (cap < size)
		cap *= 2;
	data = kmalloc(cap);
	if (!data)
		return -ENOMEM;
	/* Past i_size the old buffer is all zeroes: there is no truncate. */
	memcpy(data, inode->i_data, inode->i_size);
	memset(data + inode->i_size, 0, cap - inode->i_size);
	kfree(inode->i_data);
	inode->i_data = data;
	inode->i_capacity = cap;
	return 0;
}

static __noinline __noclone long simple_write_begin(struct inode *inode,
						    loff_t pos, size_t len)
{
	if (pos + len > RAMFS_MAX_FILE_SIZE)
		return -ENOSPC;
	if (pos + len > inode->i_capacity)
		return ramfs_expand(inode, pos + len);
	return 0;
}

static __noinline __noclone size_t simple_write_end(struct inode *inode,
						    loff_t pos, size_t len,
						    size_t copied)
{
	if (pos + copied > inode->i_size)
		inode->i_size = pos + copied;
	return copied;
}

/* One page at a time, as the page-cache write loop goes. */
static __noinline __noclone ssize_t generic_perform_write(struct inode *inode,
							  const char *buf,
							  size_t count,
							  loff_t pos)
{
	ssize_t written = 0;

	while (count) {
		size_t offset = pos & (PAGE_SIZE - 1);
		size_t bytes = PAGE_SIZE - offset;
		long status;

		if (bytes > count)
			bytes = count;
		status = simple_write_begin(inode, pos, bytes);
		if (status < 0)
			return written ? written : status;
		if (_copy_from_user(inode->i_data + pos, buf, bytes))
			return written ? written : -EFAULT;
		simple_write_end(inode, pos, bytes, bytes);
		pos += bytes;
		buf += bytes;
		written += bytes;
		count -= bytes;
	}
	return written;
}

static __noinline __noclone ssize_t ramfs_file_write(struct file *file,
						     const char *buf,
						     size_t count, loff_t *ppos)
{
	ssize_t ret = generic_perform_write(file->f_inode, buf, count, *ppos);

	if (ret > 0)
		*ppos += ret;
	return ret;
}

__noinline __noclone ssize_t simple_read_from_buffer(void *to, size_t count,
						     loff_t *ppos,
						     const void *from,
						     size_t available)
{
	loff_t pos = *ppos;
	size_t ret;

	if (pos < 0)
		return -EINVAL;
	if (pos >= available || !count)
		return 0;
	if (count > available - pos)
		count = available - pos;
	ret = _copy_to_user(to, (const u8 *)from + pos, count);
	if (ret == count)
		return -EFAULT;
	count -= ret;
	*ppos = pos + count;
	return count;
}

static __noinline __noclone ssize_t ramfs_file_read(struct file *file,
						    char *buf, size_t count,
						    loff_t *ppos)
{
	struct inode *inode = file->f_inode;

	return simple_read_from_buffer(buf, count, ppos, inode->i_data,
				       inode->i_size);
}

static __noinline __noclone ssize_t generic_read_dir(struct file *file,
						     char *buf, size_t count,
						     loff_t *ppos)
{
	return -EISDIR;
}

static const struct inode_operations ramfs_dir_inode_operations = {
	.create = ramfs_create,
	.mkdir = ramfs_mkdir,
	.unlink = simple_unlink,
};

static const struct file_operations ramfs_file_operations = {
	.read = ramfs_file_read,
	.write = ramfs_file_write,
};

static const struct file_operations simple_dir_operations = {
	.read = generic_read_dir,
};

long ramfs_fill_super(struct super_block *sb)
{
	struct inode *inode;

	sb->s_type = "ramfs";
	sb->s_magic = RAMFS_MAGIC;
	inode = ramfs_get_inode(sb, NULL, S_IFDIR | 0755);
	sb->s_root = d_make_root(inode);
	return sb->s_root ? 0 : -ENOMEM;
}
