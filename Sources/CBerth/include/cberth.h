// The only header Swift sees of the C shim.
//
// Swift builds a `berth_plan` (plain structs, C strings, fds) in the parent, before the
// clone. The child executes it mechanically: it never allocates, never uses stdio and
// never calls into Swift, because after clone only async-signal-safe code may run (the
// Swift runtime's locks and caches were copied while possibly held).
//
// Syscalls Swift's Glibc module does not export usably are wrapped here with the
// prefix `cb_`; each returns 0 (or a value >= 0) on success and -errno on failure.
#ifndef CBERTH_H
#define CBERTH_H

#include <stdint.h>
#include <sys/types.h>

// ---- child -> parent records -------------------------------------------------------
// Each message is one fixed-size `berth_report` written to the sync socket.
enum berth_msg {
    BERTH_MSG_READY = 0,      // init is set up and waits just before execve
    BERTH_MSG_NEED_MAPS = -1, // stage 1 created a user namespace: write its id maps
    BERTH_MSG_INIT_PID = -2,  // stage 1 forked init; value = its pid
    BERTH_MSG_ACK = -3,       // init will survive its parent from now on
    BERTH_MSG_HOOKS = -4,     // mounts are done, root not yet switched: run the create hooks
    BERTH_MSG_MOUNT_FDS = -5, // send one message per bind mount: its source, opened in our mount namespace
    BERTH_MSG_CGROUPS_JOINED = -6, // the child sits in every cgroup v1 hierarchy it was given
};

// Steps the child reports a failure at (stage > 0). Swift turns them into sentences.
enum berth_stage {
    BERTH_STAGE_SYNC = 1,
    BERTH_STAGE_SETNS,
    BERTH_STAGE_UNSHARE,
    BERTH_STAGE_TIMENS,
    BERTH_STAGE_FORK_INIT,
    BERTH_STAGE_SETID_ROOT,
    BERTH_STAGE_CGROUPNS,
    BERTH_STAGE_HOSTNAME,
    BERTH_STAGE_DOMAINNAME,
    BERTH_STAGE_ROOT_PROPAGATION,
    BERTH_STAGE_ROOTFS_BIND,
    BERTH_STAGE_ROOTFS_OPEN,
    BERTH_STAGE_MOUNT_DEST,      // creating/resolving a mount destination in the rootfs
    BERTH_STAGE_MOUNT,           // index = mount
    BERTH_STAGE_MOUNT_REMOUNT,   // index = mount
    BERTH_STAGE_MOUNT_PROPAGATION,
    BERTH_STAGE_MOUNT_SETATTR,
    BERTH_STAGE_DEVICE,          // index = device
    BERTH_STAGE_SYMLINK,         // index = symlink
    BERTH_STAGE_PIVOT,
    BERTH_STAGE_ROOT_READONLY,
    BERTH_STAGE_ROOT_SHARED,
    BERTH_STAGE_CHDIR,
    BERTH_STAGE_CWD_OUTSIDE,
    BERTH_STAGE_SETGROUPS,
    BERTH_STAGE_SETGID,
    BERTH_STAGE_SETUID,
    BERTH_STAGE_KEYRING,
    BERTH_STAGE_LOOKUP,          // executable not found in $PATH (err ENOENT) or not executable
    BERTH_STAGE_PRESERVE_FDS,
    BERTH_STAGE_CLOSE_FDS,
    BERTH_STAGE_PROC_CHECK,      // index = mount
    BERTH_STAGE_CAPS_BOUNDING,   // index = capability
    BERTH_STAGE_KEEPCAPS,
    BERTH_STAGE_CAPSET,
    BERTH_STAGE_CAPS_AMBIENT,    // index = capability
    BERTH_STAGE_RLIMIT,          // index = rlimit
    BERTH_STAGE_NO_NEW_PRIVS,
    BERTH_STAGE_PERSONALITY,
    BERTH_STAGE_IOPRIO,
    BERTH_STAGE_SCHEDULER,
    BERTH_STAGE_CPU_AFFINITY,    // index 0 = initial, 1 = final
    BERTH_STAGE_SYSCTL,          // index = sysctl
    BERTH_STAGE_PROC_SYS,        // /proc/sys missing or not procfs
    BERTH_STAGE_DEV_NULL,        // /dev/null is not the real device
    BERTH_STAGE_MASK,            // index = masked path
    BERTH_STAGE_READONLY_PATH,   // index = readonly path
    BERTH_STAGE_CONSOLE,         // index: 0 open ptmx, 1 not the real ptmx, 2 pty setup, 3 /dev/console, 4 send, 5 stdio
    BERTH_STAGE_MOUNT_NOT_DIR,   // index = mount: proc/sysfs destination is a symlink or not a directory
    BERTH_STAGE_MOUNT_COPYUP,    // index = mount: tmpcopyup copy of the covered directory
    BERTH_STAGE_MOUNT_READONLY,  // index = mount: the late read-only remount of a tmpfs or /dev
    BERTH_STAGE_LOOPBACK,        // bringing up lo in a new network namespace
    BERTH_STAGE_CGROUP_JOIN,     // index = cgroup_tasks_fds entry
    BERTH_STAGE_PROC_ATTR,       // index = attr_writes entry
    BERTH_STAGE_MOUNT_LABEL,     // index = mount: setting its SELinux label
    BERTH_STAGE_PRIVATE_PROC,    // no procfs could be opened that the container cannot cover
};

typedef struct {
    int32_t stage;  // enum berth_msg (<= 0) or enum berth_stage (> 0)
    int32_t err;    // errno
    int32_t index;  // which mount/device/namespace, or -1
    int32_t value;  // BERTH_MSG_INIT_PID: the pid
} berth_report;

// The name (comm) of init until it execs the program.
#define BERTH_INIT_COMM "berth/init"

// ---- the plan ----------------------------------------------------------------------
// One write to this process's own /proc/self/attr/<file> (a security module's profile or
// label), made through a procfs the container cannot have covered.
typedef struct {
    const char *file;       // below attr/: "apparmor/exec"
    const char *fallback;   // the older shared file ("exec") where `file` is missing, or NULL
    const char *value;
    int before_keyring;     // 1: written just before joining the session keyring; 0: before the id switch
    int missing_ok;         // the file may be missing: nothing to do then
} berth_attr_write;

struct berth_hook {
    const char *path;
    char *const *argv;      // NULL-terminated
    char *const *envp;      // NULL-terminated
    int timeout_ms;         // 0: none
};

typedef struct {
    int nstype;     // CLONE_NEW*
    int fd;         // opened by the parent from the config's path
    int index;      // position in linux.namespaces, for errors
} berth_join;

typedef struct {
    const char *source;     // NULL for none
    const char *dest;       // relative to the rootfs, cleaned, no leading '/'
    const char *fstype;     // NULL for bind mounts
    const char *data;       // NULL or filesystem options
    unsigned long flags;    // MS_* for the mount call (without propagation)
    unsigned long remount_flags; // bind mounts: flags for the MS_REMOUNT|MS_BIND pass, 0 = none
    unsigned long propagation[4]; // each applied in order, 0-terminated
    uint64_t attr_set;      // mount_setattr(AT_RECURSIVE) attributes to set ("rro", ...)
    uint64_t attr_clr;
    int bind;               // 1 = bind, 2 = rbind
    int dest_is_file;       // create a file, not a directory, when missing
    int is_proc;            // verify the result is procfs
    int ordinary_dir;       // proc, sysfs: refuse a destination that is a symlink or not a directory
    const char *cgroup2_fallback; // cgroup2 refused (EPERM/EBUSY): bind this host cgroup directory instead
    int copyup;             // tmpfs "tmpcopyup": copy what the mount covers into it
    int readonly_late;      // tmpfs or /dev asked read-only: mounted rw, remounted ro once all is set up
    const char *file_label; // SELinux label set on the mount's root after mounting (mqueue), or NULL
    int index;              // position in config "mounts"
} berth_mount;

typedef struct {
    const char *dest;       // relative to rootfs, e.g. "dev/null"
    const char *host_path;  // for bind mode: the host node to bind
    uint32_t mode;          // S_IFCHR|0666 ...
    uint64_t dev;           // makedev(major, minor)
    uint32_t uid, gid;
    int bind;               // bind the host node instead of mknod (user namespaces)
    int index;
} berth_device;

typedef struct {
    const char *target;     // link content
    const char *dest;       // relative to rootfs
    int replace;            // remove what is there first
} berth_symlink;

typedef struct {
    int resource;           // RLIMIT_*
    uint64_t soft, hard;
    int index;              // position in process.rlimits
} berth_rlimit;

typedef struct {
    const char *path;       // relative to the container's root
    int index;
} berth_path;

typedef struct {
    const char *key_path;   // "net/ipv4/ip_forward", relative to /proc/sys
    const char *value;
    int index;
} berth_sysctl;

typedef struct {
    // process creation
    int fast_clone_flags;   // CLONE_NEW* passed to clone3 (fast path); 0 in stage mode
    int stage_mode;         // 1: a first child joins/unshares, then forks init
    int unshare_flags;      // stage mode: CLONE_NEW* to unshare after the joins
    int new_userns;         // a new user namespace is created (maps written by the parent)
    int in_userns;          // the container runs in a user namespace (new or joined)
    int new_cgroupns;       // init unshares CLONE_NEWCGROUP after being placed
    const berth_join *joins; int njoins;
    const char *timens_offsets; // written to /proc/self/timens_offsets in stage mode
    int cgroup_fd;          // O_PATH of the container cgroup, or -1
    const int *cgroup_tasks_fds; int ncgroup_tasks; // cgroup v1: each hierarchy's `tasks`, opened for writing
    int sync_fd;            // child's end of the socketpair
    int parent_sync_fd;     // parent's end, closed in the child
    int fifo_fd;            // exec fifo, opened O_RDWR by the parent

    // filesystem
    int setup_rootfs;       // 0 when the mount namespace is joined
    int chroot_rootfs;      // no mount namespace at all: chroot into rootfs (as runc)
    const char *rootfs;     // absolute host path
    unsigned long root_propagation; // MS_* | MS_REC for "/" before the mounts
    unsigned long root_final_propagation; // applied to "/" after the root switch, 0 = none
    int rootfs_readonly;
    int no_pivot;
    const berth_mount *mounts; int nmounts;
    const berth_device *devices; int ndevices;
    const berth_symlink *symlinks; int nsymlinks;

    const berth_sysctl *sysctls; int nsysctls;
    const berth_path *readonly_paths; int nreadonly_paths;
    const berth_path *masked_paths; int nmasked_paths;
    const char *mask_label;  // SELinux context for the tmpfs over masked directories, or NULL

    const char *hostname;   // NULL = leave
    const char *domainname;

    // process
    const char *cwd;        // absolute, inside the container
    uint32_t uid, gid;
    const uint32_t *groups; int ngroups; // setgroups list (ngroups may be 0)
    int set_groups;         // call setgroups at all
    int userns_setgroups;   // in some user namespace: skip setgroups where procfs says "deny"
    int cgroup_optional;    // rootless exec: a cgroup the caller may not move into is skipped
    int maps_by_owner;      // an unprivileged parent writes the id maps (needs us dumpable then)
    int umask;              // -1 = leave
    int new_keyring;        // join a session keyring of the container's own
    const char *keyring_name;     // its name ("_ses.<id>"), NULL = anonymous
    uint32_t keyring_search_perm; // permission bits added to it once joined, 0 = none
    const berth_attr_write *attr_writes; int nattr_writes; // LSM profile/labels, just before the id switch
    const char *arg0;       // as given in process.args[0]
    const char *path_env;   // value of PATH in process.env, or NULL
    char *const *argv;
    char *const *envp;      // with one spare NULL slot at [nenv] for HOME
    int nenv;
    int set_home;           // HOME missing from process.env: take it from /etc/passwd
    int preserve_fds;       // fds 3 .. 3+n-1 pass to the container

    // process profile
    int cap_last;           // highest capability the kernel knows
    uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    int no_new_privs;
    const berth_rlimit *rlimits; int nrlimits;
    int set_personality; unsigned long personality;
    int set_ioprio; int ioprio;
    int set_scheduler;
    uint32_t sched_policy; uint64_t sched_flags; int32_t sched_nice; uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
    int set_cpus_initial, set_cpus_final;
    uint64_t cpus_initial[16], cpus_final[16]; // 1024-bit CPU masks

    // seccomp: a BPF program compiled by the parent, loaded as the very last step
    const void *seccomp_filter;   // struct sock_filter[], NULL = none
    unsigned short seccomp_len;   // instructions
    unsigned int seccomp_flags;   // SECCOMP_FILTER_FLAG_*
    int seccomp_needs_admin;      // no no_new_privs: keep CAP_SYS_ADMIN until loaded
    int seccomp_listener_sock;    // connected to linux.seccomp.listenerPath, or -1
    const struct berth_hook *start_hooks; // hooks.startContainer, run by init after `start`
    int nstart_hooks;

    int pause_for_hooks;          // report BERTH_MSG_HOOKS before pivot_root and wait
    int bind_fds_from_parent;     // in a user namespace: bind sources come as fds (BERTH_MSG_MOUNT_FDS)

    // process.terminal: the pty is made inside the container and its master sent here
    int console_sock;             // connected unix stream socket, or -1
    unsigned short console_rows, console_cols; // consoleSize, 0 = leave
} berth_plan;

// Loads a BPF_PROG_TYPE_CGROUP_DEVICE program (n instructions) and attaches it to the
// cgroup (BPF_F_ALLOW_MULTI), then detaches any device program attached before it.
// 0 or -errno; the verifier's log goes to `log`.
int cb_bpf_device_program(int cgroup_fd, const void *insns, int n, char *log, size_t logsize);

// Foreground terminal relay (parent side). Receives the pty master from `sock` (one
// message, one fd), or -errno.
int cb_recv_fd(int sock);
// One message with `fd` as its only SCM_RIGHTS fd (fd < 0: the message alone). 0 or -errno.
int cb_send_fd(int sock, int fd);
// Clears ONLCR on a pty (through its master): output keeps "\n" instead of "\r\n".
int cb_clear_onlcr(int master);
// Relays between our stdin/stdout and the pty master until `pid` (our child) exits: the
// caller's terminal in raw mode (restored after), window size changes copied, every other
// signal forwarded (all signals must be blocked by the caller). Returns the wait status.
int cb_relay(int master, int pid);

// Runs one hook (parent side): forks; the child joins the namespaces in nsfds (user
// first; the pid and time namespaces through one more fork), takes `input` on stdin,
// sends stdout and stderr into `out`, and execs path. Waits up to timeout_ms (<= 0: no
// limit) and kills it after. Returns the wait status (>= 0), -ETIMEDOUT, or -errno.
int cb_run_hook(const char *path, char *const argv[], char *const envp[],
                const int *nsfds, const int *nstypes, int nns,
                const void *input, size_t inlen, char *out, size_t outcap, size_t *outlen,
                int timeout_ms, const char *cwd);

// ---- parent-side helpers (libcap) ----------------------------------------------------
// The capability number of a name such as "CAP_CHOWN", or -1 when libcap does not know it.
int cb_cap_from_name(const char *name);
// "CAP_SYS_ADMIN" for 21, into out (0), or -1.
int cb_cap_name(int cap, char *out, size_t size);
// The highest capability number the running kernel supports.
int cb_cap_last(void);

// libseccomp, parent side only. Functions return >= 0 or -errno.
typedef struct { uint32_t index; int op; uint64_t value, value_two; } cb_seccomp_arg;
void *cb_seccomp_new(uint32_t default_action);
void cb_seccomp_free(void *ctx);
int cb_seccomp_add_arch(void *ctx, const char *name);
int cb_seccomp_syscall(const char *name);   // the number, or -1 when libseccomp does not know it
// The number of a syscall on an architecture (libseccomp's token, SCMP_ARCH_*), or -1.
int cb_seccomp_syscall_arch(uint32_t arch, const char *name);
uint32_t cb_seccomp_arch_token(const char *name);   // 0 when unknown
uint32_t cb_seccomp_arch_native(void);
int cb_seccomp_add_rule(void *ctx, uint32_t action, int nr, int nargs, const cb_seccomp_arg *args);
int cb_seccomp_export(void *ctx, uint8_t **out, size_t *len);

// Creates the container's first process and, in it, runs the plan (never returns there).
// Returns the child's pid (> 0) or -errno. *in_cgroup is set to 1 when clone3 placed the
// child straight into plan->cgroup_fd.
int cb_spawn(const berth_plan *plan, int *in_cgroup);

// CVE-2019-5736 (selfexe.c): 1 when the executable behind `exe` ("/proc/self/exe",
// "/proc/PID/exe") cannot be opened for writing through any path (a read-only mount, or a
// write-sealed memfd), else 0.
int cb_exe_is_protected(const char *exe);
// Re-executes this process, same argv and envp, from a read-only clone of its binary's
// mount (or a sealed memfd copy). Returns only on failure, with -errno.
int cb_reexec_protected(char *const argv[], char *const envp[]);

// ---- syscall wrappers for Swift ----------------------------------------------------
int cb_pidfd_open(int pid);
int cb_pidfd_send_signal(int pidfd, int sig);
int cb_prctl_set_child_subreaper(void);
int cb_socketpair_seqpacket(int fds[2]);
int cb_wait_status_exited(int status);
int cb_wait_exit_status(int status);
int cb_wait_term_signal(int status);
int cb_wait_signaled(int status);
// Blocks every signal and returns them one by one (sigwaitinfo); -errno on failure.
int cb_block_all_signals(void);
int cb_sigwait_any(int *pid_out);
int cb_unblock_all_signals(void);
// Blocks until fd is readable or timeout_ms passes: 1 readable, 0 timeout, -errno.
int cb_poll_readable(int fd, int timeout_ms);
// Blocks until fd reports POLLHUP (or POLLERR), ignoring readable data: 1, 0 timeout, -errno.
int cb_poll_hangup(int fd, int timeout_ms);

// statfs(2) f_type of path (e.g. 0x63677270 for cgroup2), or -errno.
int64_t cb_fs_magic(const char *path);

// Constants Swift's importer does not see (function-like macros or missing).
extern const int CB_CLONE_NEWNS, CB_CLONE_NEWUTS, CB_CLONE_NEWIPC, CB_CLONE_NEWUSER,
    CB_CLONE_NEWPID, CB_CLONE_NEWNET, CB_CLONE_NEWCGROUP, CB_CLONE_NEWTIME;
extern const int CB_O_PATH;
extern const unsigned long CB_MS_RDONLY, CB_MS_NOSUID, CB_MS_NODEV, CB_MS_NOEXEC,
    CB_MS_SYNCHRONOUS, CB_MS_REMOUNT, CB_MS_MANDLOCK, CB_MS_DIRSYNC, CB_MS_NOSYMFOLLOW,
    CB_MS_NOATIME, CB_MS_NODIRATIME, CB_MS_BIND, CB_MS_REC, CB_MS_SILENT, CB_MS_UNBINDABLE,
    CB_MS_PRIVATE, CB_MS_SLAVE, CB_MS_SHARED, CB_MS_RELATIME, CB_MS_STRICTATIME,
    CB_MS_LAZYTIME, CB_MS_I_VERSION;
extern const uint64_t CB_MOUNT_ATTR_RDONLY, CB_MOUNT_ATTR_NOSUID, CB_MOUNT_ATTR_NODEV,
    CB_MOUNT_ATTR_NOEXEC, CB_MOUNT_ATTR__ATIME, CB_MOUNT_ATTR_RELATIME,
    CB_MOUNT_ATTR_NOATIME, CB_MOUNT_ATTR_STRICTATIME, CB_MOUNT_ATTR_NODIRATIME,
    CB_MOUNT_ATTR_NOSYMFOLLOW;

static inline uint64_t cb_makedev(uint32_t major, uint32_t minor) {
    return (((uint64_t)(major & 0xfffff000u)) << 32) | (((uint64_t)(major & 0xfffu)) << 8) |
           (((uint64_t)(minor & 0xffffff00u)) << 12) | ((uint64_t)(minor & 0xffu));
}

#endif
