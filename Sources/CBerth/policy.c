// Parent-side helpers around libcap. Never called in the child.
#define _GNU_SOURCE
#include "cberth.h"

#include <sys/capability.h>

#include <errno.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/syscall.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int cb_cap_from_name(const char *name) {
    cap_value_t v;
    return cap_from_name(name, &v) == 0 ? (int)v : -1;
}

int cb_cap_name(int cap, char *out, size_t size) {
    char *n = cap_to_name((cap_value_t)cap);
    if (!n) return -1;
    size_t i = 0;
    for (; n[i] && i + 1 < size; i++) out[i] = (n[i] >= 'a' && n[i] <= 'z') ? (char)(n[i] - 32) : n[i];
    out[i] = 0;
    cap_free(n);
    return 0;
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

int cb_seccomp_syscall_arch(uint32_t arch, const char *name) {
    int nr = seccomp_syscall_resolve_name_arch(arch, name);
    return nr == __NR_SCMP_ERROR ? -1 : nr;
}

uint32_t cb_seccomp_arch_token(const char *name) { return seccomp_arch_resolve_name(name); }

uint32_t cb_seccomp_arch_native(void) { return seccomp_arch_native(); }

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

// ---- cgroup device filter ------------------------------------------------------------

static long bpf(int cmd, union bpf_attr *attr) { return syscall(SYS_bpf, cmd, attr, sizeof *attr); }

int cb_bpf_device_program(int cgroup_fd, const void *insns, int n, char *log, size_t logsize) {
    // The programs attached now, to detach once the new one is in place.
    uint32_t old_ids[64];
    union bpf_attr q;
    memset(&q, 0, sizeof q);
    q.query.target_fd = (uint32_t)cgroup_fd;
    q.query.attach_type = BPF_CGROUP_DEVICE;
    q.query.prog_ids = (uint64_t)(uintptr_t)old_ids;
    q.query.prog_cnt = 64;
    uint32_t nold = bpf(BPF_PROG_QUERY, &q) == 0 ? q.query.prog_cnt : 0;

    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    a.insns = (uint64_t)(uintptr_t)insns;
    a.insn_cnt = (uint32_t)n;
    a.license = (uint64_t)(uintptr_t)"Apache";
    // Without the verifier's log: logging makes loading several times slower, and every
    // container start pays for it. Only a refused program is loaded again, for the log.
    int prog = (int)bpf(BPF_PROG_LOAD, &a);
    if (prog < 0) {
        int e = errno;
        a.log_buf = (uint64_t)(uintptr_t)log;
        a.log_size = (uint32_t)logsize;
        a.log_level = 1;
        (void)bpf(BPF_PROG_LOAD, &a);
        return -e;
    }
    memset(&a, 0, sizeof a);
    a.target_fd = (uint32_t)cgroup_fd;
    a.attach_bpf_fd = (uint32_t)prog;
    a.attach_type = BPF_CGROUP_DEVICE;
    a.attach_flags = BPF_F_ALLOW_MULTI;
    if (bpf(BPF_PROG_ATTACH, &a) != 0) { int e = errno; close(prog); return -e; }
    close(prog);
    for (uint32_t i = 0; i < nold; i++) {
        union bpf_attr g;
        memset(&g, 0, sizeof g);
        g.prog_id = old_ids[i];
        int ofd = (int)bpf(BPF_PROG_GET_FD_BY_ID, &g);
        if (ofd < 0) continue;
        memset(&g, 0, sizeof g);
        g.target_fd = (uint32_t)cgroup_fd;
        g.attach_bpf_fd = (uint32_t)ofd;
        g.attach_type = BPF_CGROUP_DEVICE;
        (void)bpf(BPF_PROG_DETACH, &g);
        close(ofd);
    }
    return 0;
}
