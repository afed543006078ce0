// Syscall wrappers: what Swift calls directly (pidfds, wait status macros, signal masks,
// poll, statfs) and fd passing over unix sockets. cb_send_fd_with is also called by init
// (the pty master, the seccomp listener): like all of shim.c's calls, it allocates nothing.
#include "internal.h"

// One message on a unix socket: `payload` as data, `fd` as the only SCM_RIGHTS fd. Used to
// hand the seccomp listener and the pty master to their receivers. 0 or -1 (errno).
int cb_send_fd_with(int sock, const void *payload, size_t len, int fd) {
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = {(void *)payload, len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

int cb_pidfd_open(int pid) {
    long r = syscall(SYS_pidfd_open, pid, 0);
    return r < 0 ? -errno : (int)r;
}

int cb_pidfd_send_signal(int pidfd, int sig) {
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0 ? 0 : -errno;
}

int cb_prctl_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : -errno;
}

int cb_socketpair_seqpacket(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0 ? 0 : -errno;
}

int cb_wait_status_exited(int status) { return WIFEXITED(status); }
int cb_wait_exit_status(int status) { return WEXITSTATUS(status); }
int cb_wait_signaled(int status) { return WIFSIGNALED(status); }
int cb_wait_term_signal(int status) { return WTERMSIG(status); }

int cb_block_all_signals(void) {
    sigset_t all;
    sigfillset(&all);
    return sigprocmask(SIG_BLOCK, &all, NULL) == 0 ? 0 : -errno;
}

int cb_unblock_all_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    return sigprocmask(SIG_SETMASK, &none, NULL) == 0 ? 0 : -errno;
}

int cb_sigwait_any(int *pid_out) {
    sigset_t all;
    sigfillset(&all);
    siginfo_t si;
    int s;
    do { s = sigwaitinfo(&all, &si); } while (s < 0 && errno == EINTR);
    if (s < 0) return -errno;
    *pid_out = si.si_pid;
    return s;
}

int cb_poll_readable(int fd, int timeout_ms) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int r;
    do { r = poll(&pfd, 1, timeout_ms); } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    return r > 0 ? 1 : 0;
}

int cb_poll_hangup(int fd, int timeout_ms) {
    struct pollfd pfd = {fd, 0, 0}; // POLLHUP and POLLERR are always reported
    int r;
    do { r = poll(&pfd, 1, timeout_ms); } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    return r > 0 ? 1 : 0;
}

int64_t cb_fs_magic(const char *path) {
    struct statfs sfs;
    if (statfs(path, &sfs) != 0) return -errno;
    return (int64_t)sfs.f_type;
}

int cb_send_fd(int sock, int fd) {
    if (fd < 0) {
        ssize_t n;
        do { n = send(sock, "-", 1, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : 0;
    }
    return cb_send_fd_with(sock, "+", 1, fd) == 0 ? 0 : -errno;
}

int cb_recv_fd(int sock) {
    char buf[256];
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -EBADMSG;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}
