// Berth's child executor: everything between clone and execve.
//
// Rules for this file (see design.md): the child only runs async-signal-safe code. No
// malloc, no stdio, no Swift, no locale. Buffers live on the stack or in static storage
// of the child's private copy of the address space. A failure is reported as one
// fixed-size record {stage, errno, index} on the sync socket, then _exit.
#define _GNU_SOURCE
#include "internal.h"

const int CB_CLONE_NEWNS = CLONE_NEWNS, CB_CLONE_NEWUTS = CLONE_NEWUTS,
          CB_CLONE_NEWIPC = CLONE_NEWIPC, CB_CLONE_NEWUSER = CLONE_NEWUSER,
          CB_CLONE_NEWPID = CLONE_NEWPID, CB_CLONE_NEWNET = CLONE_NEWNET,
          CB_CLONE_NEWCGROUP = CLONE_NEWCGROUP, CB_CLONE_NEWTIME = CLONE_NEWTIME;
const int CB_O_PATH = O_PATH;
const unsigned long CB_MS_RDONLY = MS_RDONLY, CB_MS_NOSUID = MS_NOSUID, CB_MS_NODEV = MS_NODEV,
    CB_MS_NOEXEC = MS_NOEXEC, CB_MS_SYNCHRONOUS = MS_SYNCHRONOUS, CB_MS_REMOUNT = MS_REMOUNT,
    CB_MS_MANDLOCK = MS_MANDLOCK, CB_MS_DIRSYNC = MS_DIRSYNC, CB_MS_NOSYMFOLLOW = MS_NOSYMFOLLOW,
    CB_MS_NOATIME = MS_NOATIME, CB_MS_NODIRATIME = MS_NODIRATIME, CB_MS_BIND = MS_BIND,
    CB_MS_REC = MS_REC, CB_MS_SILENT = MS_SILENT, CB_MS_UNBINDABLE = MS_UNBINDABLE,
    CB_MS_PRIVATE = MS_PRIVATE, CB_MS_SLAVE = MS_SLAVE, CB_MS_SHARED = MS_SHARED,
    CB_MS_RELATIME = MS_RELATIME, CB_MS_STRICTATIME = MS_STRICTATIME,
    CB_MS_LAZYTIME = MS_LAZYTIME, CB_MS_I_VERSION = MS_I_VERSION;
const uint64_t CB_MOUNT_ATTR_RDONLY = 0x1, CB_MOUNT_ATTR_NOSUID = 0x2, CB_MOUNT_ATTR_NODEV = 0x4,
    CB_MOUNT_ATTR_NOEXEC = 0x8, CB_MOUNT_ATTR__ATIME = 0x70, CB_MOUNT_ATTR_RELATIME = 0x0,
    CB_MOUNT_ATTR_NOATIME = 0x10, CB_MOUNT_ATTR_STRICTATIME = 0x20,
    CB_MOUNT_ATTR_NODIRATIME = 0x80, CB_MOUNT_ATTR_NOSYMFOLLOW = 0x200000;

// ---------------------------------------------------------------------------------
// Child side. Everything below until cb_spawn runs only in the cloned processes.
// ---------------------------------------------------------------------------------

static int child_sync = -1;

static void send_record(int32_t stage, int32_t err, int32_t index, int32_t value) {
    berth_report r = {stage, err, index, value};
    ssize_t n;
    do { n = write(child_sync, &r, sizeof r); } while (n < 0 && errno == EINTR);
}

// Report a failure and end this process. errno is captured by the caller before any
// other call can clobber it.
__attribute__((noreturn)) static void fail(int stage, int err, int index) {
    send_record(stage, err, index, 0);
    _exit(1);
}

// Wait for the parent's go-ahead byte. End of file means the parent died half-way:
// leave quietly so nothing is left behind (the parent-death signal usually got us first).
static void wait_go(void) {
    char c;
    ssize_t n;
    do { n = read(child_sync, &c, 1); } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(1);
}

static size_t c_strlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }

// Append the decimal form of v to buf at *pos (buf has room: callers size it).
static void put_uint(char *buf, size_t *pos, unsigned long v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) buf[(*pos)++] = tmp[--n];
}

// "/proc/self/fd/N": mount(2) follows this magic link to exactly the object the fd holds,
// so a path inside the container is never walked twice by the kernel (no symlink race).
static const char *fd_path(char buf[40], int fd) {
    static const char prefix[] = "/proc/self/fd/";
    size_t pos = 0;
    for (size_t i = 0; prefix[i]; i++) buf[pos++] = prefix[i];
    put_uint(buf, &pos, (unsigned long)fd);
    buf[pos] = 0;
    return buf;
}

static int openat2_in_root(int rootfd, const char *path, int flags) {
    // RESOLVE_IN_ROOT treats rootfd as "/" for every symlink and "..": a symlink planted
    // in the image (CVE-2021-30465, CVE-2023-27561) cannot lead a mount out of the rootfs.
    // RESOLVE_NO_MAGICLINKS refuses /proc/*/fd-style jumps to host objects.
    struct cb_open_how how = {(uint64_t)(flags | O_CLOEXEC), 0,
                              CB_RESOLVE_IN_ROOT | CB_RESOLVE_NO_MAGICLINKS};
    long r;
    do { r = syscall(SYS_openat2, rootfd, path, &how, sizeof how); } while (r < 0 && errno == EINTR);
    return (int)r;
}

// Open (creating when missing) `rel` inside the rootfs. Intermediate components are
// directories; the last is a directory or, with as_file, an empty regular file.
// A component that exists but does not resolve is a dangling symlink: its target is
// created instead, inside the root (an image's "/var/lock -> /run/lock" and the like).
// Returns an O_PATH fd or -1 with errno set.
static int open_create_in_root(int rootfd, const char *rel, int as_file) {
    char buf[PATH_MAX];
    size_t len = c_strlen(rel);
    if (len == 0) return openat2_in_root(rootfd, ".", O_PATH | O_DIRECTORY);
    if (len >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, rel, len + 1);

    for (int hops = 0; hops < 40; hops++) {
        int fd = openat2_in_root(rootfd, buf, O_PATH);
        if (fd >= 0 || errno != ENOENT) return fd;

        // Walk from the top: each missing component is created inside its parent, which
        // was itself resolved inside the root, then resolved again inside the root.
        int cur = openat2_in_root(rootfd, ".", O_PATH | O_DIRECTORY);
        if (cur < 0) return -1;
        size_t start = 0;
        int retarget = 0;
        while (start < len) {
            size_t end = start;
            while (end < len && buf[end] != '/') end++;
            int last = end >= len;
            char saved = buf[end];
            buf[end] = 0;
            int next = openat2_in_root(rootfd, buf, O_PATH);
            if (next < 0 && errno == ENOENT) {
                const char *name = buf + start;
                int r = (last && as_file) ? mknodat(cur, name, S_IFREG | 0644, 0) : mkdirat(cur, name, 0755);
                if (r < 0 && errno == EEXIST) {
                    // Dangling symlink: continue with "<its target>/<the rest>".
                    char link[PATH_MAX], tmp[PATH_MAX];
                    ssize_t n = readlinkat(cur, name, link, sizeof link - 1);
                    if (n <= 0) { int e = n < 0 ? errno : ENOENT; close(cur); errno = e; return -1; }
                    link[n] = 0;
                    size_t pos = 0;
                    if (link[0] != '/' && start > 0) { memcpy(tmp, buf, start); pos = start; }
                    const char *l = link[0] == '/' ? link + 1 : link;
                    size_t ll = c_strlen(l), rest = last ? 0 : len - end;
                    if (pos + ll + rest + 1 > sizeof tmp) { close(cur); errno = ENAMETOOLONG; return -1; }
                    memcpy(tmp + pos, l, ll);
                    pos += ll;
                    buf[end] = saved;
                    if (rest) { memcpy(tmp + pos, buf + end, rest); pos += rest; }
                    tmp[pos] = 0;
                    memcpy(buf, tmp, pos + 1);
                    len = pos;
                    close(cur);
                    retarget = 1;
                    break;
                }
                if (r < 0) { int e = errno; close(cur); errno = e; return -1; }
                next = openat2_in_root(rootfd, buf, O_PATH);
            }
            buf[end] = saved;
            if (next < 0) { int e = errno; close(cur); errno = e; return -1; }
            close(cur);
            cur = next;
            start = end + 1;
        }
        if (!retarget) return cur;
        if (len == 0) return openat2_in_root(rootfd, ".", O_PATH | O_DIRECTORY);
    }
    errno = ELOOP;
    return -1;
}

// Split "a/b/c" into a parent fd (created as needed, resolved in root) and the last name.
static int open_parent_in_root(int rootfd, const char *rel, char name[NAME_MAX + 1]) {
    char buf[PATH_MAX];
    size_t len = c_strlen(rel);
    if (len == 0 || len >= sizeof buf) { errno = EINVAL; return -1; }
    memcpy(buf, rel, len + 1);
    size_t slash = len;
    while (slash > 0 && buf[slash - 1] != '/') slash--;
    size_t nlen = len - slash;
    if (nlen == 0 || nlen > NAME_MAX) { errno = EINVAL; return -1; }
    memcpy(name, buf + slash, nlen + 1);
    if (slash == 0) return openat2_in_root(rootfd, ".", O_PATH | O_DIRECTORY);
    buf[slash - 1] = 0;
    return open_create_in_root(rootfd, buf, 0);
}

// Flags a remount must keep: in a user namespace the kernel locks nosuid/nodev/noexec/ro
// and atime flags of mounts inherited from the host, and refuses a remount that drops them.
static unsigned long locked_flags(const char *path) {
    struct statvfs st;
    if (statvfs(path, &st) != 0) return 0;
    unsigned long keep = ST_NOSUID | ST_NODEV | ST_NOEXEC | ST_RDONLY | ST_NOATIME |
                         ST_NODIRATIME | ST_RELATIME;
    return st.f_flag & keep; // ST_* values equal the MS_* ones for these bits
}

static void put_octal(char *buf, size_t *pos, unsigned v) {
    char tmp[12];
    int n = 0;
    do { tmp[n++] = (char)('0' + (v & 7)); v >>= 3; } while (v);
    while (n) buf[(*pos)++] = tmp[--n];
}

// Whether comma-separated mount data holds a "mode=" option.
static int has_mode_option(const char *data) {
    if (!data) return 0;
    for (const char *s = data; *s;) {
        if (s[0] == 'm' && s[1] == 'o' && s[2] == 'd' && s[3] == 'e' && s[4] == '=') return 1;
        while (*s && *s != ',') s++;
        if (*s) s++;
    }
    return 0;
}

// tmpcopyup: copies the directory `src` (the one a new tmpfs now covers, opened before the
// mount) into `dst` (the tmpfs), as runc does: directories, regular files, symlinks and
// device/fifo nodes, with their owners and modes (setuid, setgid, sticky included);
// sockets are skipped, hard links become copies. Image content is hostile: every name is
// resolved relative to an fd of the directory being walked, nothing is followed
// (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW; a symlink is copied as a link, its target never read),
// so the copy reads only the covered directory and writes only into the new tmpfs.
// No allocation: a getdents64 buffer per level on the stack, depth bounded.
struct cb_dirent64 { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; };

static int copy_file_contents(int from, int to) {
    for (;;) {
        ssize_t n = sendfile(to, from, NULL, 1 << 20);
        if (n == 0) return 0;
        if (n > 0) continue;
        if (errno == EINTR) continue;
        if (errno != EINVAL && errno != ENOSYS) return -1;
        // Not every filesystem feeds sendfile: plain reads and writes.
        char buf[4096];
        for (;;) {
            ssize_t r = read(from, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return -1;
            if (r == 0) return 0;
            for (ssize_t off = 0; off < r;) {
                ssize_t w = write(to, buf + off, (size_t)(r - off));
                if (w < 0 && errno == EINTR) continue;
                if (w < 0) return -1;
                off += w;
            }
        }
    }
}

static int copy_tree(int src, int dst, int depth) {
    if (depth > 64) { errno = ELOOP; return -1; }
    char buf[2048];
    for (;;) {
        long n = syscall(SYS_getdents64, src, buf, sizeof buf);
        if (n < 0) return -1;
        if (n == 0) return 0;
        for (long off = 0; off < n;) {
            struct cb_dirent64 *d = (struct cb_dirent64 *)(buf + off);
            off += d->reclen;
            const char *name = d->name;
            if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]))) continue;
            struct stat st;
            if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return -1;
            mode_t perm = st.st_mode & 07777;
            if (S_ISDIR(st.st_mode)) {
                if (mkdirat(dst, name, 0700) != 0) return -1;
                int s2 = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (s2 < 0) return -1;
                int d2 = openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (d2 < 0) { int e = errno; close(s2); errno = e; return -1; }
                int r = copy_tree(s2, d2, depth + 1);
                // Owner, then mode (chown clears setuid/setgid), once the content is in.
                if (r == 0 && (fchown(d2, st.st_uid, st.st_gid) != 0 || fchmod(d2, perm) != 0)) r = -1;
                int e = errno;
                close(s2);
                close(d2);
                errno = e;
                if (r != 0) return -1;
            } else if (S_ISREG(st.st_mode)) {
                int from = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                if (from < 0) return -1;
                int to = openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (to < 0) { int e = errno; close(from); errno = e; return -1; }
                int r = copy_file_contents(from, to);
                if (r == 0 && (fchown(to, st.st_uid, st.st_gid) != 0 || fchmod(to, perm) != 0)) r = -1;
                int e = errno;
                close(from);
                close(to);
                errno = e;
                if (r != 0) return -1;
            } else if (S_ISLNK(st.st_mode)) {
                char target[PATH_MAX];
                ssize_t l = readlinkat(src, name, target, sizeof target - 1);
                if (l < 0) return -1;
                target[l] = 0;
                if (symlinkat(target, dst, name) != 0) return -1;
                if (fchownat(dst, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) return -1;
            } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) {
                if (mknodat(dst, name, (st.st_mode & S_IFMT) | perm, st.st_rdev) != 0) return -1;
                // Just made by us in a tmpfs nobody else can reach yet: not a symlink.
                if (fchownat(dst, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) return -1;
                if (fchmodat(dst, name, perm, 0) != 0) return -1;
            }
        }
    }
}

// Bind sources in a user namespace: the namespace's root may not be allowed to reach them
// (a 0700 directory of the host's root), so the parent, still host root, opens each one
// through /proc/<init>/root (so the fd belongs to our mount namespace, which mount(2)
// requires of a bind source) and passes it here, as runc does. Indexed by mount; -1: none.
#define BERTH_MAX_BIND_FDS 1024
static int bind_source_fd[BERTH_MAX_BIND_FDS];

static void receive_bind_sources(const berth_plan *p) {
    for (int i = 0; i < p->nmounts && i < BERTH_MAX_BIND_FDS; i++) bind_source_fd[i] = -1;
    if (!p->bind_fds_from_parent) return;
    send_record(BERTH_MSG_MOUNT_FDS, 0, -1, 0);
    for (int i = 0; i < p->nmounts; i++) {
        if (!p->mounts[i].bind) continue;
        int fd = cb_recv_fd(child_sync);
        if (fd == -EBADMSG) continue; // the parent could not open it: the path is tried below
        if (fd < 0) fail(BERTH_STAGE_SYNC, -fd, -1);
        if (i < BERTH_MAX_BIND_FDS) bind_source_fd[i] = fd; else close(fd);
    }
}

static void do_mount(int rootfd, const berth_mount *m, int source_fd) {
    char pbuf[40];
    int bound_instead = 0;
    int covered = -1; // tmpcopyup: the directory the tmpfs is about to cover
    if (m->ordinary_dir) {
        // runc's rule for proc and sysfs: an existing destination must be a real directory.
        // A /proc that is a symlink in the image is refused rather than followed (even
        // inside the root), so these mounts never land anywhere but where they are named.
        char name[NAME_MAX + 1];
        struct stat st;
        int dir = open_parent_in_root(rootfd, m->dest, name);
        if (dir < 0) fail(BERTH_STAGE_MOUNT_DEST, errno, m->index);
        if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
            fail(BERTH_STAGE_MOUNT_NOT_DIR, ENOTDIR, m->index);
        close(dir);
    }
    // As runc: a tmpfs without mode= takes the mode of the directory it covers only when
    // that directory was in the image; one made for it keeps tmpfs' own 1777 (Docker's
    // --tmpfs /scratch is then writable by any user, as with runc).
    int tmpfs_copy_mode = 0;
    if (!m->bind && m->fstype && strcmp(m->fstype, "tmpfs") == 0 && !has_mode_option(m->data)) {
        int before = openat2_in_root(rootfd, m->dest, O_PATH);
        if (before >= 0) { tmpfs_copy_mode = 1; close(before); }
    }
    int fd = open_create_in_root(rootfd, m->dest, m->dest_is_file);
    if (fd < 0) fail(BERTH_STAGE_MOUNT_DEST, errno, m->index);
    if (m->copyup) {
        // Opened before the mount: afterwards this fd still reads the covered directory.
        covered = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (covered < 0) fail(BERTH_STAGE_MOUNT_COPYUP, errno, m->index);
    }

    if (m->bind) {
        unsigned long f = MS_BIND | (m->bind == 2 ? MS_REC : 0);
        char sbuf[40];
        const char *src = source_fd >= 0 ? fd_path(sbuf, source_fd) : m->source;
        if (mount(src, fd_path(pbuf, fd), NULL, f, NULL) != 0)
            fail(BERTH_STAGE_MOUNT, errno, m->index);
        if (source_fd >= 0) close(source_fd);
    } else {
        const char *data = m->data;
        static char tmpfs_data[4096];
        if (tmpfs_copy_mode) {
            // The covered directory's mode, setuid, setgid and sticky bits included.
            struct stat st;
            if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
                size_t pos = 0, dl = data ? c_strlen(data) : 0;
                if (dl + 24 < sizeof tmpfs_data) {
                    if (dl) { memcpy(tmpfs_data, data, dl); pos = dl; tmpfs_data[pos++] = ','; }
                    memcpy(tmpfs_data + pos, "mode=0", 6);
                    pos += 6;
                    put_octal(tmpfs_data, &pos, st.st_mode & 07777);
                    tmpfs_data[pos] = 0;
                    data = tmpfs_data;
                }
            }
        }
        if (mount(m->source, fd_path(pbuf, fd), m->fstype, m->flags, data) != 0) {
            // In a user namespace without a cgroup namespace of its own the kernel refuses
            // cgroup2: runc binds the container's cgroup (or the hierarchy) instead, and
            // applies the mount's flags (ro...) with a remount below. The source is a path
            // Berth chose on the host, never one from the image.
            if (!m->cgroup2_fallback || (errno != EPERM && errno != EBUSY))
                fail(BERTH_STAGE_MOUNT, errno, m->index);
            if (mount(m->cgroup2_fallback, fd_path(pbuf, fd), NULL, MS_BIND | MS_REC, NULL) != 0)
                fail(BERTH_STAGE_MOUNT, errno, m->index);
            bound_instead = 1;
        }
    }
    close(fd);

    // The fd above names the directory *under* the new mount. Re-resolve so the remount,
    // propagation and attribute changes below hit the new mount, never the one beneath.
    fd = openat2_in_root(rootfd, m->dest, O_PATH);
    if (fd < 0) fail(BERTH_STAGE_MOUNT_DEST, errno, m->index);
    const char *p = fd_path(pbuf, fd);

    if (covered >= 0) {
        int into = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (into < 0 || copy_tree(covered, into, 0) != 0) fail(BERTH_STAGE_MOUNT_COPYUP, errno, m->index);
        close(into);
        close(covered);
    }
    if (m->is_proc) {
        // Anything later written under /proc must really go to procfs (CVE-2023-27561).
        struct statfs sfs;
        if (fstatfs(fd, &sfs) != 0) fail(BERTH_STAGE_PROC_CHECK, errno, m->index);
        if (sfs.f_type != PROC_SUPER_MAGIC) fail(BERTH_STAGE_PROC_CHECK, EXDEV, m->index);
    }
    // SELinux: mqueue takes no context= option; its root is labelled instead, as runc does.
    if (m->file_label && setxattr(p, "security.selinux", m->file_label, c_strlen(m->file_label) + 1, 0) != 0)
        fail(BERTH_STAGE_MOUNT_LABEL, errno, m->index);
    unsigned long remount = m->bind ? m->remount_flags
        : bound_instead ? m->flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME |
                                      MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME) : 0;
    if (remount) {
        unsigned long f = MS_REMOUNT | MS_BIND | remount | locked_flags(p);
        if (mount(NULL, p, NULL, f, NULL) != 0) fail(BERTH_STAGE_MOUNT_REMOUNT, errno, m->index);
    }
    for (int i = 0; i < 4 && m->propagation[i]; i++) {
        if (mount(NULL, p, NULL, m->propagation[i], NULL) != 0)
            fail(BERTH_STAGE_MOUNT_PROPAGATION, errno, m->index);
    }
    if (m->attr_set || m->attr_clr) {
        struct cb_mount_attr a = {m->attr_set, m->attr_clr, 0, 0};
        if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a) != 0)
            fail(BERTH_STAGE_MOUNT_SETATTR, errno, m->index);
    }
    close(fd);
}

static void do_device(int rootfd, const berth_device *d) {
    char name[NAME_MAX + 1];
    char pbuf[40];
    int dir = open_parent_in_root(rootfd, d->dest, name);
    if (dir < 0) fail(BERTH_STAGE_DEVICE, errno, d->index);
    if (d->bind) {
        // Inside a user namespace mknod is refused: bind the host's node onto an empty file.
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 && errno != EEXIST) fail(BERTH_STAGE_DEVICE, errno, d->index);
        if (fd >= 0) close(fd);
        fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) fail(BERTH_STAGE_DEVICE, errno, d->index);
        if (mount(d->host_path, fd_path(pbuf, fd), NULL, MS_BIND, NULL) != 0)
            fail(BERTH_STAGE_DEVICE, errno, d->index);
        close(fd);
    } else {
        // Whatever the image put there (a symlink to a host path, a regular file posing as
        // /dev/null) is replaced by the real node.
        if (mknodat(dir, name, d->mode, (dev_t)d->dev) != 0) {
            if (errno != EEXIST) fail(BERTH_STAGE_DEVICE, errno, d->index);
            if (unlinkat(dir, name, 0) != 0) fail(BERTH_STAGE_DEVICE, errno, d->index);
            if (mknodat(dir, name, d->mode, (dev_t)d->dev) != 0)
                fail(BERTH_STAGE_DEVICE, errno, d->index);
        }
        if (fchownat(dir, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) != 0)
            fail(BERTH_STAGE_DEVICE, errno, d->index);
    }
    close(dir);
}

static void do_symlink(int rootfd, const berth_symlink *s, int index) {
    char name[NAME_MAX + 1];
    int dir = open_parent_in_root(rootfd, s->dest, name);
    if (dir < 0) fail(BERTH_STAGE_SYMLINK, errno, index);
    if (s->replace) (void)unlinkat(dir, name, 0);
    if (symlinkat(s->target, dir, name) != 0 && errno != EEXIST)
        fail(BERTH_STAGE_SYMLINK, errno, index);
    close(dir);
}

static int move_mount_onto(int tree, int target) {
    return (int)syscall(CB_SYS_move_mount, tree, "", target, "",
                        CB_MOVE_MOUNT_F_EMPTY_PATH | CB_MOVE_MOUNT_T_EMPTY_PATH);
}

// linux.sysctl, written under the container's /proc/sys. That directory must really be
// procfs (CVE-2023-27561: a symlink or a bind in its place would send the writes to the
// host), and each key is opened beneath it with no symlink, magic link or mount crossing.
static void apply_sysctls(const berth_plan *p, int root) {
    if (p->nsysctls == 0) return;
    int sys = openat2_in_root(root, "proc/sys", O_PATH | O_DIRECTORY);
    if (sys < 0) fail(BERTH_STAGE_PROC_SYS, errno, -1);
    struct statfs sfs;
    if (fstatfs(sys, &sfs) != 0) fail(BERTH_STAGE_PROC_SYS, errno, -1);
    if (sfs.f_type != PROC_SUPER_MAGIC) fail(BERTH_STAGE_PROC_SYS, EXDEV, -1);
    for (int i = 0; i < p->nsysctls; i++) {
        const berth_sysctl *k = &p->sysctls[i];
        struct cb_open_how how = {O_WRONLY | O_CLOEXEC | O_TRUNC, 0,
            CB_RESOLVE_BENEATH | CB_RESOLVE_NO_SYMLINKS | CB_RESOLVE_NO_MAGICLINKS | CB_RESOLVE_NO_XDEV};
        int fd = (int)syscall(SYS_openat2, sys, k->key_path, &how, sizeof how);
        if (fd < 0) fail(BERTH_STAGE_SYSCTL, errno, k->index);
        size_t len = c_strlen(k->value);
        if (write(fd, k->value, len) != (ssize_t)len) fail(BERTH_STAGE_SYSCTL, errno, k->index);
        close(fd);
    }
    close(sys);
}

// linux.readonlyPaths: a recursive read-only bind of each path onto itself.
static void apply_readonly_paths(const berth_plan *p, int root) {
    for (int i = 0; i < p->nreadonly_paths; i++) {
        int t = openat2_in_root(root, p->readonly_paths[i].path, O_PATH);
        if (t < 0 && errno == ENOENT) continue;
        if (t < 0) fail(BERTH_STAGE_READONLY_PATH, errno, p->readonly_paths[i].index);
        int tree = (int)syscall(CB_SYS_open_tree, t, "",
                                CB_OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
        if (tree < 0) fail(BERTH_STAGE_READONLY_PATH, errno, p->readonly_paths[i].index);
        struct cb_mount_attr a = {0x1 /* MOUNT_ATTR_RDONLY */, 0, 0, 0};
        if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a) != 0)
            fail(BERTH_STAGE_READONLY_PATH, errno, p->readonly_paths[i].index);
        if (move_mount_onto(tree, t) != 0) fail(BERTH_STAGE_READONLY_PATH, errno, p->readonly_paths[i].index);
        close(tree);
        close(t);
    }
}

// linux.maskedPaths: files get the container's /dev/null bound over them, directories an
// empty read-only tmpfs. CVE-2025-31133: /dev/null is first checked to be the real
// character device 1:3, so an image that replaced it (by a symlink to a host file, or a
// regular file) cannot turn masking into a writable bind of something else.
static void apply_masked_paths(const berth_plan *p, int root) {
    if (p->nmasked_paths == 0) return;
    int null = openat2_in_root(root, "dev/null", O_PATH);
    if (null < 0) fail(BERTH_STAGE_DEV_NULL, errno, -1);
    struct stat st;
    if (fstat(null, &st) != 0) fail(BERTH_STAGE_DEV_NULL, errno, -1);
    if (!S_ISCHR(st.st_mode) || st.st_rdev != (dev_t)cb_makedev(1, 3)) fail(BERTH_STAGE_DEV_NULL, EXDEV, -1);
    for (int i = 0; i < p->nmasked_paths; i++) {
        int idx = p->masked_paths[i].index;
        int t = openat2_in_root(root, p->masked_paths[i].path, O_PATH);
        if (t < 0 && errno == ENOENT) continue;
        if (t < 0) fail(BERTH_STAGE_MASK, errno, idx);
        if (fstat(t, &st) != 0) fail(BERTH_STAGE_MASK, errno, idx);
        int tree;
        if (S_ISDIR(st.st_mode)) {
            int fs = (int)syscall(CB_SYS_fsopen, "tmpfs", CB_FSOPEN_CLOEXEC);
            if (fs < 0) fail(BERTH_STAGE_MASK, errno, idx);
            if (p->mask_label && syscall(CB_SYS_fsconfig, fs, CB_FSCONFIG_SET_STRING, "context", p->mask_label, 0) != 0)
                fail(BERTH_STAGE_MASK, errno, idx);
            if (syscall(CB_SYS_fsconfig, fs, CB_FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0)
                fail(BERTH_STAGE_MASK, errno, idx);
            tree = (int)syscall(CB_SYS_fsmount, fs, CB_FSMOUNT_CLOEXEC, 0x1 | 0x2 | 0x4 | 0x8 /* ro,nosuid,nodev,noexec */);
            close(fs);
        } else {
            tree = (int)syscall(CB_SYS_open_tree, null, "", CB_OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH);
        }
        if (tree < 0) fail(BERTH_STAGE_MASK, errno, idx);
        if (move_mount_onto(tree, t) != 0) fail(BERTH_STAGE_MASK, errno, idx);
        close(tree);
        close(t);
    }
    close(null);
}

// process.terminal: a pty from the container's own devpts, opened after the root switch
// so the master can never be a host pty. CVE-2025-52565: ptmx must be the real 5:2 node,
// not something an image (or a racing container) put in its place; the peer is taken with
// TIOCGPTPEER instead of a path. The master goes to the console socket in one message (the
// pty name as payload, one fd); the peer becomes /dev/console, the controlling terminal
// and stdio of the process.
static void setup_console(const berth_plan *p) {
    if (p->console_sock < 0) return;
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) fail(BERTH_STAGE_CONSOLE, errno, 0);
    int master = openat2_in_root(root, "dev/pts/ptmx", O_RDWR | O_NOCTTY);
    if (master < 0) fail(BERTH_STAGE_CONSOLE, errno, 0);
    struct stat st;
    if (fstat(master, &st) != 0) fail(BERTH_STAGE_CONSOLE, errno, 1);
    if (!S_ISCHR(st.st_mode) || st.st_rdev != (dev_t)cb_makedev(5, 2)) fail(BERTH_STAGE_CONSOLE, EXDEV, 1);
    int unlock = 0;
    unsigned int n = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) != 0 || ioctl(master, TIOCGPTN, &n) != 0)
        fail(BERTH_STAGE_CONSOLE, errno, 2);
    int peer = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (peer < 0) fail(BERTH_STAGE_CONSOLE, errno, 2);
    if (p->console_rows || p->console_cols) {
        struct winsize ws = {p->console_rows, p->console_cols, 0, 0};
        if (ioctl(peer, TIOCSWINSZ, &ws) != 0) fail(BERTH_STAGE_CONSOLE, errno, 2);
    }
    if (fchown(peer, p->uid, (gid_t)-1) != 0 && errno != EPERM && errno != EINVAL) fail(BERTH_STAGE_CONSOLE, errno, 2);
    if (p->setup_rootfs) {
        int con = open_create_in_root(root, "dev/console", 1);
        if (con < 0) fail(BERTH_STAGE_CONSOLE, errno, 3);
        int tree = (int)syscall(CB_SYS_open_tree, peer, "", CB_OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH);
        if (tree < 0 || move_mount_onto(tree, con) != 0) fail(BERTH_STAGE_CONSOLE, errno, 3);
        close(tree);
        close(con);
    }
    char name[32];
    size_t pos = 0;
    static const char prefix[] = "/dev/pts/";
    for (size_t i = 0; prefix[i]; i++) name[pos++] = prefix[i];
    put_uint(name, &pos, n);
    name[pos] = 0;
    if (cb_send_fd_with(p->console_sock, name, pos, master) != 0) fail(BERTH_STAGE_CONSOLE, errno, 4);
    close(master);
    close(p->console_sock);
    close(root);
    if (setsid() < 0 || ioctl(peer, TIOCSCTTY, 0) != 0) fail(BERTH_STAGE_CONSOLE, errno, 5);
    for (int fd = 0; fd < 3; fd++)
        if (dup2(peer, fd) < 0) fail(BERTH_STAGE_CONSOLE, errno, 5);
    if (peer > 2) close(peer);
}

// --no-pivot: chroot leaves the rest of this mount namespace (a copy of the host's) in
// place, and the kernel lets a process in a new user namespace mount procfs or sysfs as
// long as a *full* mount of it exists anywhere in its mount namespace. A container
// process could then `unshare -mrpf` and mount a bare /proc (no masked paths, writable
// /proc/sysrq-trigger...). So every full procfs/sysfs mount outside the rootfs is detached
// here (made slave first, so the host sees nothing), or covered with a tmpfs where
// detaching is refused, as runc does. Read from our mountinfo in chunks, no allocation.
static int mountinfo_unescape(char *s) {
    // "\040" and friends (space, tab, newline, backslash) back to bytes, in place.
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
    return 0;
}

static void hide_mount_if_full_proc_or_sysfs(char *line, const char *rootfs) {
    // id parent major:minor root mountpoint options [optional...] - fstype source super
    char *f[6] = {0};
    int n = 0;
    char *q = line;
    while (n < 5 && *q) {
        while (*q == ' ') q++;
        f[n++] = q;
        while (*q && *q != ' ') q++;
        if (*q) *q++ = 0;
    }
    if (n < 5) return;
    char *dash = q;
    for (;;) {
        while (*dash == ' ') dash++;
        if (!*dash) return;
        if (dash[0] == '-' && dash[1] == ' ') break;
        while (*dash && *dash != ' ') dash++;
    }
    char *fstype = dash + 2;
    char *e = fstype;
    while (*e && *e != ' ') e++;
    *e = 0;
    if (strcmp(f[3], "/") != 0) return;
    if (strcmp(fstype, "proc") != 0 && strcmp(fstype, "sysfs") != 0) return;
    char *mp = f[4];
    mountinfo_unescape(mp);
    size_t rl = c_strlen(rootfs);
    if (strncmp(mp, rootfs, rl) == 0 && (mp[rl] == 0 || mp[rl] == '/')) return;
    if (mount(NULL, mp, NULL, MS_SLAVE | MS_REC, NULL) != 0) {
        if (errno == ENOENT) return; // a parent already went
        fail(BERTH_STAGE_PIVOT, errno, -1);
    }
    if (umount2(mp, MNT_DETACH) != 0) {
        if (errno != EINVAL && errno != EPERM) fail(BERTH_STAGE_PIVOT, errno, -1);
        if (mount("tmpfs", mp, "tmpfs", 0, NULL) != 0) fail(BERTH_STAGE_PIVOT, errno, -1);
    }
}

// Our /proc/self/mountinfo, whole, into a static buffer (no allocation); NULL + errno.
static char mountinfo_table[1 << 20];
static char *read_mountinfo(void) {
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, mountinfo_table + len, sizeof mountinfo_table - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { int e = errno; close(fd); errno = e; return NULL; }
        if (r == 0) break;
        len += (size_t)r;
        if (len == sizeof mountinfo_table - 1) { close(fd); errno = E2BIG; return NULL; }
    }
    close(fd);
    mountinfo_table[len] = 0;
    return mountinfo_table;
}

// rootfsPropagation shared: "/" is made rshared instead of rslave, so that a bind of a
// shared host mount stays in the host's peer group and mounts made under it inside the
// container reach the host (Kubernetes' Bidirectional volumes), as with runc. What Berth
// itself mounts must still not propagate: the mount holding the rootfs is made private
// first (only it), so the rootfs bind and every mount on top of it stay in this namespace.
static void make_rootfs_parent_private(const char *rootfs) {
    struct statx stx;
    if (statx(AT_FDCWD, rootfs, 0, STATX_MNT_ID, &stx) != 0 || !(stx.stx_mask & STATX_MNT_ID))
        fail(BERTH_STAGE_ROOT_PROPAGATION, errno ? errno : ENOSYS, -1);
    char *table = read_mountinfo();
    if (!table) fail(BERTH_STAGE_ROOT_PROPAGATION, errno, -1);
    for (char *line = table; *line;) {
        char *nl = line;
        while (*nl && *nl != '\n') nl++;
        int last = !*nl;
        *nl = 0;
        // "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..."
        unsigned long id = 0;
        char *q = line;
        while (*q >= '0' && *q <= '9') id = id * 10 + (unsigned long)(*q++ - '0');
        if (id == stx.stx_mnt_id) {
            for (int field = 1; field < 4; field++) {
                while (*q == ' ') q++;
                while (*q && *q != ' ') q++;
            }
            while (*q == ' ') q++;
            char *mp = q;
            while (*q && *q != ' ') q++;
            *q = 0;
            mountinfo_unescape(mp);
            if (mount(NULL, mp, NULL, MS_PRIVATE, NULL) != 0) fail(BERTH_STAGE_ROOT_PROPAGATION, errno, -1);
            return;
        }
        if (last) break;
        line = nl + 1;
    }
    fail(BERTH_STAGE_ROOT_PROPAGATION, ENOENT, -1);
}

static void hide_full_proc_and_sysfs(const char *rootfs) {
    // The whole table first (a later umount changes what is read after it), then each line.
    char *table = read_mountinfo();
    if (!table) fail(BERTH_STAGE_PIVOT, errno, -1);
    char *line = table;
    while (*line) {
        char *nl = line;
        while (*nl && *nl != '\n') nl++;
        int last = !*nl;
        *nl = 0;
        hide_mount_if_full_proc_or_sysfs(line, rootfs);
        if (last) break;
        line = nl + 1;
    }
}

static void setup_rootfs(const berth_plan *p) {
    // Our mount namespace is a copy of the host's. Make "/" slave (or private) first so
    // nothing mounted from here on propagates back to the host.
    if (mount(NULL, "/", NULL, p->root_propagation, NULL) != 0)
        fail(BERTH_STAGE_ROOT_PROPAGATION, errno, -1);
    if (p->root_propagation & MS_SHARED) make_rootfs_parent_private(p->rootfs);
    // pivot_root needs the new root to be a mount point.
    if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) != 0)
        fail(BERTH_STAGE_ROOTFS_BIND, errno, -1);
    int rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) fail(BERTH_STAGE_ROOTFS_OPEN, errno, -1);
    // Device nodes and mount points get exactly the modes asked for; the process umask
    // is applied later.
    umask(0);

    receive_bind_sources(p);
    for (int i = 0; i < p->nmounts; i++)
        do_mount(rootfd, &p->mounts[i], i < BERTH_MAX_BIND_FDS ? bind_source_fd[i] : -1);
    for (int i = 0; i < p->ndevices; i++) do_device(rootfd, &p->devices[i]);
    for (int i = 0; i < p->nsymlinks; i++) do_symlink(rootfd, &p->symlinks[i], i);

    // prestart, createRuntime and createContainer hooks run now: namespaces and mounts
    // exist, the root is not switched yet (runtime-spec "Lifecycle", steps 5-7).
    if (p->pause_for_hooks) {
        send_record(BERTH_MSG_HOOKS, 0, -1, 0);
        wait_go();
    }

    if (fchdir(rootfd) != 0) fail(BERTH_STAGE_PIVOT, errno, -1);
    if (p->no_pivot) {
        hide_full_proc_and_sysfs(p->rootfs);
        if (mount(".", "/", NULL, MS_MOVE, NULL) != 0) fail(BERTH_STAGE_PIVOT, errno, -1);
        if (chroot(".") != 0) fail(BERTH_STAGE_PIVOT, errno, -1);
    } else {
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching it
        // leaves no path to the host's filesystem. The old root is made slave first so the
        // detach does not propagate to the host. That must reach the old root only: from
        // the new root's directory "." names the new root's mount, and a recursive slave
        // there would cut every container mount off its peers (an rshared volume would no
        // longer propagate to the host). So "." is the old root's directory first.
        int oldroot = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (oldroot < 0) fail(BERTH_STAGE_PIVOT, errno, -1);
        if (syscall(SYS_pivot_root, ".", ".") != 0) fail(BERTH_STAGE_PIVOT, errno, -1);
        if (fchdir(oldroot) != 0) fail(BERTH_STAGE_PIVOT, errno, -1);
        close(oldroot);
        if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) != 0) fail(BERTH_STAGE_PIVOT, errno, -1);
        if (umount2(".", MNT_DETACH) != 0) fail(BERTH_STAGE_PIVOT, errno, -1);
    }
    if (chdir("/") != 0) fail(BERTH_STAGE_PIVOT, errno, -1);
    close(rootfd);

    // runc creates a missing cwd (Kubernetes' workingDir relies on it): as root, 0755,
    // resolved inside the new root like every other path made there, and before the root
    // may turn read-only. ("/" always exists: nothing to do.)
    if (p->cwd[0] && p->cwd[1]) {
        int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0) fail(BERTH_STAGE_CHDIR, errno, -1);
        int dir = open_create_in_root(root, p->cwd + 1, 0);
        if (dir < 0) fail(BERTH_STAGE_CHDIR, errno, -1);
        close(dir);
        close(root);
    }

    if (p->rootfs_readonly) {
        unsigned long f = MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags("/");
        if (mount(NULL, "/", NULL, f, NULL) != 0) fail(BERTH_STAGE_ROOT_READONLY, errno, -1);
    }
    if (p->root_final_propagation) {
        if (mount(NULL, "/", NULL, p->root_final_propagation, NULL) != 0)
            fail(BERTH_STAGE_ROOT_SHARED, errno, -1);
    }

    // Inside the new root now. sysctl before readonlyPaths, which usually covers /proc/sys.
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) fail(BERTH_STAGE_PIVOT, errno, -1);
    apply_sysctls(p, root);
    apply_readonly_paths(p, root);
    apply_masked_paths(p, root);
    close(root);
}

// tmpfs mounts and /dev asked read-only were mounted read-write, so that devices, the
// console, copied-up content and mounts below them could be made; now they turn
// read-only, as runc does last. Resolved again inside the new root, never followed out.
static void readonly_late_mounts(const berth_plan *p) {
    int root = -1;
    for (int i = 0; i < p->nmounts; i++) {
        const berth_mount *m = &p->mounts[i];
        if (!m->readonly_late) continue;
        if (root < 0 && (root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
            fail(BERTH_STAGE_MOUNT_READONLY, errno, m->index);
        int fd = openat2_in_root(root, m->dest, O_PATH);
        if (fd < 0) fail(BERTH_STAGE_MOUNT_READONLY, errno, m->index);
        char pbuf[40];
        const char *path = fd_path(pbuf, fd);
        unsigned long f = MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(path);
        if (mount(NULL, path, NULL, f, NULL) != 0) fail(BERTH_STAGE_MOUNT_READONLY, errno, m->index);
        close(fd);
    }
    if (root >= 0) close(root);
}

// Find the program the way Go's exec.LookPath does (runc reports its wording): a name
// with a slash is taken as is; otherwise each $PATH entry is tried. Must be a regular
// file with an execute bit. Result in `out`.
static int lookup_executable(const berth_plan *p, char out[PATH_MAX]) {
    struct stat st;
    const char *a = p->arg0;
    size_t alen = c_strlen(a);
    int has_slash = 0;
    for (size_t i = 0; i < alen; i++) if (a[i] == '/') has_slash = 1;
    if (has_slash) {
        if (alen >= PATH_MAX) return ENAMETOOLONG;
        memcpy(out, a, alen + 1);
        if (stat(out, &st) != 0) return errno;
        if (S_ISDIR(st.st_mode) || !(st.st_mode & 0111)) return EACCES;
        return 0;
    }
    if (!p->path_env) return ENOENT;
    const char *s = p->path_env;
    int denied = 0;
    for (;;) {
        const char *e = s;
        while (*e && *e != ':') e++;
        size_t dlen = (size_t)(e - s);
        if (dlen == 0) { out[0] = '.'; dlen = 1; } else if (dlen < PATH_MAX) memcpy(out, s, dlen);
        if (dlen + 1 + alen < PATH_MAX) {
            out[dlen] = '/';
            memcpy(out + dlen + 1, a, alen + 1);
            if (stat(out, &st) == 0) {
                if (!S_ISDIR(st.st_mode) && (st.st_mode & 0111)) return 0;
                denied = 1;
            }
        }
        if (!*e) break;
        s = e + 1;
    }
    return denied ? EACCES : ENOENT;
}

// HOME missing from process.env: runc sets it from the process user's entry in the
// container's /etc/passwd, or "/" (shells and many programs need it). The file belongs to
// the image, so it is treated as hostile: opened without blocking and read only if it is a
// regular file (a FIFO or a device there must not hang or feed the start), parsed in a
// fixed buffer, and the result only ever becomes the value of HOME.
static char passwd_buf[65536];
static char home_env[PATH_MAX + 8];

/* A user namespace whose setgroups(2) is denied (one made by an unprivileged caller,
 * rootless Podman's, or a child of one) takes no setgroups call: as runc, the process
 * then keeps no other groups than it can. Only a procfs file inside a user namespace is
 * believed: a container image's own /proc/self/setgroups (no proc mount in the config)
 * must not make Berth skip the call and leave the host's supplementary groups on the
 * process. */
static int setgroups_denied(const berth_plan *p) {
    if (!p->userns_setgroups) return 0;
    int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return 0;
    struct statfs sfs;
    char buf[8] = {0};
    ssize_t n = -1;
    if (fstatfs(fd, &sfs) == 0 && sfs.f_type == PROC_SUPER_MAGIC) n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n >= 4 && strncmp(buf, "deny", 4) == 0;
}

// CVE-2024-21626: a cwd reached through a leaked host fd lies outside our root, and the
// kernel then reports it as "(unreachable)/..." rather than an absolute path.
static void check_cwd_inside(void) {
    char cwd[PATH_MAX];
    if (syscall(SYS_getcwd, cwd, sizeof cwd) < 0) fail(BERTH_STAGE_CWD_OUTSIDE, errno, -1);
    if (cwd[0] != '/') fail(BERTH_STAGE_CWD_OUTSIDE, ENOENT, -1);
}

static void set_home(const berth_plan *p) {
    if (!p->set_home) return;
    const char *home = "/";
    size_t hlen = 1;
    size_t n = 0;
    int fd = open("/etc/passwd", O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        while (n < sizeof passwd_buf - 1) {
            ssize_t r = read(fd, passwd_buf + n, sizeof passwd_buf - 1 - n);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            n += (size_t)r;
        }
    }
    if (fd >= 0) close(fd);
    passwd_buf[n] = 0;
    // name:password:uid:gid:gecos:home:shell, one entry a line.
    for (char *line = passwd_buf; *line;) {
        char *end = line;
        while (*end && *end != '\n') end++;
        char *field[7];
        int nf = 1;
        field[0] = line;
        for (char *c = line; c < end && nf < 7; c++)
            if (*c == ':') field[nf++] = c + 1;
        if (nf >= 6) {
            unsigned long uid = 0;
            int digits = 0;
            char *c = field[2];
            for (; c < end && *c >= '0' && *c <= '9' && uid <= 0xffffffffUL; c++, digits++) uid = uid * 10 + (unsigned long)(*c - '0');
            if (digits > 0 && *c == ':' && uid == p->uid) {
                char *h = field[5], *e = h;
                while (e < end && *e != ':') e++;
                if (e > h) { home = h; hlen = (size_t)(e - h); }
                break;
            }
        }
        line = *end ? end + 1 : end;
    }
    if (hlen > PATH_MAX) { home = "/"; hlen = 1; }
    memcpy(home_env, "HOME=", 5);
    memcpy(home_env + 5, home, hlen);
    home_env[5 + hlen] = 0;
    ((char **)p->envp)[p->nenv] = home_env;
}

// CVE-2019-16884 and CVE-2025-52881: a security module's profile or label is put in
// force by writing this process's own /proc/self/attr files. Written through the
// container's /proc, the write could land on something else (an image's volume over
// /proc, a bind inside it, or a mount the container made over its /proc before an `exec`),
// and the program would run unconfined while Berth reported success. So the files are
// opened in a new procfs instance attached nowhere (nothing can be mounted over it) or,
// where a new instance is refused, in a clone of /proc that must be procfs's own root;
// and beneath it without crossing a mount or following a magic link.
static int private_procfs(void) {
    int fs = (int)syscall(CB_SYS_fsopen, "proc", CB_FSOPEN_CLOEXEC);
    if (fs >= 0) {
        int m = -1;
        if (syscall(CB_SYS_fsconfig, fs, CB_FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
            m = (int)syscall(CB_SYS_fsmount, fs, CB_FSMOUNT_CLOEXEC, 0x2 | 0x4 | 0x8 /* nosuid,nodev,noexec */);
        close(fs);
        if (m >= 0) return m;
    }
    int t = (int)syscall(CB_SYS_open_tree, AT_FDCWD, "/proc", CB_OPEN_TREE_CLONE | O_CLOEXEC);
    if (t < 0) t = open("/proc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (t < 0) return -1;
    struct statfs sfs;
    struct stat st;
    if (fstatfs(t, &sfs) != 0 || sfs.f_type != PROC_SUPER_MAGIC || fstat(t, &st) != 0 || st.st_ino != 1 /* PROC_ROOT_INO */) {
        close(t);
        errno = EXDEV;
        return -1;
    }
    return t;
}

static int open_own_attr(int proc, const char *file) {
    char path[96] = "self/attr/";
    size_t n = c_strlen(path), l = c_strlen(file);
    if (n + l >= sizeof path) { errno = ENAMETOOLONG; return -1; }
    memcpy(path + n, file, l + 1);
    struct cb_open_how how = {O_WRONLY | O_CLOEXEC, 0,
                              CB_RESOLVE_BENEATH | CB_RESOLVE_NO_MAGICLINKS | CB_RESOLVE_NO_XDEV};
    long r;
    do { r = syscall(SYS_openat2, proc, path, &how, sizeof how); } while (r < 0 && errno == EINTR);
    return (int)r;
}

// The plan's attribute writes of one phase (before the keyring is joined, or before the
// id switch), in order. A failure's index is 2*entry, +1 when the older shared file was
// the one written (the error then names it).
static void write_proc_attrs(const berth_plan *p, int before_keyring) {
    int proc = -1;
    for (int i = 0; i < p->nattr_writes; i++) {
        const berth_attr_write *w = &p->attr_writes[i];
        if (w->before_keyring != before_keyring) continue;
        if (proc < 0 && (proc = private_procfs()) < 0) fail(BERTH_STAGE_PRIVATE_PROC, errno, -1);
        int fallback = 0;
        int fd = open_own_attr(proc, w->file);
        if (fd < 0 && errno == ENOENT && w->fallback) {
            fallback = 1;
            fd = open_own_attr(proc, w->fallback);
        }
        if (fd < 0 && errno == ENOENT && w->missing_ok) continue;
        if (fd < 0) fail(BERTH_STAGE_PROC_ATTR, errno, 2 * i + fallback);
        size_t len = c_strlen(w->value);
        ssize_t n;
        do { n = write(fd, w->value, len); } while (n < 0 && errno == EINTR);
        if (n != (ssize_t)len) fail(BERTH_STAGE_PROC_ATTR, n < 0 ? errno : EIO, 2 * i + fallback);
        close(fd);
    }
    if (proc >= 0) close(proc);
}

// The part of the process profile that is applied while still root: resource limits,
// personality, I/O priority, scheduling, initial CPU affinity, and the bounding set
// (dropping from it needs CAP_SETPCAP, which the user switch may take away).
static void apply_profile_as_root(const berth_plan *p) {
    for (int i = 0; i < p->nrlimits; i++) {
        struct rlimit rl = {(rlim_t)p->rlimits[i].soft, (rlim_t)p->rlimits[i].hard};
        if (setrlimit(p->rlimits[i].resource, &rl) != 0) fail(BERTH_STAGE_RLIMIT, errno, p->rlimits[i].index);
    }
    if (p->set_personality && personality(p->personality) < 0) fail(BERTH_STAGE_PERSONALITY, errno, -1);
    if (p->set_ioprio && syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, p->ioprio) != 0)
        fail(BERTH_STAGE_IOPRIO, errno, -1);
    if (p->set_scheduler) {
        struct {
            uint32_t size, policy;
            uint64_t flags;
            int32_t nice;
            uint32_t priority;
            uint64_t runtime, deadline, period;
        } attr = {48, p->sched_policy, p->sched_flags, p->sched_nice, p->sched_priority,
                  p->sched_runtime, p->sched_deadline, p->sched_period};
        if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) fail(BERTH_STAGE_SCHEDULER, errno, -1);
    }
    if (p->set_cpus_initial &&
        syscall(SYS_sched_setaffinity, 0, sizeof p->cpus_initial, p->cpus_initial) != 0)
        fail(BERTH_STAGE_CPU_AFFINITY, errno, 0);
    // Capabilities outside the bounding set can never come back, not even through a
    // setuid binary or file capabilities.
    for (int c = 0; c <= p->cap_last; c++) {
        if (p->cap_bounding & (1ULL << c)) continue;
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL)
            fail(BERTH_STAGE_CAPS_BOUNDING, errno, c);
    }
    // Keep the permitted set across the switch to a non-root uid; capset below decides
    // what stays.
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) fail(BERTH_STAGE_KEEPCAPS, errno, -1);
}

static int set_capability_sets(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)(effective >> (32 * i));
        data[i].permitted = (uint32_t)(permitted >> (32 * i));
        data[i].inheritable = (uint32_t)(inheritable >> (32 * i));
    }
    return (int)syscall(SYS_capset, &hdr, data);
}

#define CAP_SYS_ADMIN_BIT (1ULL << 21)

// After the user switch: the effective, permitted and inheritable sets, then ambient.
// Loading seccomp without no_new_privs needs CAP_SYS_ADMIN, so it stays in effective and
// permitted until the filter is loaded (see load_seccomp).
static void apply_capabilities(const berth_plan *p) {
    uint64_t extra = p->seccomp_needs_admin ? CAP_SYS_ADMIN_BIT : 0;
    if (set_capability_sets(p->cap_effective | extra, p->cap_permitted | extra, p->cap_inheritable) != 0)
        fail(BERTH_STAGE_CAPSET, errno, -1);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        fail(BERTH_STAGE_CAPS_AMBIENT, errno, -1);
    for (int c = 0; c <= p->cap_last; c++) {
        if (!(p->cap_ambient & (1ULL << c))) continue;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) != 0)
            fail(BERTH_STAGE_CAPS_AMBIENT, errno, c);
    }
}

// For SCMP_ACT_NOTIFY: the container process state the parent sends after READY.
static char notify_state[65536];
static size_t notify_state_len;


__attribute__((noreturn)) static void die_after_start(const char *what, int e);

// Loads the filter: the very last step before execve, after every check that needs a
// syscall (a profile may forbid getcwd, stat, ...). Without no_new_privs the kernel wants
// CAP_SYS_ADMIN, kept until now and dropped right after with one capset (the only
// syscall between the load and execve besides sendmsg for a notify listener).
static void load_seccomp(const berth_plan *p) {
    if (!p->seccomp_filter) return;
    struct sock_fprog prog = {p->seccomp_len, (struct sock_filter *)p->seccomp_filter};
    unsigned int flags = p->seccomp_flags | (p->seccomp_listener_sock >= 0 ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0);
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    if (fd < 0) die_after_start("load seccomp filter", errno);
    if (p->seccomp_needs_admin &&
        set_capability_sets(p->cap_effective, p->cap_permitted, p->cap_inheritable) != 0)
        die_after_start("drop CAP_SYS_ADMIN after loading seccomp", errno);
    if (p->seccomp_listener_sock >= 0) {
        // One message to the agent: the state as payload, the listener fd as SCM_RIGHTS.
        if (cb_send_fd_with(p->seccomp_listener_sock, notify_state, notify_state_len, (int)fd) != 0)
            die_after_start("send the seccomp listener to linux.seccomp.listenerPath", errno);
        close((int)fd);
        close(p->seccomp_listener_sock);
    }
}

const char *cb_errno_words(int e) {
    switch (e) {
    case ENOENT: return "no such file or directory";
    case EACCES: return "permission denied";
    case EPERM: return "operation not permitted";
    case ENOEXEC: return "exec format error";
    case ENOTDIR: return "not a directory";
    case E2BIG: return "argument list too long";
    case ENOMEM: return "cannot allocate memory";
    case ELOOP: return "too many levels of symbolic links";
    case ETXTBSY: return "text file busy";
    default: return "exec failed";
    }
}

static const char *signal_words(int sig) {
    switch (sig) {
    case SIGSYS: return "bad system call";
    case SIGKILL: return "killed";
    case SIGTERM: return "terminated";
    case SIGSEGV: return "segmentation fault";
    case SIGABRT: return "aborted";
    case SIGBUS: return "bus error";
    case SIGINT: return "interrupt";
    case SIGHUP: return "hangup";
    case SIGPIPE: return "broken pipe";
    default: return "signal";
    }
}

// hooks.startContainer, run by init itself once `start` released it: in the container's
// namespaces and root, with its user, capabilities, no_new_privs and seccomp filter
// already in force (runtime-spec: "in the container namespace"; runc does the same), so a
// hook can do nothing the container's own program could not. The hook is a child of
// init with none of init's fds (cb_run_hook closes everything from 3 up before execve),
// and init runs from a read-only view of the berth binary whenever there are such hooks
// (BinaryProtection at create: the hook shares init's pid namespace, CVE-2019-5736).
// A failure ends init before the program runs; the reason goes back to `start` through
// the exec fifo: 'E' and one line, read by the `start` that waits on it.
static char hook_state[65536];
static size_t hook_state_len;

static void run_start_hooks(const berth_plan *p) {
    static char out[4096];
    static char msg[8192];
    for (int i = 0; i < p->nstart_hooks; i++) {
        const struct berth_hook *h = &p->start_hooks[i];
        size_t outlen = 0;
        int st = cb_run_hook(h->path, h->argv, h->envp, NULL, NULL, 0, hook_state, hook_state_len,
                             out, sizeof out, &outlen, h->timeout_ms, NULL);
        if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) continue;
        size_t pos = 0;
        #define PUT(str) do { const char *s_ = (str); size_t l_ = c_strlen(s_); \
            if (pos + l_ < sizeof msg - 1) { memcpy(msg + pos, s_, l_); pos += l_; } } while (0)
        PUT("E");
        PUT("error running hook #");  // runc's words, which callers look for
        put_uint(msg, &pos, (unsigned long)i);
        PUT(" (startContainer: ");
        PUT(h->path);
        PUT("): ");
        if (st == -ETIMEDOUT) {
            PUT("timed out after ");
            put_uint(msg, &pos, (unsigned long)(h->timeout_ms / 1000));
            PUT("s");
        } else if (st < 0) {
            PUT(cb_errno_words(-st));
        } else if (WIFEXITED(st)) {
            PUT("exit status ");
            put_uint(msg, &pos, (unsigned long)WEXITSTATUS(st));
        } else {
            PUT("signal: ");
            PUT(signal_words(WTERMSIG(st)));
            PUT(" (signal ");
            put_uint(msg, &pos, (unsigned long)WTERMSIG(st));
            PUT(")");
        }
        if (outlen > 0) {
            PUT(": output: ");
            for (size_t k = 0; k < outlen && pos < sizeof msg - 4; k++) {
                char c = out[k];
                if (c == '\n') {
                    if (k + 1 == outlen) break;
                    msg[pos++] = ' '; msg[pos++] = '|'; msg[pos++] = ' ';
                } else {
                    msg[pos++] = c;
                }
            }
        }
        #undef PUT
        if (p->fifo_fd >= 0) {
            ssize_t w;
            do { w = write(p->fifo_fd, msg, pos); } while (w < 0 && errno == EINTR);
        } else {
            msg[pos++] = '\n';
            ssize_t w = write(2, msg + 1, pos - 1);
            (void)w;
        }
        _exit(1);
    }
}

// While init waits for `start` it is our code, and as pid 1 of a new pid namespace the
// kernel drops signals it has no handler for. A handler that exits makes `kill` of a
// created container behave as with runc (whose waiting init is a Go program).
static void die_on_signal(int sig) { _exit(128 + sig); }

// SIG_DFL: every signal back to its default. die_on_signal: the signals whose default is
// to end the process. Either way the signal mask is emptied.
void cb_set_signals(void (*handler)(int)) {
    int dying = handler != SIG_DFL;
    for (int s = 1; s < (dying ? 32 : NSIG); s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        if (dying && (s == SIGCHLD || s == SIGCONT || s == SIGTSTP || s == SIGTTIN ||
                      s == SIGTTOU || s == SIGWINCH || s == SIGURG))
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = handler;
        (void)sigaction(s, &sa, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
}

void cb_write_str(int fd, const char *s) { ssize_t r = write(fd, s, c_strlen(s)); (void)r; }

// After `start` nobody reads the sync socket any more: a failure goes to the container's
// stderr, as runc reports it.
__attribute__((noreturn)) static void die_after_start(const char *what, int e) {
    cb_write_str(2, "berth: ");
    cb_write_str(2, what);
    cb_write_str(2, ": ");
    cb_write_str(2, cb_errno_words(e));
    cb_write_str(2, "\n");
    _exit(127);
}

// A new network namespace has only lo, and it is down: runc brings it up (pods and
// containers that talk over 127.0.0.1 with no other network rely on it).
static void loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);  // a kernel without IPv4
    if (s < 0) fail(BERTH_STAGE_LOOPBACK, errno, -1);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) fail(BERTH_STAGE_LOOPBACK, errno, -1);
    if (!(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) fail(BERTH_STAGE_LOOPBACK, errno, -1);
    }
    close(s);
}

// The container's session keyring (labelled for SELinux by the write before it). Nothing
// of the container may keep its caller's: possessing it, the container could read and
// use the host's keys. init creates the keyring under the container's name and lets its
// user (or, in a user namespace, anyone) search it, so that each `exec` finds and joins
// the same one rather than staying in its caller's, as runc does. ENOSYS (no keyrings in
// the kernel) leaves nothing to protect.
static void join_session_keyring(const berth_plan *p) {
    write_proc_attrs(p, 1);
    long id = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, p->keyring_name);
    if (id < 0) {
        if (errno == ENOSYS) return;
        fail(BERTH_STAGE_KEYRING, errno, -1);
    }
    if (!p->keyring_search_perm) return;
    char desc[512];
    long n = syscall(SYS_keyctl, KEYCTL_DESCRIBE, id, desc, sizeof desc);
    if (n <= 0 || (size_t)n > sizeof desc) fail(BERTH_STAGE_KEYRING, n < 0 ? errno : EIO, 1);
    desc[sizeof desc - 1] = 0;
    // "type;uid;gid;perm;description": the fourth field, in hex.
    const char *f = desc;
    for (int semis = 0; *f && semis < 3; f++) if (*f == ';') semis++;
    uint32_t perm = 0;
    for (; *f && *f != ';'; f++) {
        int d = *f >= '0' && *f <= '9' ? *f - '0' : *f >= 'a' && *f <= 'f' ? *f - 'a' + 10 : -1;
        if (d < 0) fail(BERTH_STAGE_KEYRING, EIO, 1);
        perm = perm << 4 | (uint32_t)d;
    }
    if (syscall(SYS_keyctl, KEYCTL_SETPERM, id, perm | p->keyring_search_perm) != 0)
        fail(BERTH_STAGE_KEYRING, errno, 1);
}

__attribute__((noreturn)) static void init_main(const berth_plan *p) {
    char exe[PATH_MAX];

    // A name no execve can give (a basename has no '/'): `start` reads it to tell an init
    // that died before execve from a program that ran.
    (void)prctl(PR_SET_NAME, BERTH_INIT_COMM, 0, 0, 0);

    if (p->in_userns) {
        // The parent has written our id maps (or we joined a namespace that has them).
        // Become the namespace's root so what follows
        // (mounts, mknod, hostname) is done with the namespace's full capabilities.
        if (setresgid(0, 0, 0) != 0) fail(BERTH_STAGE_SETID_ROOT, errno, -1);
        if (setresuid(0, 0, 0) != 0) fail(BERTH_STAGE_SETID_ROOT, errno, -1);
    }
    if (p->new_cgroupns && !p->stage_mode) {
        // Created only now that the parent has put us in the container's cgroup, so the
        // namespace's root is that cgroup and not the caller's.
        if (unshare(CLONE_NEWCGROUP) != 0) fail(BERTH_STAGE_CGROUPNS, errno, -1);
    }
    if (p->hostname && sethostname(p->hostname, c_strlen(p->hostname)) != 0)
        fail(BERTH_STAGE_HOSTNAME, errno, -1);
    if (p->domainname && setdomainname(p->domainname, c_strlen(p->domainname)) != 0)
        fail(BERTH_STAGE_DOMAINNAME, errno, -1);
    if ((p->fast_clone_flags | p->unshare_flags) & CLONE_NEWNET) loopback_up();

    if (p->setup_rootfs) {
        setup_rootfs(p);
    } else {
        // No mount namespace of its own to set up (exec, or a config without one, which
        // runc allows): the sysctls still apply, under our /proc; without any mount
        // namespace init is chrooted into root.path, as runc does.
        if (p->nsysctls) {
            int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (root < 0) fail(BERTH_STAGE_PROC_SYS, errno, -1);
            apply_sysctls(p, root);
            close(root);
        }
        if (p->chroot_rootfs && (chroot(p->rootfs) != 0 || chdir("/") != 0)) fail(BERTH_STAGE_PIVOT, errno, -1);
    }
    setup_console(p);
    if (p->setup_rootfs) readonly_late_mounts(p);

    if (p->new_keyring) join_session_keyring(p);

    // The cwd is entered as root first (a directory root may enter and the user may not
    // still works, as runc). Where root is refused (a volume chowned to the container's
    // user: root of a user namespace has no DAC override on an inode whose owner or group
    // the namespace does not map), it is entered again as the user, after the switch.
    int cwd_as_user = 0;
    if (chdir(p->cwd) != 0) {
        if (errno != EACCES && errno != EPERM) fail(BERTH_STAGE_CHDIR, errno, -1);
        cwd_as_user = 1;
    } else {
        check_cwd_inside();
    }

    if (p->umask >= 0) umask((mode_t)p->umask);
    set_home(p);

    write_proc_attrs(p, 0);
    apply_profile_as_root(p);
    if (p->set_groups && !setgroups_denied(p) && setgroups((size_t)p->ngroups, (const gid_t *)p->groups) != 0)
        fail(BERTH_STAGE_SETGROUPS, errno, -1);
    if (setresgid(p->gid, p->gid, p->gid) != 0) fail(BERTH_STAGE_SETGID, errno, -1);
    if (setresuid(p->uid, p->uid, p->uid) != 0) fail(BERTH_STAGE_SETUID, errno, -1);
    if (cwd_as_user) {
        if (chdir(p->cwd) != 0) fail(BERTH_STAGE_CHDIR, errno, -1);
        check_cwd_inside();
    }
    apply_capabilities(p);

    // no_new_privs: setuid binaries and file capabilities cannot raise privileges after
    // execve (and seccomp may then be loaded without CAP_SYS_ADMIN). It only acts at
    // execve, so it is set here, where a failure can still be reported.
    if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail(BERTH_STAGE_NO_NEW_PRIVS, errno, -1);
    if (p->set_cpus_final &&
        syscall(SYS_sched_setaffinity, 0, sizeof p->cpus_final, p->cpus_final) != 0)
        fail(BERTH_STAGE_CPU_AFFINITY, errno, 1);

    // The executable is looked up now, as the container user, inside the container, so
    // `create` (not `start`) reports a missing program.
    int le = lookup_executable(p, exe);
    if (le != 0) fail(BERTH_STAGE_LOOKUP, le, -1);

    // CVE-2024-21626 and friends: no fd of ours or of our caller reaches the container
    // except 0, 1, 2 and the preserved ones. Everything from 3+preserve_fds up is marked
    // close-on-exec (our sync and fifo fds sit above that range and must stay usable until
    // execve); the preserved ones lose close-on-exec.
    for (int fd = 3; fd < 3 + p->preserve_fds; fd++) {
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0 || fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC) != 0)
            fail(BERTH_STAGE_PRESERVE_FDS, errno, fd);
    }
    if (syscall(SYS_close_range, 3 + p->preserve_fds, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        // Kernels before 5.11: do it by hand.
        for (int fd = 3 + p->preserve_fds; fd < 65536; fd++) {
            int fl = fcntl(fd, F_GETFD);
            if (fl >= 0) (void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        }
    }

    // Ready: tell the parent, and wait for it to record the container. Until its go-ahead
    // the parent-death signal stays armed, so a caller killed half-way takes us with it.
    send_record(BERTH_MSG_READY, 0, -1, 0);
    if (p->seccomp_listener_sock >= 0) {
        // The container process state for the seccomp agent (it names our host pid, which
        // only the parent knows), then the usual go-ahead.
        ssize_t n;
        do { n = read(child_sync, notify_state, sizeof notify_state); } while (n < 0 && errno == EINTR);
        if (n <= 0) _exit(1);
        notify_state_len = (size_t)n;
    }
    if (p->nstart_hooks > 0) {
        // The state the startContainer hooks read on stdin, likewise from the parent.
        ssize_t n;
        do { n = read(child_sync, hook_state, sizeof hook_state); } while (n < 0 && errno == EINTR);
        if (n <= 0) _exit(1);
        hook_state_len = (size_t)n;
    }
    wait_go();
    if (prctl(PR_SET_PDEATHSIG, 0) != 0) fail(BERTH_STAGE_SYNC, errno, -1);
    send_record(BERTH_MSG_ACK, 0, -1, 0);

    if (p->fifo_fd >= 0) {
        cb_set_signals(die_on_signal);

        // Block until `start` writes a byte to the exec fifo. We hold the fifo read-write,
        // so the read blocks instead of seeing end-of-file while no writer is there.
        char c;
        ssize_t n;
        do { n = read(p->fifo_fd, &c, 1); } while (n < 0 && errno == EINTR);
        if (n != 1) _exit(1);
    }

    // Give the program default signal dispositions and an empty mask.
    cb_set_signals(SIG_DFL);
    load_seccomp(p);
    if (p->nstart_hooks > 0) run_start_hooks(p);

    execve(exe, p->argv, p->envp);
    int e = errno;
    cb_write_str(2, "berth: exec ");
    cb_write_str(2, exe);
    cb_write_str(2, ": ");
    cb_write_str(2, cb_errno_words(e));
    cb_write_str(2, "\n");
    _exit(127);
}

// Stage 1 (only when namespaces are joined by path, or a time namespace is new): join,
// unshare, then fork init as a sibling (CLONE_PARENT) so Berth stays init's parent.
__attribute__((noreturn)) static void stage1_main(const berth_plan *p) {
    // The user namespace goes first so the joins after it are done with its privileges.
    for (int i = 0; i < p->njoins; i++) {
        if (p->joins[i].nstype != CLONE_NEWUSER) continue;
        if (setns(p->joins[i].fd, CLONE_NEWUSER) != 0)
            fail(BERTH_STAGE_SETNS, errno, p->joins[i].index);
    }
    for (int i = 0; i < p->njoins; i++) {
        if (p->joins[i].nstype == CLONE_NEWUSER) continue;
        if (setns(p->joins[i].fd, p->joins[i].nstype) != 0)
            fail(BERTH_STAGE_SETNS, errno, p->joins[i].index);
    }
    for (int i = 0; i < p->njoins; i++) close(p->joins[i].fd);  // joined: nothing more to reach through them
    if (p->unshare_flags && unshare(p->unshare_flags) != 0) fail(BERTH_STAGE_UNSHARE, errno, -1);
    if (p->new_userns) {
        // An unprivileged parent (or newuidmap on its behalf) may open /proc/PID/uid_map
        // only while this process is dumpable: for that window only, as runc does.
        if (p->maps_by_owner && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) fail(BERTH_STAGE_SYNC, errno, -1);
        send_record(BERTH_MSG_NEED_MAPS, 0, -1, 0);
        wait_go();
        if (p->maps_by_owner && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail(BERTH_STAGE_SYNC, errno, -1);
    }
    if (p->timens_offsets) {
        int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
        if (fd < 0) fail(BERTH_STAGE_TIMENS, errno, -1);
        size_t len = c_strlen(p->timens_offsets);
        if (write(fd, p->timens_offsets, len) != (ssize_t)len) fail(BERTH_STAGE_TIMENS, errno, -1);
        close(fd);
    }
    long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) fail(BERTH_STAGE_FORK_INIT, errno, -1);
    if (pid == 0) {
        // Our parent is now Berth itself: die with it until the container is recorded.
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(BERTH_STAGE_SYNC, errno, -1);
        init_main(p);
    }
    send_record(BERTH_MSG_INIT_PID, 0, -1, (int32_t)pid);
    _exit(0);
}

#define CHILD_MAX_JOINS 16  // one per namespace type is all a valid config can ask
#define CHILD_MAX_CGROUP_TASKS 32  // more than the kernel has controllers; the parent places the rest

// Closes every fd from `from` up except those in keep[] (any order; -1 ignored).
static void close_fds_except(int from, int *keep, int nkeep) {
    for (int i = 1; i < nkeep; i++)  // insertion sort: a handful of entries
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) { int t = keep[j]; keep[j] = keep[j - 1]; keep[j - 1] = t; }
    int lo = from;
    for (int i = 0; i <= nkeep; i++) {
        unsigned hi = i < nkeep ? (unsigned)keep[i] : ~0U;
        if (i < nkeep && keep[i] < lo) continue;
        if (hi > (unsigned)lo && syscall(SYS_close_range, (unsigned)lo, hi - 1, 0) != 0) {
            unsigned end = hi < 65536 ? hi : 65536;  // kernels before 5.9
            for (unsigned fd = (unsigned)lo; fd < end; fd++) (void)close((int)fd);
        }
        if (i < nkeep) lo = keep[i] + 1;
    }
}

// cgroup v1: the child moves itself into each hierarchy, first thing, so nothing of the
// container runs outside them. Moving one's own single thread ("0" into `tasks`) needs
// only cgroup_mutex; the parent writing our pid into cgroup.procs would take the global
// threadgroup lock, whose first writer waits for an RCU grace period (several ms per
// container start). The files were opened by the parent (the kernel checks the opener's
// credentials, so this works from a new user namespace too); each fd is closed as soon as
// it is written, long before anything of a container can reach this process.
static void join_cgroups_v1(const berth_plan *p) {
    if (p->ncgroup_tasks == 0) return;
    for (int i = 0; i < p->ncgroup_tasks; i++) {
        ssize_t n;
        do { n = write(p->cgroup_tasks_fds[i], "0", 1); } while (n < 0 && errno == EINTR);
        if (n != 1) fail(BERTH_STAGE_CGROUP_JOIN, n < 0 ? errno : EIO, i);
        close(p->cgroup_tasks_fds[i]);
    }
    send_record(BERTH_MSG_CGROUPS_JOINED, 0, -1, 0);
}

__attribute__((noreturn)) static void child_main(const berth_plan *p) {
    child_sync = p->sync_fd;
    // Holding the parent's end would hide the parent's death from wait_go().
    close(p->parent_sync_fd);
    // CVE-2024-21626 class: until execve this process can be reached by a container (a
    // waiting init's pid namespace can be joined; exec runs in a live one), and with
    // CAP_SYS_PTRACE (and DAC override) /proc/PID/fd/N reopens what it holds. So it holds
    // nothing of the host's but what the config asks for: stdio, the preserved fds, the
    // exec fifo, the console and seccomp agent sockets, the namespaces to join and the
    // cgroup v1 `tasks` files (each closed once used). The cgroup directory (used by clone3 only), the log file, the
    // terminal relay's other end and whatever our caller left open are closed here, first.
    int keep[4 + CHILD_MAX_JOINS + CHILD_MAX_CGROUP_TASKS];
    int nkeep = 0;
    int mine[] = {p->sync_fd, p->fifo_fd, p->console_sock, p->seccomp_listener_sock};
    for (int i = 0; i < 4; i++) if (mine[i] >= 0) keep[nkeep++] = mine[i];
    for (int i = 0; i < p->njoins && i < CHILD_MAX_JOINS; i++) keep[nkeep++] = p->joins[i].fd;
    for (int i = 0; i < p->ncgroup_tasks && i < CHILD_MAX_CGROUP_TASKS; i++) keep[nkeep++] = p->cgroup_tasks_fds[i];
    close_fds_except(3 + p->preserve_fds, keep, nkeep);
    join_cgroups_v1(p);
    // If Berth dies before the container is recorded, this process must not survive it.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(BERTH_STAGE_SYNC, errno, -1);
    // CVE-2019-5736: until execve this process *is* the berth binary. Non-dumpable, its
    // /proc/PID/exe and fds cannot be opened by processes already in a joined namespace;
    // execve of the container's program makes it dumpable again.
    // An unprivileged parent writes the id maps of the new user namespace before its go
    // and can open /proc/PID/uid_map only while this process is dumpable: it stays so
    // until then. Nothing else can reach it meanwhile: its namespaces are all new, and
    // the binary is root's, which an unprivileged user cannot write through /proc/PID/exe.
    int dumpable_for_maps = p->maps_by_owner && !p->stage_mode;
    if (!dumpable_for_maps && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail(BERTH_STAGE_SYNC, errno, -1);
    wait_go(); // cgroup placement, id maps
    if (dumpable_for_maps && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail(BERTH_STAGE_SYNC, errno, -1);
    if (p->stage_mode) stage1_main(p);
    init_main(p);
}

// ---------------------------------------------------------------------------------
// Parent side.
// ---------------------------------------------------------------------------------

int cb_spawn(const berth_plan *p, int *in_cgroup) {
    *in_cgroup = 0;
    struct cb_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = (uint64_t)(unsigned)p->fast_clone_flags;
    args.exit_signal = SIGCHLD;
    if (p->cgroup_fd >= 0) {
        // Born in its cgroup: no code of the container ever runs outside it.
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)p->cgroup_fd;
    }
    // With a NULL stack clone3 behaves like fork: the child continues on a private copy.
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0 && (errno == EACCES || errno == EPERM) && p->cgroup_fd >= 0 && p->cgroup_optional) {
        // Rootless exec, as runc's: moving into a cgroup needs write access to the
        // cgroup.procs of a common ancestor, which a user's shell and its container under
        // the user's systemd do not share. The process then stays where its caller is.
        args.flags &= ~(uint64_t)CLONE_INTO_CGROUP;
        args.cgroup = 0;
        pid = syscall(SYS_clone3, &args, sizeof args);
    }
    if (pid < 0 && (errno == ENOSYS || errno == E2BIG)) {
        pid = syscall(SYS_clone, (unsigned long)(p->fast_clone_flags | SIGCHLD), 0, 0, 0, 0);
    } else if (pid >= 0 && p->cgroup_fd >= 0) {
        *in_cgroup = 1;
    }
    if (pid < 0) return -errno;
    if (pid == 0) child_main(p);
    return (int)pid;
}

