// What the C files of CBerth share: the system headers, the kernel ABI constants and
// structs (our own copies, so the build does not depend on how new the installed kernel
// headers are), and the few helpers one file gives another. Not part of the module's
// public interface (that is include/cberth.h).
#pragma once
#define _GNU_SOURCE
#include "cberth.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <termios.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/sendfile.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif
#ifndef KEYCTL_SETPERM
#define KEYCTL_SETPERM 5
#define KEYCTL_DESCRIBE 6
#endif

// Our own copies of the kernel ABI structs, so the build does not depend on how new the
// installed kernel headers are.
struct cb_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
        set_tid, set_tid_size, cgroup;
};
struct cb_open_how { uint64_t flags, mode, resolve; };
struct cb_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };
#define CB_RESOLVE_NO_XDEV 0x01
#define CB_RESOLVE_NO_MAGICLINKS 0x02
#define CB_RESOLVE_NO_SYMLINKS 0x04
#define CB_RESOLVE_BENEATH 0x08
#define CB_RESOLVE_IN_ROOT 0x10
// The new mount API (5.2+): mounts made and moved through fds, no path walked twice.
#define CB_SYS_open_tree 428
#define CB_SYS_move_mount 429
#define CB_SYS_fsopen 430
#define CB_SYS_fsconfig 431
#define CB_SYS_fsmount 432
#define CB_OPEN_TREE_CLONE 1
#define CB_MOVE_MOUNT_F_EMPTY_PATH 0x04
#define CB_MOVE_MOUNT_T_EMPTY_PATH 0x40
#define CB_FSCONFIG_CMD_CREATE 6
#define CB_FSCONFIG_SET_STRING 1
#define CB_FSOPEN_CLOEXEC 1
#define CB_FSMOUNT_CLOEXEC 1

// shim.c: a string to an fd, unbuffered; the words for an errno ("no such file or
// directory"), as Go prints them (callers match runc's messages).
void cb_write_str(int fd, const char *s);
const char *cb_errno_words(int e);

// shim.c: every signal to the given disposition (SIG_DFL, or a handler), async-signal-safe.
// The hook runner's forked child uses it too.
void cb_set_signals(void (*handler)(int));

// sys.c: one message on a unix socket, `payload` as data and `fd` as its only SCM_RIGHTS
// fd; 0 or -1 (errno). Async-signal-safe: init sends the pty master and the seccomp
// listener with it.
int cb_send_fd_with(int sock, const void *payload, size_t len, int fd);
