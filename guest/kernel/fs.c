/*
 * fs.c - the VFS's file side: struct file, the fd table, open/read/write/close
 * down to the mounted filesystem's file operations, and mounting the root.
 */
#include "fs.h"

#define NR_OPEN_DEFAULT 16
#define MAX_FILES 64
#define MAX_RW_COUNT (0x7ffff000UL)

#define FS_ACCESS 0x1
#define FS_MODIFY 0x2
#define FS_OPEN 0x20

/*
 * One fd table per CPU, not per guest task: the host runs one task at a time
 * on each CPU, and the guest's context_switch is bookkeeping that must not
 * take a caller's open files away from it half-way through a host call.
 */
struct files_struct {
	unsigned long open_fds;		/* bitmap */
	unsigned int next_fd;		/* lowest fd that may be free */
	struct file *fd[NR_OPEN_DEFAULT];
};

/* A looked-up fd; the table is never shared, so it holds no reference. */
struct fd {
	struct file *file;
};

static struct files_struct cpu_files[NR_CPUS];
/* The one mounted filesystem: every path starts at its root. */
struct super_block root_sb;
static unsigned long nr_files;		/* struct files alive */
unsigned long fsnotify_events;

DEFINE_SPINLOCK(vfs_lock);

static inline notrace struct files_struct *current_files(void)
{
	return &cpu_files[smp_processor_id() % NR_CPUS];
}

/* fsnotify: no listeners, only a count of the events they would get. */

static __noinline __noclone void fsnotify(struct inode *inode,
					  unsigned int mask)
{
	inode->i_fsnotify_events++;
	fsnotify_events++;
}

static __noinline __noclone void fsnotify_open(struct file *file)
{
	fsnotify(file->f_inode, FS_OPEN);
}

static __noinline __noclone void fsnotify_access(struct file *file)
{
	fsnotify(file->f_inode, FS_ACCESS);
}

static __noinline __noclone void fsnotify_modify(struct file *file)
{
	fsnotify(file->f_inode, FS_MODIFY);
}

/* struct file and the fd table */

__noinline __noclone struct file *alloc_empty_file(unsigned int flags)
{
	struct file *f;

	if (nr_files >= MAX_FILES)
		return ERR_PTR(-ENFILE);
	f = kzalloc(sizeof(*f));
	if (!f)
		return ERR_PTR(-ENOMEM);
	f->f_count = 1;
	f->f_flags = flags;
	nr_files++;
	return f;
}

static __noinline __noclone void __fput(struct file *file)
{
	dput(file->f_dentry);
	nr_files--;
	kfree(file);
}

__noinline __noclone void fput(struct file *file)
{
	if (--file->f_count == 0)
		__fput(file);
}

__noinline __noclone long get_unused_fd_flags(unsigned int flags)
{
	struct files_struct *files = current_files();
	unsigned int fd;

	for (fd = files->next_fd; fd < NR_OPEN_DEFAULT; fd++) {
		if (!(files->open_fds & (1UL << fd))) {
			files->open_fds |= 1UL << fd;
			files->next_fd = fd + 1;
			return fd;
		}
	}
	return -EMFILE;
}

static __noinline __noclone void put_unused_fd(unsigned int fd)
{
	struct files_struct *files = current_files();

	files->open_fds &= ~(1UL << fd);
	if (fd < files->next_fd)
		files->next_fd = fd;
}

__noinline __noclone void fd_install(unsigned int fd, struct file *file)
{
	current_files()->fd[fd] = file;
}

__noinline __noclone struct fd fdget(unsigned int fd)
{
	struct files_struct *files = current_files();
	struct fd f = { NULL };

	if (fd < NR_OPEN_DEFAULT)
		f.file = files->fd[fd];
	return f;
}

static __noinline __noclone struct file *pick_file(struct files_struct *files,
						   unsigned int fd)
{
	struct file *file;

	if (fd >= NR_OPEN_DEFAULT || !files->fd[fd])
		return NULL;
	file = files->fd[fd];
	files->fd[fd] = NULL;
	files->open_fds &= ~(1UL << fd);
	if (fd < files->next_fd)
		files->next_fd = fd;
	return file;
}

static __noinline __noclone long do_dentry_open(struct file *f,
						struct dentry *dentry)
{
	f->f_dentry = dentry;
	f->f_inode = dentry->d_inode;
	f->f_op = dentry->d_inode->i_fop;
	f->f_pos = 0;
	return 0;
}

/* Takes over the caller's reference to dentry, whatever the outcome. */
__noinline __noclone long vfs_open(struct file *file, struct dentry *dentry)
{
	return do_dentry_open(file, dentry);
}

static inline __attribute__((always_inline)) long do_sys_open_locked(const char *filename, int flags)
{
	struct filename *tmp = getname(filename);
	struct file *f;
	long fd;

	if (IS_ERR(tmp))
		return PTR_ERR(tmp);
	fd = get_unused_fd_flags(flags);
	if (fd >= 0) {
		f = do_filp_open(tmp, flags);
		if (IS_ERR(f)) {
			put_unused_fd(fd);
			fd = PTR_ERR(f);
		} else {
			fsnotify_open(f);
			fd_install(fd, f);
		}
	}
	putname(tmp);
	return fd;
}

/* Under vfs_lock: the filesystem's shared state is one CPU's at a time. */
__noinline __noclone long do_sys_open(const char *filename, int flags)
{
	long ret;

	spin_lock(&vfs_lock);
	ret = do_sys_open_locked(filename, flags);
	spin_unlock(&vfs_lock);
	return ret;
}
EXPORT_SYMBOL(do_sys_open);

/* read, write, close */

static __noinline __noclone long rw_verify_area(struct file *file, loff_t *ppos,
						size_t count)
{
	loff_t pos = *ppos;

	if (unlikely((ssize_t)count < 0))
		return -EINVAL;
	if (unlikely(pos < 0 || pos + (loff_t)count < pos))
		return -EINVAL;
	return 0;
}

__noinline __noclone ssize_t vfs_read(struct file *file, char *buf,
				      size_t count, loff_t *pos)
{
	ssize_t ret;

	if (!file->f_op->read)
		return -EINVAL;
	ret = rw_verify_area(file, pos, count);
	if (ret)
		return ret;
	if (count > MAX_RW_COUNT)
		count = MAX_RW_COUNT;
	ret = file->f_op->read(file, buf, count, pos);
	if (ret > 0)
		fsnotify_access(file);
	return ret;
}

__noinline __noclone ssize_t vfs_write(struct file *file, const char *buf,
				       size_t count, loff_t *pos)
{
	ssize_t ret;

	if (!file->f_op->write)
		return -EINVAL;
	ret = rw_verify_area(file, pos, count);
	if (ret)
		return ret;
	if (count > MAX_RW_COUNT)
		count = MAX_RW_COUNT;
	ret = file->f_op->write(file, buf, count, pos);
	if (ret > 0)
		fsnotify_modify(file);
	return ret;
}

static inline __attribute__((always_inline)) long ksys_read_locked(int fd, char *buf, size_t count)
{
	struct fd f = fdget(fd);
	loff_t pos;
	ssize_t ret;

	if (!f.file)
		return -EBADF;
	pos = f.file->f_pos;
	ret = vfs_read(f.file, buf, count, &pos);
	if (ret >= 0)
		f.file->f_pos = pos;
	return ret;
}

/* Under vfs_lock: the filesystem's shared state is one CPU's at a time. */
__noinline __noclone long ksys_read(int fd, char *buf, size_t count)
{
	long ret;

	spin_lock(&vfs_lock);
	ret = ksys_read_locked(fd, buf, count);
	spin_unlock(&vfs_lock);
	return ret;
}
EXPORT_SYMBOL(ksys_read);

static inline __attribute__((always_inline)) long ksys_write_locked(int fd, const char *buf, size_t count)
{
	struct fd f = fdget(fd);
	loff_t pos;
	ssize_t ret;

	if (!f.file)
		return -EBADF;
	pos = f.file->f_pos;
	ret = vfs_write(f.file, buf, count, &pos);
	if (ret >= 0)
		f.file->f_pos = pos;
	return ret;
}

/* Under vfs_lock: the filesystem's shared state is one CPU's at a time. */
__noinline __noclone long ksys_write(int fd, const char *buf, size_t count)
{
	long ret;

	spin_lock(&vfs_lock);
	ret = ksys_write_locked(fd, buf, count);
	spin_unlock(&vfs_lock);
	return ret;
}
EXPORT_SYMBOL(ksys_write);

__noinline __noclone long filp_close(struct file *filp)
{
	fput(filp);
	return 0;
}

static inline __attribute__((always_inline)) long ksys_close_locked(int fd)
{
	struct file *file = pick_file(current_files(), fd);

	if (!file)
		return -EBADF;
	return filp_close(file);
}

/* Under vfs_lock: the filesystem's shared state is one CPU's at a time. */
__noinline __noclone long ksys_close(int fd)
{
	long ret;

	spin_lock(&vfs_lock);
	ret = ksys_close_locked(fd);
	spin_unlock(&vfs_lock);
	return ret;
}
EXPORT_SYMBOL(ksys_close);

/* boot: mount the root and give it a few files */

static __noinline __noclone long init_mount_tree(void)
{
	return ramfs_fill_super(&root_sb);
}

static __noinline __noclone long init_write_file(const char *path,
						 const char *text)
{
	long fd = do_sys_open(path, O_CREAT), ret;

	if (fd < 0)
		return fd;
	ret = ksys_write(fd, text, strlen(text));
	ksys_close(fd);
	return ret < 0 ? ret : 0;
}

void vfs_caches_init(void)
{
	long err = init_mount_tree();

	if (!err)
		err = do_mkdirat("/etc", 0755);
	if (!err)
		err = do_mkdirat("/tmp", 01777);
	if (!err)
		err = init_write_file("/etc/hostname", "ftrace-emu\n");
	if (!err)
		err = init_write_file("/etc/os-release",
				      "NAME=\"ftrace-emu\"\nVERSION_ID=4.8\n");
	if (err)
		printk(KERN_ERR "VFS: cannot populate the root: error %ld\n",
		       err);
	else
		printk(KERN_INFO "VFS: Mounted root (ramfs filesystem).\n");
}
