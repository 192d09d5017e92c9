/*
 * dcache.c - the dentry cache and inodes: names linked into a tree under
 * the root, reference counts, and freeing what nothing refers to any more.
 */
#include "fs.h"

__noinline __noclone unsigned int full_name_hash(const char *name,
						 unsigned int len)
{
	unsigned int hash = 0;

	while (len--)
		hash = (hash + (u8)*name++) * 0x9e370001U;
	return hash;
}

__noinline __noclone struct dentry *dget(struct dentry *dentry)
{
	if (dentry)
		dentry->d_count++;
	return dentry;
}

__noinline __noclone struct dentry *d_alloc(struct dentry *parent,
					    const struct qstr *name)
{
	struct dentry *dentry = kzalloc(sizeof(*dentry));
	char *dname = NULL;

	if (!dentry)
		return NULL;
	if (name->len >= DNAME_INLINE_LEN) {
		dname = kmalloc(name->len + 1);
		if (!dname) {
			kfree(dentry);
			return NULL;
		}
	}
	if (!dname)
		dname = dentry->d_iname;
	memcpy(dname, name->name, name->len);
	dname[name->len] = '\0';
	dentry->d_name.name = dname;
	dentry->d_name.len = name->len;
	dentry->d_name.hash = name->hash;
	dentry->d_count = 1;
	dentry->d_parent = parent ? dget(parent) : dentry;
	dentry->d_sb = parent ? parent->d_sb : NULL;
	return dentry;
}

static __noinline __noclone void d_instantiate(struct dentry *dentry,
					       struct inode *inode)
{
	dentry->d_inode = inode;
}

static __noinline __noclone void d_rehash(struct dentry *dentry)
{
	struct dentry *parent = dentry->d_parent;

	dentry->d_next = parent->d_subdirs;
	parent->d_subdirs = dentry;
	dentry->d_hashed = true;
}

__noinline __noclone void d_add(struct dentry *dentry, struct inode *inode)
{
	d_instantiate(dentry, inode);
	d_rehash(dentry);
}

static __noinline __noclone void __d_drop(struct dentry *dentry)
{
	struct dentry **link = &dentry->d_parent->d_subdirs;

	if (!dentry->d_hashed)
		return;
	while (*link && *link != dentry)
		link = &(*link)->d_next;
	if (*link)
		*link = dentry->d_next;
	dentry->d_next = NULL;
	dentry->d_hashed = false;
}

__noinline __noclone void d_delete(struct dentry *dentry)
{
	__d_drop(dentry);
}

__noinline __noclone struct dentry *d_make_root(struct inode *root_inode)
{
	static const struct qstr slash = { "/", 1, 0 };
	struct dentry *root;

	if (!root_inode)
		return NULL;
	root = d_alloc(NULL, &slash);
	if (!root)
		return NULL;
	root->d_sb = root_inode->i_sb;
	d_instantiate(root, root_inode);
	return root;
}

/* Lookups walk a directory's children with no references, as RCU-walk does. */
static __noinline __noclone struct dentry *
__d_lookup(const struct dentry *parent, const struct qstr *name)
{
	struct dentry *dentry;

	for (dentry = parent->d_subdirs; dentry; dentry = dentry->d_next) {
		if (dentry->d_name.hash != name->hash ||
		    dentry->d_name.len != name->len)
			continue;
		if (!memcmp(dentry->d_name.name, name->name, name->len))
			return dentry;
	}
	return NULL;
}

__noinline __noclone struct dentry *d_lookup(const struct dentry *parent,
					     const struct qstr *name)
{
	return __d_lookup(parent, name);
}

/* inodes */

__noinline __noclone struct inode *new_inode(struct super_block *sb)
{
	struct inode *inode = kzalloc(sizeof(*inode));

	if (!inode)
		return NULL;
	inode->i_sb = sb;
	inode->i_count = 1;
	inode->i_nlink = 1;
	sb->s_inodes++;
	return inode;
}

static __noinline __noclone void evict(struct inode *inode)
{
	inode->i_sb->s_inodes--;
	kfree(inode->i_data);
	kfree(inode);
}

static __noinline __noclone void iput(struct inode *inode)
{
	if (!inode || --inode->i_count > 0)
		return;
	/* Without a disk behind it, an unlinked inode is gone for good. */
	if (!inode->i_nlink)
		evict(inode);
}

static __noinline __noclone void dentry_free(struct dentry *dentry)
{
	if (dentry->d_name.name != dentry->d_iname)
		kfree(dentry->d_name.name);
	kfree(dentry);
}

__noinline __noclone void dput(struct dentry *dentry)
{
	struct dentry *parent;

	/* Killing a dentry drops its parent in turn: loop, don't recurse. */
	while (dentry && --dentry->d_count == 0) {
		parent = dentry->d_parent;
		__d_drop(dentry);
		iput(dentry->d_inode);
		dentry_free(dentry);
		dentry = parent != dentry ? parent : NULL;
	}
}
