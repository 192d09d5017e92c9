/*
 * fs.h - what the VFS (fs.c, namei.c, dcache.c) and ramfs (ramfs.c) share:
 * the inode, dentry and file objects and the operations a filesystem fills.
 */
#ifndef GUEST_FS_H
#define GUEST_FS_H

#include <kernel.h>

#define S_IFMT 0170000
#define S_IFDIR 0040000
#define S_IFREG 0100000
#define S_ISDIR(m) (((m) & S_IFMT) == S_IFDIR)

#define PATH_MAX 256
#define NAME_MAX 255
#define DNAME_INLINE_LEN 32
#define MAX_ERRNO 4095

struct inode;
struct dentry;
struct file;

struct qstr {
	const char *name;
	unsigned int len;
	unsigned int hash;
};

struct inode_operations {
	long (*create)(struct inode *dir, struct dentry *dentry,
		       unsigned int mode);
	long (*mkdir)(struct inode *dir, struct dentry *dentry,
		      unsigned int mode);
	long (*unlink)(struct inode *dir, struct dentry *dentry);
};

struct file_operations {
	ssize_t (*read)(struct file *file, char *buf, size_t count,
			loff_t *pos);
	ssize_t (*write)(struct file *file, const char *buf, size_t count,
			 loff_t *pos);
};

struct super_block {
	const char *s_type;
	unsigned long s_magic;
	struct dentry *s_root;
	unsigned long s_inodes;		/* live inodes */
};

struct inode {
	unsigned long i_ino;
	unsigned int i_mode;
	unsigned int i_nlink;
	int i_count;			/* references: a dentry holds one */
	loff_t i_size;
	u8 *i_data;			/* a regular file's bytes */
	size_t i_capacity;		/* bytes allocated at i_data */
	unsigned long i_fsnotify_events;
	struct super_block *i_sb;
	const struct inode_operations *i_op;
	const struct file_operations *i_fop;
};

struct dentry {
	int d_count;
	bool d_hashed;			/* reachable from its parent */
	struct qstr d_name;
	char d_iname[DNAME_INLINE_LEN];	/* short names live here */
	struct inode *d_inode;
	struct dentry *d_parent;
	struct dentry *d_subdirs;	/* first child */
	struct dentry *d_next;		/* next sibling */
	struct super_block *d_sb;
};

struct file {
	int f_count;
	unsigned int f_flags;
	loff_t f_pos;
	struct dentry *f_dentry;
	struct inode *f_inode;
	const struct file_operations *f_op;
};

static inline notrace void *ERR_PTR(long error)
{
	return (void *)error;
}

static inline notrace long PTR_ERR(const void *ptr)
{
	return (long)ptr;
}

static inline notrace bool IS_ERR(const void *ptr)
{
	return (unsigned long)ptr >= (unsigned long)-MAX_ERRNO;
}

static inline notrace bool d_is_dir(const struct dentry *dentry)
{
	return S_ISDIR(dentry->d_inode->i_mode);
}

struct filename;

/* dcache.c */
unsigned int full_name_hash(const char *name, unsigned int len);
struct dentry *d_alloc(struct dentry *parent, const struct qstr *name);
void d_add(struct dentry *dentry, struct inode *inode);
void d_delete(struct dentry *dentry);
struct dentry *d_make_root(struct inode *root_inode);
struct dentry *d_lookup(const struct dentry *parent, const struct qstr *name);
struct dentry *dget(struct dentry *dentry);
void dput(struct dentry *dentry);
struct inode *new_inode(struct super_block *sb);

/* namei.c */
struct filename *getname(const char *filename);
void putname(struct filename *name);
struct file *do_filp_open(struct filename *name, int flags);
long do_mkdirat(const char *pathname, unsigned int mode);

/* fs.c */
extern struct super_block root_sb;
extern spinlock_t vfs_lock;
struct file *alloc_empty_file(unsigned int flags);
long vfs_open(struct file *file, struct dentry *dentry);
void fput(struct file *file);

/* ramfs.c */
long ramfs_fill_super(struct super_block *sb);

#endif
