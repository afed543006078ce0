// CVE-2019-5736: the runtime binary must never be reachable, writable, from a container.
//
// A process that runs Berth's code inside a container's pid namespace (the process
// `exec` forks into the container; init while it waits for `start`, whose pid namespace,
// even a new one, another container may join by path) has /proc/PID/exe = Berth's
// binary. A container
// process with CAP_SYS_PTRACE passes the ptrace access check even on a non-dumpable
// process, opens that link with O_PATH, and once Berth is done (no more ETXTBSY) reopens
// it through /proc/self/fd/N for writing: the host's runtime, overwritten.
//
// Before such a call Berth re-executes itself from a view of its binary that cannot be
// written through: a detached, read-only clone of the mount that holds it (open_tree +
// mount_setattr; the mount is attached nowhere, so nothing changes on the host, and a
// reopen for writing fails with EROFS). Where that is refused (no CAP_SYS_ADMIN in the
// mount namespace's owner, kernels before 5.12), a copy in a write-sealed memfd. The
// re-executed process inherits every fd and the environment, so it simply runs the same
// command again, now protected, and so does everything it forks.
//
// Parent side only: never called after clone.
#define _GNU_SOURCE
#include "cberth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef F_GET_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_CLOEXEC 0x0001U
#define MFD_ALLOW_SEALING 0x0002U
#endif

#define CB_SYS_open_tree 428
#define CB_SYS_mount_setattr 442
#define CB_OPEN_TREE_CLONE 1
#define CB_MOUNT_ATTR_RDONLY 0x1
#define CB_MOUNT_ATTR_NOSUID 0x2
#define CB_MOUNT_ATTR_NODEV 0x4

struct cb_mount_attr_x { uint64_t attr_set, attr_clr, propagation, userns_fd; };

int cb_exe_is_protected(const char *exe) {
    // On a read-only mount (the clone below, or an installation on a read-only /usr),
    // no open for writing can succeed through any path to this file.
    struct statvfs sv;
    if (statvfs(exe, &sv) == 0 && (sv.f_flag & ST_RDONLY)) return 1;
    // A caller that may not write the binary itself (a user, or root of a user namespace
    // the file's owner is not mapped in: rootless) can give its containers no more than
    // it has: they live in namespaces it owns, and setns into any other needs privileges
    // over it. Only EACCES counts: any other failure proves nothing.
    if (faccessat(AT_FDCWD, exe, W_OK, AT_EACCESS) != 0 && errno == EACCES) return 1;
    int fd = open(exe, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    int seals = fcntl(fd, F_GET_SEALS);
    close(fd);
    return seals >= 0 && (seals & F_SEAL_WRITE) && (seals & F_SEAL_SEAL);
}

static int readonly_clone(void) {
    int tree = (int)syscall(CB_SYS_open_tree, AT_FDCWD, "/proc/self/exe", CB_OPEN_TREE_CLONE | O_CLOEXEC);
    if (tree < 0) return -errno;
    struct cb_mount_attr_x a = {CB_MOUNT_ATTR_RDONLY | CB_MOUNT_ATTR_NOSUID | CB_MOUNT_ATTR_NODEV, 0, 0, 0};
    if (syscall(CB_SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &a, sizeof a) != 0) {
        int e = errno;
        close(tree);
        return -e;
    }
    return tree;
}

static int sealed_copy(void) {
    int src = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (src < 0) return -errno;
    struct stat st;
    if (fstat(src, &st) != 0) { int e = errno; close(src); return -e; }
    int mfd = (int)syscall(SYS_memfd_create, "berth", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0) { int e = errno; close(src); return -e; }
    off_t left = st.st_size;
    while (left > 0) {
        ssize_t n = sendfile(mfd, src, NULL, (size_t)left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { int e = n < 0 ? errno : EIO; close(src); close(mfd); return -e; }
        left -= n;
    }
    close(src);
    if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        int e = errno;
        close(mfd);
        return -e;
    }
    return mfd;
}

int cb_reexec_protected(char *const argv[], char *const envp[]) {
    int fd = readonly_clone();
    if (fd < 0) fd = sealed_copy();
    if (fd < 0) return fd;
    // The fd is close-on-exec: the new image does not keep a handle on itself.
    syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
    int e = errno;
    close(fd);
    return -e;
}
