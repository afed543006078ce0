import BerthSpec
import CBerth
import Glibc

/// `berth spec`: what `runc spec` writes (test suites and tools build their bundles from
/// it, then pass --console-socket, which needs `terminal: true`): runc's namespaces (the
/// cgroup namespace only on a pure cgroup v2 host), capabilities (ambient ones included,
/// which cannot be raised and are skipped as runc skips them), masked and read-only paths.
public enum DefaultSpec {
    public static func render(rootless: Bool) -> String {
        let s: (String) -> JSON = { .string($0) }
        func strings(_ a: [String]) -> JSON { .array(a.map(s)) }
        func mount(_ dest: String, _ type: String, _ src: String, _ opts: [String]) -> JSON {
            var f: [(String, JSON)] = [("destination", s(dest)), ("type", s(type)), ("source", s(src))]
            if !opts.isEmpty { f.append(("options", strings(opts))) }
            return .object(f)
        }
        var mounts: [JSON] = [
            mount("/proc", "proc", "proc", []),
            mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            mount("/dev/pts", "devpts", "devpts",
                  rootless ? ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
                           : ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        ]
        // runc's rootless spec: /sys bound from the host (a user namespace cannot mount
        // sysfs without its own network namespace), the cgroup mount kept.
        if rootless {
            mounts.append(mount("/sys", "none", "/sys", ["rbind", "nosuid", "noexec", "nodev", "ro"]))
        } else {
            mounts.append(mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]))
        }
        mounts.append(mount("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", "ro"]))
        var nsNames = ["pid", "ipc", "uts", "mount"]
        if cb_fs_magic("/sys/fs/cgroup") == 0x63677270 { nsNames.append("cgroup") }  // runc: IsCgroup2UnifiedMode
        var namespaces: [JSON] = nsNames.map { .object([("type", s($0))]) }
        var linux: [(String, JSON)] = []
        if rootless {
            namespaces.append(.object([("type", s("user"))]))
            let uid = Int64(geteuid()), gid = Int64(getegid())
            linux.append(("uidMappings", .array([.object([("containerID", .int(0)), ("hostID", .int(uid)), ("size", .int(1))])])))
            linux.append(("gidMappings", .array([.object([("containerID", .int(0)), ("hostID", .int(gid)), ("size", .int(1))])])))
        } else {
            namespaces.insert(.object([("type", s("network"))]), at: 1)
        }
        // runc's rootless spec has no resources: an unprivileged user may own no cgroup.
        if !rootless {
            linux.append(("resources", .object([("devices", .array([.object([("allow", .bool(false)), ("access", s("rwm"))])]))])))
        }
        linux.append(("namespaces", .array(namespaces)))
        linux.append(("maskedPaths", strings(DefaultSpec.maskedPaths)))
        linux.append(("readonlyPaths", strings(DefaultSpec.readonlyPaths)))

        let config: JSON = .object([
            ("ociVersion", s(ociSpecVersion)),
            ("process", .object([
                ("terminal", .bool(true)),
                ("user", .object([("uid", .int(0)), ("gid", .int(0))])),
                ("args", strings(["sh"])),
                ("env", strings(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"])),
                ("cwd", s("/")),
                ("capabilities", .object(["bounding", "effective", "permitted", "ambient"].map { ($0, strings(DefaultSpec.capabilities)) })),
                ("rlimits", .array([.object([("type", s("RLIMIT_NOFILE")), ("hard", .int(1024)), ("soft", .int(1024))])])),
                ("noNewPrivileges", .bool(true)),
            ])),
            ("root", .object([("path", s("rootfs")), ("readonly", .bool(true))])),
            ("hostname", s("berth")),
            ("mounts", .array(mounts)),
            ("linux", .object(linux)),
        ])
        return config.render(indent: "\t") + "\n"
    }
}

extension DefaultSpec {
    public static let capabilities = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    public static let maskedPaths = [
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
    ]
    public static let readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
}

/// `berth features`: the runtime-spec features.md document, listing only what works.
public enum Features {
    public static func render() -> String {
        let s: (String) -> JSON = { .string($0) }
        let opts = (Array(MountTable.flags.keys) + Array(MountTable.propagation.keys) + Array(MountTable.recursive.keys)).sorted()
        let doc: JSON = .object([
            ("ociVersionMin", s("1.0.0")),
            ("ociVersionMax", s(ociSpecVersion)),
            ("hooks", .array(HookKind.allCases.map { s($0.rawValue) })),
            ("mountOptions", .array(opts.map(s))),
            ("linux", .object([
                ("namespaces", .array(NamespaceKind.allCases.map { s($0.rawValue) })),
                ("capabilities", .array(knownCapabilities().map(s))),
                // Every driver Berth has, as runc lists its own: v1/hybrid hierarchies, v2,
                // systemd's system and user managers.
                ("cgroup", .object([("v1", .bool(true)), ("v2", .bool(true)), ("systemd", .bool(true)),
                                    ("systemdUser", .bool(true)), ("rdma", .bool(false))])),
                ("seccomp", .object([
                    ("enabled", .bool(true)),
                    ("actions", .array(seccompActions.keys.sorted().map(s))),
                    ("operators", .array(seccompOperators.keys.sorted().map(s))),
                    ("archs", .array(seccompArchitectures.map(s))),
                    ("knownFlags", .array(seccompFlags.keys.sorted().map(s))),
                    ("supportedFlags", .array(seccompFlags.keys.sorted().map(s))),
                ])),
                ("apparmor", .object([("enabled", .bool(true))])),
                ("selinux", .object([("enabled", .bool(true))])),
                ("intelRdt", .object([("enabled", .bool(false))])),
                ("mountExtensions", .object([("idmap", .object([("enabled", .bool(false))]))])),
            ])),
            ("annotations", .object([("org.opencontainers.runtime-spec.features.berth.version", s(berthVersion))])),
        ])
        return doc.render(indent: "    ") + "\n"
    }
}

public let berthVersion = "0.1.0"

/// Every capability name libcap knows that the running kernel supports.
func knownCapabilities() -> [String] {
    let all = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
               "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
               "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
               "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
               "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
               "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
               "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
    let last = cb_cap_last()
    return all.filter { let v = cb_cap_from_name($0); return v >= 0 && v <= last }
}
