// The hook runner: fork + exec with the state on stdin, output captured, a timeout. Berth
// runs the host-side hooks through it, and init runs startContainer hooks through it
// after `start` (so its forked child follows shim.c's rules: async-signal-safe calls only).
#include "internal.h"

int cb_run_hook(const char *path, char *const argv[], char *const envp[],
                const int *nsfds, const int *nstypes, int nns,
                const void *input, size_t inlen, char *out, size_t outcap, size_t *outlen,
                int timeout_ms, const char *cwd) {
    int in[2], outp[2];
    *outlen = 0;
    if (pipe2(in, O_CLOEXEC) != 0) return -errno;
    if (pipe2(outp, O_CLOEXEC) != 0) { int e = errno; close(in[0]); close(in[1]); return -e; }
    pid_t pid = fork();
    if (pid < 0) { int e = errno; close(in[0]); close(in[1]); close(outp[0]); close(outp[1]); return -e; }
    if (pid == 0) {
        // Only async-signal-safe calls from here: this is a fork of the Swift process.
        if (dup2(in[0], 0) < 0 || dup2(outp[1], 1) < 0 || dup2(outp[1], 2) < 0) _exit(126);
        cb_set_signals(SIG_DFL);
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        int need_fork = 0;
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < nns; i++) {
                // The user namespace first: its capabilities allow joining the others.
                if ((pass == 0) != (nstypes[i] == CLONE_NEWUSER)) continue;
                if (setns(nsfds[i], nstypes[i]) != 0) _exit(125);
                if (nstypes[i] == CLONE_NEWPID || nstypes[i] == CLONE_NEWTIME) need_fork = 1;
            }
        }
        (void)syscall(SYS_close_range, 3, ~0U, 0);
        // Joining a mount namespace moved us to its root; createContainer hooks start in the
        // container's root directory (before pivot_root), as runc runs them.
        if (cwd && chdir(cwd) != 0) _exit(125);
        if (need_fork) {
            // setns into a pid or time namespace only applies to children.
            pid_t g = fork();
            if (g < 0) _exit(126);
            if (g > 0) {
                int st;
                while (waitpid(g, &st, 0) < 0 && errno == EINTR) {}
                if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
                _exit(128 + WTERMSIG(st));
            }
            (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        }
        execve(path, argv, envp);
        cb_write_str(2, "exec ");
        cb_write_str(2, path);
        cb_write_str(2, ": ");
        cb_write_str(2, cb_errno_words(errno));
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    // The state is small (far below a pipe's capacity): written whole, then EOF.
    size_t off = 0;
    while (off < inlen) {
        ssize_t n = write(in[1], (const char *)input + off, inlen - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; // the hook need not read its stdin
        off += (size_t)n;
    }
    close(in[1]);

    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    (void)fcntl(outp[0], F_SETFL, O_NONBLOCK);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int out_open = 1, timed_out = 0;
    for (;;) {
        int wait_ms = -1;
        if (timeout_ms > 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
            if (elapsed >= timeout_ms) { timed_out = 1; break; }
            wait_ms = (int)(timeout_ms - elapsed);
        }
        struct pollfd fds[2];
        nfds_t nf = 0;
        int pid_i = -1;
        if (out_open) fds[nf++] = (struct pollfd){outp[0], POLLIN, 0};
        if (pfd >= 0) { fds[nf] = (struct pollfd){pfd, POLLIN, 0}; pid_i = (int)nf++; }
        if (nf == 0) break; // no pidfd and the output closed: the hook is done
        int r = poll(fds, nf, wait_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        int exited = pid_i >= 0 && (fds[pid_i].revents & POLLIN);
        // Drain what is there (also right after the exit, without waiting for grandchildren
        // that may still hold the pipe).
        while (out_open) {
            char buf[4096];
            ssize_t n = read(outp[0], buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) break;             // EAGAIN: nothing more now
            if (n == 0) { out_open = 0; break; }
            size_t keep = (size_t)n;
            if (*outlen + keep > outcap) keep = outcap - *outlen;
            memcpy(out + *outlen, buf, keep);
            *outlen += keep;
        }
        if (exited) break;
    }
    if (timed_out) kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (pfd >= 0) close(pfd);
    close(outp[0]);
    return timed_out ? -ETIMEDOUT : st;
}
