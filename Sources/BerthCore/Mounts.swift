import BerthSpec
import CBerth
import Glibc

/// A mount as the C child executes it. Built from a config `Mount` by `MountTable.plan`.
struct PlannedMount: Equatable {
    var source: String?
    var dest: String            // relative to the rootfs, cleaned, no leading "/"
    var fstype: String?
    var data: String?
    var flags: UInt = 0
    var bind = 0                // 1 bind, 2 rbind
    var remountFlags: UInt = 0
    var propagation: [UInt] = []
    var attrSet: UInt64 = 0
    var attrClr: UInt64 = 0
    var destIsFile = false
    var isProc = false
    /// proc and sysfs: the destination must not be a symlink or a file.
    var ordinaryDir = false
    /// cgroup2: what to bind instead where the kernel refuses a new cgroup2 mount (a user
    /// namespace without its own cgroup namespace), as runc does.
    var cgroupFallback: String?
    /// The config said "cgroup" (not "cgroup2"): on a v1 host that means runc's layout of
    /// the v1 hierarchies (see CgroupV1.expand), on a v2 host a cgroup2 mount.
    var cgroupType = false
    /// tmpfs "tmpcopyup": what the mount covers is copied into it.
    var copyUp = false
    /// tmpfs or /dev with "ro": mounted read-write and remounted read-only once devices,
    /// the console and mounts below are in place (runc's order).
    var readonlyLate = false
    /// mqueue with linux.mountLabel: the label set on its root after mounting (SELinux).
    var fileLabel: String?
    var index = 0
}

/// mount(8) option words and what they do: a flag to set or clear, a propagation change,
/// or a recursive attribute (mount_setattr with AT_RECURSIVE, runc's "rro" family).
/// Any other word is filesystem data ("mode=755", "size=64k", "newinstance").
enum MountTable {
    static let flags: [String: (set: UInt, clear: UInt)] = [
        "async": (0, CB_MS_SYNCHRONOUS), "atime": (0, CB_MS_NOATIME), "bind": (CB_MS_BIND, 0),
        "defaults": (0, 0), "dev": (0, CB_MS_NODEV), "diratime": (0, CB_MS_NODIRATIME),
        "dirsync": (CB_MS_DIRSYNC, 0), "exec": (0, CB_MS_NOEXEC), "iversion": (CB_MS_I_VERSION, 0),
        "noiversion": (0, CB_MS_I_VERSION), "lazytime": (CB_MS_LAZYTIME, 0),
        "nolazytime": (0, CB_MS_LAZYTIME), "loud": (0, CB_MS_SILENT), "mand": (CB_MS_MANDLOCK, 0),
        "nomand": (0, CB_MS_MANDLOCK), "noatime": (CB_MS_NOATIME, 0), "nodev": (CB_MS_NODEV, 0),
        "nodiratime": (CB_MS_NODIRATIME, 0), "noexec": (CB_MS_NOEXEC, 0),
        "norelatime": (0, CB_MS_RELATIME), "nostrictatime": (0, CB_MS_STRICTATIME),
        "nosuid": (CB_MS_NOSUID, 0), "nosymfollow": (CB_MS_NOSYMFOLLOW, 0),
        "symfollow": (0, CB_MS_NOSYMFOLLOW), "rbind": (CB_MS_BIND | CB_MS_REC, 0),
        "relatime": (CB_MS_RELATIME, 0), "remount": (CB_MS_REMOUNT, 0), "ro": (CB_MS_RDONLY, 0),
        "rw": (0, CB_MS_RDONLY), "silent": (CB_MS_SILENT, 0), "strictatime": (CB_MS_STRICTATIME, 0),
        "suid": (0, CB_MS_NOSUID), "sync": (CB_MS_SYNCHRONOUS, 0),
    ]

    static let propagation: [String: UInt] = [
        "private": CB_MS_PRIVATE, "rprivate": CB_MS_PRIVATE | CB_MS_REC,
        "shared": CB_MS_SHARED, "rshared": CB_MS_SHARED | CB_MS_REC,
        "slave": CB_MS_SLAVE, "rslave": CB_MS_SLAVE | CB_MS_REC,
        "unbindable": CB_MS_UNBINDABLE, "runbindable": CB_MS_UNBINDABLE | CB_MS_REC,
    ]

    /// (set, clear) for mount_setattr. Setting an atime mode clears the whole atime field.
    static let recursive: [String: (set: UInt64, clear: UInt64)] = [
        "rro": (CB_MOUNT_ATTR_RDONLY, 0), "rrw": (0, CB_MOUNT_ATTR_RDONLY),
        "rnosuid": (CB_MOUNT_ATTR_NOSUID, 0), "rsuid": (0, CB_MOUNT_ATTR_NOSUID),
        "rnodev": (CB_MOUNT_ATTR_NODEV, 0), "rdev": (0, CB_MOUNT_ATTR_NODEV),
        "rnoexec": (CB_MOUNT_ATTR_NOEXEC, 0), "rexec": (0, CB_MOUNT_ATTR_NOEXEC),
        "rnodiratime": (CB_MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, CB_MOUNT_ATTR_NODIRATIME),
        "rrelatime": (CB_MOUNT_ATTR_RELATIME, CB_MOUNT_ATTR__ATIME),
        "rnorelatime": (0, CB_MOUNT_ATTR__ATIME),
        "rnoatime": (CB_MOUNT_ATTR_NOATIME, CB_MOUNT_ATTR__ATIME),
        "ratime": (0, CB_MOUNT_ATTR_NOATIME),
        "rstrictatime": (CB_MOUNT_ATTR_STRICTATIME, CB_MOUNT_ATTR__ATIME),
        "rnostrictatime": (0, CB_MOUNT_ATTR__ATIME),
        "rnosymfollow": (CB_MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, CB_MOUNT_ATTR_NOSYMFOLLOW),
    ]

    /// Filesystem types the kernel knows, from /proc/filesystems.
    static func kernelFilesystems() -> Set<String> {
        // Lines are "nodev\tproc" or "\text4": the name follows the last tab. Parsed as
        // bytes: Character-level splitting costs a measurable part of a container start.
        var out = Set<String>()
        let bytes = (try? FS.readFile("/proc/filesystems")) ?? []
        var start = 0
        for i in 0..<bytes.count where bytes[i] == 0x0a {
            var nameStart = start
            for j in start..<i where bytes[j] == 0x09 { nameStart = j + 1 }
            if nameStart < i { out.insert(String(decoding: bytes[nameStart..<i], as: UTF8.self)) }
            start = i + 1
        }
        return out
    }

    /// Turns config mount `index` into what the child executes. `filesystems` is the
    /// kernel's list; bind sources are checked on the host now, so a missing one is a clear
    /// config error rather than a child failure.
    static func plan(_ m: Mount, index i: Int, bundle: String, filesystems: Set<String>) throws(SpecError) -> PlannedMount {
        var p = PlannedMount(dest: "", index: i)
        let rel = String(Paths.clean(m.destination).dropFirst())
        if rel.isEmpty { throw SpecError("mounts[\(i)].destination", "cannot mount over the container's root") }
        p.dest = rel
        var data: [String] = []
        for (j, o) in (m.options ?? []).enumerated() {
            if let f = flags[o] {
                p.flags = (p.flags & ~f.clear) | f.set
            } else if let pr = propagation[o] {
                p.propagation.append(pr)
            } else if let r = recursive[o] {
                p.attrSet = (p.attrSet & ~r.clear) | r.set
                p.attrClr |= r.clear
            } else if o == "idmap" || o == "ridmap" {
                throw SpecError("mounts[\(i)].options[\(j)]", "idmapped mounts are not supported by berth yet")
            } else if o == "tmpcopyup" {
                p.copyUp = true  // tmpfs only; runc ignores it on other types, and so do we
            } else if o.isEmpty {
                throw SpecError("mounts[\(i)].options[\(j)]", "empty option")
            } else {
                data.append(o)
            }
        }
        if p.propagation.count > 4 { throw SpecError("mounts[\(i)].options", "more than four propagation options") }
        if p.flags & CB_MS_REMOUNT != 0 {
            throw SpecError("mounts[\(i)].options", "\"remount\" is not supported in a container's mount list")
        }
        p.data = data.isEmpty ? nil : data.joined(separator: ",")

        let type = m.type ?? ""
        if type == "bind" || p.flags & CB_MS_BIND != 0 {
            guard let src = m.source, !src.isEmpty else {
                throw SpecError("mounts[\(i)].source", "a bind mount needs a source")
            }
            let abs = Paths.absolute(src, base: bundle)
            var st = stat()
            if stat(abs, &st) != 0 {
                throw SpecError("mounts[\(i)].source", "\(abs): \(errnoWords(errno))")
            }
            p.source = abs
            p.destIsFile = (st.st_mode & S_IFMT) != S_IFDIR
            p.bind = p.flags & CB_MS_REC != 0 ? 2 : 1
            p.remountFlags = p.flags & ~(CB_MS_BIND | CB_MS_REC | CB_MS_REMOUNT)
            p.flags = CB_MS_BIND | (p.bind == 2 ? CB_MS_REC : 0)
            return p
        }
        if type.isEmpty || type == "none" {
            throw SpecError("mounts[\(i)].type", "missing filesystem type (and no bind option)")
        }
        // "cgroup" in runc's default config means "the host's cgroup hierarchy": cgroup2 on
        // a v2 host; on a v1 host `create` replaces it with the v1 hierarchies.
        let fstype = type == "cgroup" ? "cgroup2" : type
        p.cgroupType = type == "cgroup"
        if !filesystems.contains(fstype) {
            throw SpecError("mounts[\(i)].type", "unknown mount type \"\(type)\" (not in /proc/filesystems)")
        }
        p.fstype = fstype
        p.source = m.source ?? fstype
        p.copyUp = p.copyUp && fstype == "tmpfs"
        if p.flags & CB_MS_RDONLY != 0 && (fstype == "tmpfs" || rel == "dev") {
            p.flags &= ~CB_MS_RDONLY
            p.readonlyLate = true
        }
        p.isProc = fstype == "proc"
        p.ordinaryDir = fstype == "proc" || fstype == "sysfs"
        return p
    }
}
