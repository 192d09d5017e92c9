/*
 * namei.c - from path names to dentries: getname, the component walk, and
 * the open, create, unlink and mkdir lookups built on it.
 */
#include "fs.h"
#include "internal.h"

struct filename {
	const char *name;
	char iname[];
};

struct nameidata {
	struct dentry *dentry;		/* the directory reached so far */
	struct qstr last;		/* the final component, not walked */
};

__noinline __noclone struct filename *getname(const char *filename)
{
	struct filename *result;
	size_t len = 0;

	if (!filename)
		return ERR_PTR(-EFAULT);
	while (len < PATH_MAX && filename[len])
		len++;
	if (len == PATH_MAX)
		return ERR_PTR(-ENAMETOOLONG);
	if (!len)
		return ERR_PTR(-ENOENT);
	result = kmalloc(sizeof(*result) + len + 1);
	if (!result)
		return ERR_PTR(-ENOMEM);
	memcpy(result->iname, filename, len + 1);
	result->name = result->iname;
	return result;
}

__noinline __noclone void putname(struct filename *name)
{
	kfree(name);
}

static __noinline __noclone long hash_name(const char *name, struct qstr *this)
{
	unsigned int len = 0;

	while (name[len] && name[len] != '/')
		len++;
	if (len > NAME_MAX)
		return -ENAMETOOLONG;
	this->name = name;
	this->len = len;
	this->hash = full_name_hash(name, len);
	return 0;
}

static __noinline __noclone struct dentry *lookup_fast(struct nameidata *nd,
						       const struct qstr *name)
{
	return d_lookup(nd->dentry, name);
}

static inline notrace bool is_dot(const struct qstr *name)
{
	return name->len == 1 && name->name[0] == '.';
}

static inline notrace bool is_dotdot(const struct qstr *name)
{
	return name->len == 2 && name->name[0] == '.' && name->name[1] == '.';
}

static __noinline __noclone long walk_component(struct nameidata *nd,
						const struct qstr *name)
{
	struct dentry *dentry;

	if (is_dot(name))
		return 0;
	if (is_dotdot(name)) {
		nd->dentry = nd->dentry->d_parent;
		return 0;
	}
	dentry = lookup_fast(nd, name);
	if (!dentry)
		return -ENOENT;
	if (!d_is_dir(dentry))
		return -ENOTDIR;
	nd->dentry = dentry;
	return 0;
}

/*
 * Walk every component but the last, which is left in nd->last for the
 * caller (open, create or unlink) to deal with.  Relative names start at
 * the root: no task has any other working directory.
 */
static __noinline __noclone long link_path_walk(const char *name,
						struct nameidata *nd)
{
	long err;

	nd->dentry = root_sb.s_root;
	nd->last.name = name;
	nd->last.len = 0;
	for (;;) {
		struct qstr this;

		while (*name == '/')
			name++;
		if (!*name)
			return 0;
		err = hash_name(name, &this);
		if (err)
			return err;
		name += this.len;
		while (*name == '/')
			name++;
		if (!*name) {
			nd->last = this;
			return 0;
		}
		err = walk_component(nd, &this);
		if (err)
			return err;
	}
}

/* The last component, as a referenced dentry, or NULL if it does not exist. */
static __noinline __noclone struct dentry *lookup_last(struct nameidata *nd)
{
	if (!nd->last.len)
		return dget(nd->dentry);
	if (is_dot(&nd->last))
		return dget(nd->dentry);
	if (is_dotdot(&nd->last))
		return dget(nd->dentry->d_parent);
	return dget(lookup_fast(nd, &nd->last));
}

static __noinline __noclone struct dentry *lookup_open(struct nameidata *nd,
						       unsigned int mode)
{
	struct inode *dir = nd->dentry->d_inode;
	struct dentry *dentry;
	long err;

	dentry = d_alloc(nd->dentry, &nd->last);
	if (!dentry)
		return ERR_PTR(-ENOMEM);
	err = dir->i_op->create(dir, dentry, mode);
	if (err) {
		dput(dentry);
		return ERR_PTR(err);
	}
	return dentry;
}

static __noinline __noclone long do_last(struct nameidata *nd,
					 struct file *file, int flags)
{
	struct dentry *dentry = lookup_last(nd);

	if (!dentry) {
		if (!(flags & O_CREAT))
			return -ENOENT;
		dentry = lookup_open(nd, 0644);
		if (IS_ERR(dentry))
			return PTR_ERR(dentry);
	} else if ((flags & O_CREAT) && d_is_dir(dentry)) {
		dput(dentry);
		return -EISDIR;
	}
	return vfs_open(file, dentry);
}

static __noinline __noclone struct file *path_openat(struct filename *name,
						     int flags)
{
	struct nameidata nd;
	struct file *file;
	long err;

	file = alloc_empty_file(flags);
	if (IS_ERR(file))
		return file;
	err = link_path_walk(name->name, &nd);
	if (!err)
		err = do_last(&nd, file, flags);
	if (err) {
		fput(file);
		return ERR_PTR(err);
	}
	return file;
}

__noinline __noclone struct file *do_filp_open(struct filename *name, int flags)
{
	return path_openat(name, flags);
}

/* unlink and mkdir */

static __noinline __noclone long vfs_unlink(struct inode *dir,
					    struct dentry *dentry)
{
	long err = dir->i_op->unlink(dir, dentry);

	if (!err)
		d_delete(dentry);
	return err;
}

static __noinline __noclone long vfs_mkdir(struct inode *dir,
					   struct dentry *dentry,
					   unsigned int mode)
{
	return dir->i_op->mkdir(dir, dentry, mode);
}

static inline __attribute__((always_inline)) long do_unlinkat_locked(const char *pathname)
{
	struct filename *name = getname(pathname);
	struct nameidata nd;
	struct dentry *dentry;
	long err;

	if (IS_ERR(name))
		return PTR_ERR(name);
	err = link_path_walk(name->name, &nd);
	if (err)
		goto out;
	err = -EISDIR;
	if (!nd.last.len || is_dot(&nd.last) || is_dotdot(&nd.last))
		goto out;
	dentry = lookup_last(&nd);
	err = -ENOENT;
	if (!dentry)
		goto out;
	if (d_is_dir(dentry))
		err = -EISDIR;
	else
		err = vfs_unlink(nd.dentry->d_inode, dentry);
	dput(dentry);
out:
	putname(name);
	return err;
}

/* Under vfs_lock: the filesystem's shared state is one CPU's at a time. */
__noinline __noclone long do_unlinkat(const char *pathname)
{
	long ret;

	spin_lock(&vfs_lock);
	ret = do_unlinkat_locked(pathname);
	spin_unlock(&vfs_lock);
	return ret;
}

static inline __attribute__((always_inline)) long do_mkdirat_locked(const char *pathname, unsigned int mode)
{
	struct filename *name = getname(pathname);
	struct nameidata nd;
	struct dentry *dentry;
	long err;

	if (IS_ERR(name))
		return PTR_ERR(name);
	err = link_path_walk(name->name, &nd);
	if (err)
		goto out;
	dentry = lookup_last(&nd);
	if (dentry) {
		dput(dentry);
		err = -EEXIST;
		goto out;
	}
	err = -ENOMEM;
	dentry = d_alloc(nd.dentry, &nd.last);
	if (!dentry)
		goto out;
	err = vfs_mkdir(nd.dentry->d_inode, dentry, mode);
	dput(dentry);
out:
	putname(name);
	return err;
}

/* Under vfs_lock: the filesystem's shared state is one CPU's at a time. */
__noinline __noclone long do_mkdirat(const char *pathname, unsigned int mode)
{
	long ret;

	spin_lock(&vfs_lock);
	ret = do_mkdirat_locked(pathname, mode);
	spin_unlock(&vfs_lock);
	return ret;
}
