/* Calls each syscall number given on the command line with zero arguments and prints
   "NR ERRNO" per line (0 when the call succeeded). Raw syscall(2): glibc wrappers can
   hide ENOSYS behind a fallback, and the seccomp tests must see exactly what the filter
   answered. Built static by the tests (gcc -static). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long nr = strtol(argv[i], NULL, 0);
        errno = 0;
        long r = syscall(nr, 0, 0, 0, 0, 0, 0);
        printf("%ld %d\n", nr, r < 0 ? errno : 0);
    }
    return 0;
}
