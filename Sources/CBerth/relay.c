// Foreground terminal (parent side): Berth's own terminal relayed to the container's pty.
#include "internal.h"

static void copy_winsize(int from, int to) {
    struct winsize ws;
    if (ioctl(from, TIOCGWINSZ, &ws) == 0) (void)ioctl(to, TIOCSWINSZ, &ws);
}

static int write_full(int fd, const char *b, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int cb_clear_onlcr(int master) {
    struct termios mt;
    if (tcgetattr(master, &mt) != 0) return -errno;
    mt.c_oflag &= ~(tcflag_t)ONLCR;
    return tcsetattr(master, TCSANOW, &mt) == 0 ? 0 : -errno;
}

int cb_relay(int master, int pid) {
    struct termios saved;
    int raw = isatty(0) && tcgetattr(0, &saved) == 0;
    if (raw) {
        struct termios t = saved;
        cfmakeraw(&t);
        (void)tcsetattr(0, TCSANOW, &t);
        copy_winsize(0, master);
    }
    sigset_t all;
    sigfillset(&all);
    int sfd = signalfd(-1, &all, SFD_CLOEXEC);
    int status = 0, done = 0, in_open = 1;
    char buf[8192];
    while (!done) {
        struct pollfd fds[3] = {{master, POLLIN, 0}, {sfd, POLLIN, 0}, {0, POLLIN, 0}};
        int r = poll(fds, in_open ? 3 : 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(master, buf, sizeof buf);
            if (n > 0) (void)write_full(1, buf, (size_t)n);
        }
        if (in_open && (fds[2].revents & (POLLIN | POLLHUP))) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0) in_open = 0;
            else (void)write_full(master, buf, (size_t)n);
        }
        if (fds[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) != sizeof si) continue;
            int sig = (int)si.ssi_signo;
            if (sig == SIGCHLD) {
                int st;
                pid_t w;
                while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
                    if (w == pid) { status = st; done = 1; }
                }
            } else if (sig == SIGWINCH) {
                if (raw) copy_winsize(0, master);
            } else {
                (void)kill(pid, sig);
            }
        }
    }
    // What the program wrote just before it ended.
    (void)fcntl(master, F_SETFL, O_NONBLOCK);
    for (;;) {
        ssize_t n = read(master, buf, sizeof buf);
        if (n <= 0) break;
        (void)write_full(1, buf, (size_t)n);
    }
    if (raw) (void)tcsetattr(0, TCSANOW, &saved);
    if (sfd >= 0) close(sfd);
    return status;
}
