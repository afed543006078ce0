// The floor for Scripts/bench: the kernel work `berth run` does for the bench's config
// (Berth's `spec` default running /bin/true), done the fastest known way and nothing else.
// No config parsing, no state directory, no exec fifo handshake, no hooks; paths are used
// as they are (the bench's rootfs is trusted), where Berth resolves each inside the root.
//
//   floor ROOTFS     runs /bin/true in a container made of ROOTFS; exits with its status
//   floor --exec PID runs /bin/true in the running container whose init is PID, as
//                    `berth exec` does: its cgroups, every namespace, the same profile
//
// What it does, as `berth run` does it: a cgroup in every hierarchy the host mounts (v2
// joined by clone3's CLONE_INTO_CGROUP, each v1 one joined by the child itself; the device
// rules as a BPF program on v2, devices.deny/allow on v1; cpuset copied from the parent),
// new mount, uts, ipc, pid and net namespaces (and cgroup on a pure v2 host), lo up, the
// hostname, the rootfs bound and made slave, proc, /dev tmpfs, devpts, shm, mqueue,
// sysfs, the cgroup mount(s), the default devices and /dev links, pivot_root, masked and
// read-only paths, a read-only root, the bounding set and capabilities, RLIMIT_NOFILE,
// no_new_privs, execve; then the parent waits and removes the cgroups.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define CGROUP2_MAGIC 0x63677270
#define MAXH 24

static void die(const char *what) { fprintf(stderr, "floor: %s: %s\n", what, strerror(errno)); _exit(1); }

static char v2root[256];          // "" when the host has no cgroup2
static int pure_v2;
static char v1mp[MAXH][256];      // v1 hierarchies' mount points
static int nv1, v1devices = -1, v1cpuset = -1;
static char name[64];

static void find_hierarchies(void) {
    struct statfs sfs;
    if (statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == CGROUP2_MAGIC) {
        pure_v2 = 1;
        strcpy(v2root, "/sys/fs/cgroup");
        return;
    }
    if (statfs("/sys/fs/cgroup/unified", &sfs) == 0 && sfs.f_type == CGROUP2_MAGIC) strcpy(v2root, "/sys/fs/cgroup/unified");
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f) && nv1 < MAXH) {
        char *sep = strstr(line, " - cgroup ");
        if (!sep) continue;
        char mp[256];
        if (sscanf(line, "%*s %*s %*s %*s %255s", mp) != 1) continue;
        int dup = 0;
        for (int i = 0; i < nv1; i++) dup |= strcmp(v1mp[i], mp) == 0;
        if (dup) continue;
        if (strstr(sep, ",devices") || strstr(sep, " devices")) v1devices = nv1;
        if (strstr(sep, ",cpuset") || strstr(sep, " cpuset")) v1cpuset = nv1;
        strcpy(v1mp[nv1++], mp);
    }
    if (f) fclose(f);
}

static void put(const char *dir, const char *file, const char *value) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0) die(p);
    close(fd);
}

static void copy(const char *parent, const char *dir, const char *file) {
    char p[512], buf[256];
    snprintf(p, sizeof p, "%s/%s", parent, file);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (n <= 0) die(p);
    close(fd);
    buf[n] = 0;
    put(dir, file, buf);
}

// runc's default device rules (deny all, then null, zero, full, random, urandom, tty,
// console, ptmx, pts/*, and mknod of anything) as a cgroup v2 device program.
static void attach_device_program(int cgfd) {
    struct bpf_insn prog[64];
    int n = 0;
#define I(c, d, s, o, i) prog[n++] = (struct bpf_insn){c, d, s, o, i}
    I(BPF_LDX | BPF_W | BPF_MEM, 2, 1, 0, 0);      // r2 = access_type
    I(BPF_ALU64 | BPF_MOV | BPF_X, 3, 2, 0, 0);    // r3 = r2 >> 16 (access)
    I(BPF_ALU64 | BPF_RSH | BPF_K, 3, 0, 0, 16);
    I(BPF_ALU64 | BPF_AND | BPF_K, 2, 0, 0, 0xffff); // r2 = type
    I(BPF_LDX | BPF_W | BPF_MEM, 4, 1, 0, 4);      // r4 = major
    I(BPF_LDX | BPF_W | BPF_MEM, 5, 1, 0, 8);      // r5 = minor
    I(BPF_JMP | BPF_JNE | BPF_K, 3, 0, 2, BPF_DEVCG_ACC_MKNOD); // mknod of anything
    I(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1);
    I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    static const int allowed[][2] = {{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 1}, {5, 2}, {136, -1}};
    for (unsigned k = 0; k < sizeof allowed / sizeof allowed[0]; k++) {
        int skip = allowed[k][1] < 0 ? 3 : 4;
        I(BPF_JMP | BPF_JNE | BPF_K, 2, 0, skip, BPF_DEVCG_DEV_CHAR);
        I(BPF_JMP | BPF_JNE | BPF_K, 4, 0, skip - 1, allowed[k][0]);
        if (allowed[k][1] >= 0) I(BPF_JMP | BPF_JNE | BPF_K, 5, 0, 2, allowed[k][1]);
        I(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1);
        I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    }
    I(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0);
    I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    a.insns = (uint64_t)(uintptr_t)prog;
    a.insn_cnt = (uint32_t)n;
    a.license = (uint64_t)(uintptr_t)"Apache";
    int pfd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
    if (pfd < 0) die("bpf load");
    memset(&a, 0, sizeof a);
    a.target_fd = (uint32_t)cgfd;
    a.attach_bpf_fd = (uint32_t)pfd;
    a.attach_type = BPF_CGROUP_DEVICE;
    a.attach_flags = BPF_F_ALLOW_MULTI;
    if (syscall(SYS_bpf, BPF_PROG_ATTACH, &a, sizeof a) != 0) die("bpf attach");
    close(pfd);
}

// The exec'd process's profile: what `berth exec` gives it from the bench's config.
static void drop_and_exec(void) {
    struct rlimit rl = {1024, 1024};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) die("rlimit");
    uint64_t keep = 1ULL << CAP_AUDIT_WRITE | 1ULL << CAP_KILL | 1ULL << CAP_NET_BIND_SERVICE;
    for (int c = 0; c <= CAP_LAST_CAP; c++)
        if (!(keep >> c & 1) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) die("bounding set");
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {{(uint32_t)keep, (uint32_t)keep, 0}, {0, 0, 0}};
    if (syscall(SYS_capset, &h, d) != 0) die("capset");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs");
    char *argv[] = {"/bin/true", NULL};
    char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm", NULL};
    execve(argv[0], argv, envp);
    die("execve");
}

static int tasks_fd[MAXH];
static const char *rootfs;

static void mnt(const char *src, const char *dest, const char *type, unsigned long flags, const char *data) {
    char p[512];
    snprintf(p, sizeof p, "%s%s", rootfs, dest);
    if (mount(src, p, type, flags, data) != 0) die(p);
}

static void in_root(char *buf, size_t len, const char *dest) { snprintf(buf, len, "%s%s", rootfs, dest); }

static void child(void) {
    for (int i = 0; i < nv1; i++) {
        if (write(tasks_fd[i], "0", 1) != 1) die("join v1 cgroup");
        close(tasks_fd[i]);
    }
    if (sethostname("berth", 5) != 0) die("sethostname");
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0) die("lo");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) die("lo up");
    close(s);
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) die("slave /");
    if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) != 0) die("bind rootfs");
    char p[512], q[512];
    mnt("proc", "/proc", "proc", 0, NULL);
    mnt("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
    static const char *dirs[] = {"/dev/pts", "/dev/shm", "/dev/mqueue"};
    for (int i = 0; i < 3; i++) { in_root(p, sizeof p, dirs[i]); mkdir(p, 0755); }
    mnt("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    mnt("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k");
    mnt("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
    mnt("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, NULL);
    if (pure_v2) {
        mnt("cgroup", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY, NULL);
    } else {
        // As runc on v1: a tmpfs with a read-only bind of each hierarchy's container cgroup.
        mnt("tmpfs", "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=755");
        for (int i = 0; i < nv1; i++) {
            const char *base = strrchr(v1mp[i], '/') + 1;
            snprintf(p, sizeof p, "%s/sys/fs/cgroup/%s", rootfs, base);
            mkdir(p, 0755);
            snprintf(q, sizeof q, "%s/%s", v1mp[i], name);
            if (mount(q, p, NULL, MS_BIND | MS_REC, NULL) != 0) die(p);
            if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL) != 0) die(p);
        }
    }
    static const struct { const char *path; int minor; } devs[] = {
        {"/dev/null", 3}, {"/dev/zero", 5}, {"/dev/full", 7}, {"/dev/random", 8}, {"/dev/urandom", 9}};
    for (int i = 0; i < 5; i++) {
        in_root(p, sizeof p, devs[i].path);
        if (mknod(p, S_IFCHR | 0666, makedev(1, devs[i].minor)) != 0) die(p);
    }
    in_root(p, sizeof p, "/dev/tty");
    if (mknod(p, S_IFCHR | 0666, makedev(5, 0)) != 0) die(p);
    static const char *links[][2] = {{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
        {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}, {"pts/ptmx", "/dev/ptmx"}};
    for (int i = 0; i < 5; i++) { in_root(p, sizeof p, links[i][1]); if (symlink(links[i][0], p) != 0) die(p); }
    if (chdir(rootfs) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 || umount2(".", MNT_DETACH) != 0 || chdir("/") != 0)
        die("pivot_root");
    static const char *masked[] = {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"};
    for (unsigned i = 0; i < sizeof masked / sizeof *masked; i++) {
        struct stat st;
        if (stat(masked[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) { if (mount("tmpfs", masked[i], "tmpfs", MS_RDONLY, NULL) != 0) die(masked[i]); }
        else if (mount("/dev/null", masked[i], NULL, MS_BIND, NULL) != 0) die(masked[i]);
    }
    static const char *ro[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
    for (unsigned i = 0; i < sizeof ro / sizeof *ro; i++) {
        if (mount(ro[i], ro[i], NULL, MS_BIND | MS_REC, NULL) != 0) { if (errno == ENOENT) continue; die(ro[i]); }
        if (mount(NULL, ro[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) die(ro[i]);
    }
    if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0) die("read-only root");
    drop_and_exec();
}

// exec: born in the container's v2 cgroup, joins its v1 ones itself, enters each of
// init's namespaces, forks into the pid namespace, then the profile and execve.
static int exec_into(const char *pid) {
    static const char *kinds[] = {"ipc", "uts", "net", "pid", "mnt", "cgroup"};
    int nsfd[6];
    char p[512], line[1024];
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "/proc/%s/ns/%s", pid, kinds[i]);
        nsfd[i] = open(p, O_RDONLY | O_CLOEXEC);
    }
    snprintf(p, sizeof p, "/proc/%s/cgroup", pid);
    FILE *f = fopen(p, "r");
    int cgfd = -1;
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *ctrl = strchr(line, ':'), *path = ctrl ? strchr(ctrl + 1, ':') : NULL;
        if (!path) continue;
        *path++ = 0;
        ctrl++;
        if (*ctrl == 0) {
            if (!v2root[0]) continue;
            snprintf(p, sizeof p, "%s%s", v2root, path);
            cgfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            continue;
        }
        for (int i = 0; i < nv1; i++) {
            const char *base = strrchr(v1mp[i], '/') + 1;
            if (strcmp(base, ctrl) != 0 && !(strncmp(ctrl, "name=", 5) == 0 && strcmp(base, ctrl + 5) == 0)) continue;
            snprintf(p, sizeof p, "%s%s/tasks", v1mp[i], path);
            tasks_fd[i] = open(p, O_WRONLY | O_CLOEXEC);
        }
    }
    if (f) fclose(f);
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    if (cgfd >= 0) { ca.flags = CLONE_INTO_CGROUP; ca.cgroup = (uint64_t)cgfd; }
    ca.exit_signal = SIGCHLD;
    long c = syscall(SYS_clone3, &ca, sizeof ca);
    if (c < 0) die("clone3");
    if (c == 0) {
        for (int i = 0; i < nv1; i++) if (tasks_fd[i] > 0 && write(tasks_fd[i], "0", 1) != 1) die("join v1 cgroup");
        for (int i = 0; i < 6; i++) if (nsfd[i] >= 0 && setns(nsfd[i], 0) != 0) die(kinds[i]);
        pid_t g = fork();
        if (g < 0) die("fork");
        if (g == 0) { if (chdir("/") != 0) die("chdir"); drop_and_exec(); }
        int st = 0;
        while (waitpid(g, &st, 0) < 0 && errno == EINTR) {}
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    int st = 0;
    while (waitpid((pid_t)c, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--exec") == 0) {
        find_hierarchies();
        return exec_into(argv[2]);
    }
    if (argc != 2) { fprintf(stderr, "usage: floor ROOTFS | floor --exec PID\n"); return 2; }
    rootfs = argv[1];
    snprintf(name, sizeof name, "floor-%d", getpid());
    find_hierarchies();
    char dir[512];
    int cgfd = -1;
    if (v2root[0]) {
        snprintf(dir, sizeof dir, "%s/%s", v2root, name);
        if (mkdir(dir, 0755) != 0) die(dir);
        cgfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cgfd < 0) die(dir);
        if (pure_v2) attach_device_program(cgfd);
    }
    for (int i = 0; i < nv1; i++) {
        snprintf(dir, sizeof dir, "%s/%s", v1mp[i], name);
        if (mkdir(dir, 0755) != 0) die(dir);
        if (i == v1cpuset) { copy(v1mp[i], dir, "cpuset.cpus"); copy(v1mp[i], dir, "cpuset.mems"); }
        if (i == v1devices) {
            put(dir, "devices.deny", "a");
            static const char *allow[] = {"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
                                          "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"};
            for (unsigned k = 0; k < sizeof allow / sizeof *allow; k++) put(dir, "devices.allow", allow[k]);
        }
        char t[512];
        snprintf(t, sizeof t, "%s/tasks", dir);
        tasks_fd[i] = open(t, O_WRONLY | O_CLOEXEC);
        if (tasks_fd[i] < 0) die(t);
    }
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET | (pure_v2 ? CLONE_NEWCGROUP : 0);
    if (cgfd >= 0) { ca.flags |= CLONE_INTO_CGROUP; ca.cgroup = (uint64_t)cgfd; }
    ca.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid < 0) die("clone3");
    if (pid == 0) child();
    for (int i = 0; i < nv1; i++) close(tasks_fd[i]);
    int st = 0;
    while (waitpid((pid_t)pid, &st, 0) < 0 && errno == EINTR) {}
    if (v2root[0]) { snprintf(dir, sizeof dir, "%s/%s", v2root, name); rmdir(dir); }
    for (int i = 0; i < nv1; i++) { snprintf(dir, sizeof dir, "%s/%s", v1mp[i], name); rmdir(dir); }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
