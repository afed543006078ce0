// Parent-side helpers around libcap. Never called in the child.
#define _GNU_SOURCE
#include "cberth.h"

#include <sys/capability.h>

#include <errno.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int cb_cap_from_name(const char *name) {
    cap_value_t v;
    return cap_from_name(name, &v) == 0 ? (int)v : -1;
}

int cb_cap_last(void) {
    // cap_max_bits() asks the running kernel, not the headers Berth was built with.
    return (int)cap_max_bits() - 1;
}

// ---- seccomp: compiled to BPF here, in the parent; the child only loads the bytes ----

void *cb_seccomp_new(uint32_t default_action) {
    scmp_filter_ctx ctx = seccomp_init(default_action);
    if (!ctx) return NULL;
    // Errors from rule_add come back as the kernel's codes, not libseccomp's -EDOM etc.
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_API_SYSRAWRC, 1);
    return ctx;
}

void cb_seccomp_free(void *ctx) { seccomp_release((scmp_filter_ctx)ctx); }

int cb_seccomp_add_arch(void *ctx, const char *name) {
    uint32_t arch = seccomp_arch_resolve_name(name);
    if (arch == 0) return -EINVAL;
    int r = seccomp_arch_add((scmp_filter_ctx)ctx, arch);
    return r == -EEXIST ? 0 : r;
}

int cb_seccomp_syscall(const char *name) {
    int nr = seccomp_syscall_resolve_name(name);
    return nr == __NR_SCMP_ERROR ? -1 : nr;
}

int cb_seccomp_add_rule(void *ctx, uint32_t action, int nr, int nargs, const cb_seccomp_arg *args) {
    struct scmp_arg_cmp cmp[6];
    if (nargs > 6) return -EINVAL;
    for (int i = 0; i < nargs; i++) {
        cmp[i].arg = args[i].index;
        cmp[i].op = (enum scmp_compare)args[i].op;
        cmp[i].datum_a = args[i].value;
        cmp[i].datum_b = args[i].value_two;
    }
    return seccomp_rule_add_array((scmp_filter_ctx)ctx, action, nr, (unsigned)nargs, cmp);
}

// The BPF program as bytes (malloc'd into *out), through a memfd: libseccomp 2.5 can only
// export to an fd.
int cb_seccomp_export(void *ctx, uint8_t **out, size_t *len) {
    int fd = memfd_create("berth-seccomp", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    int r = seccomp_export_bpf((scmp_filter_ctx)ctx, fd);
    if (r < 0) { close(fd); return r; }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0) { close(fd); return -EIO; }
    uint8_t *buf = malloc((size_t)size);
    if (!buf) { close(fd); return -ENOMEM; }
    if (pread(fd, buf, (size_t)size, 0) != size) { free(buf); close(fd); return -EIO; }
    close(fd);
    *out = buf;
    *len = (size_t)size;
    return 0;
}
