import BerthSpec
import CBerth
import Glibc

/// Linux security modules. A profile or label is put in force by the process itself,
/// writing to its own /proc/self/attr files before execve, so it holds from the program's
/// first instruction. This is the one place that decides what is written for which module;
/// the shim only performs the writes (write_proc_attrs in shim.c, which also says how the
/// writes are kept from landing anywhere but the real procfs file).
struct ProcAttrWrite: Equatable {
    /// Below /proc/self/attr: the module's own file, then the older shared one.
    var file: String
    var fallback: String?
    var value: String
    /// Written just before the session keyring is joined (a key's label), else just
    /// before the id switch (it acts at execve).
    var beforeKeyring = false
    /// The file may be missing (a kernel without keyring labels): nothing to do then.
    var missingOK = false
    /// What the config asked for, for errors: `process.apparmorProfile "x"`.
    var what: String
    var hint: String?
}

enum SecurityModules {
    /// Every write for init or an exec'd process from its config's process fields.
    static func writes(for process: Process, newKeyring: Bool) throws(SpecError) -> [ProcAttrWrite] {
        try apparmor(process.apparmorProfile) + selinux(process.selinuxLabel, newKeyring: newKeyring)
    }

    /// process.apparmorProfile (or exec's --apparmor, with file "--apparmor" and no field);
    /// empty means none, as runc reads it.
    static func apparmor(_ profile: String?, file: String = "config.json",
                         field: String = "process.apparmorProfile") throws(SpecError) -> [ProcAttrWrite] {
        guard let profile, !profile.isEmpty else { return [] }
        if AppArmor.enabled == false {
            // runc writes anyway and fails in the kernel's words ("write
            // /proc/self/attr/exec: invalid argument"); the host's state says why.
            throw SpecError(file: file, field, "AppArmor is not enabled on this host (/sys/module/apparmor/parameters/enabled): profile \"\(profile)\" cannot be applied")
        }
        // aa_change_onexec: the profile takes effect at the next execve.
        return [ProcAttrWrite(file: "apparmor/exec", fallback: "exec", value: "exec " + profile,
                              what: "unable to apply apparmor profile \"\(profile)\" (\(field.isEmpty ? file : field))",
                              hint: "is the profile loaded?")]
    }

    /// process.selinuxLabel (or exec's --process-label): the label the program runs with
    /// from execve, and, where init joins a new session keyring, the label of that
    /// keyring, as runc sets both.
    static func selinux(_ label: String?, newKeyring: Bool, file: String = "config.json",
                        field: String = "process.selinuxLabel") throws(SpecError) -> [ProcAttrWrite] {
        guard let label, !label.isEmpty else { return [] }
        if !SELinux.enabled {
            throw SpecError(file: file, field, "selinux label is specified in config, but selinux is disabled or not supported")
        }
        let named = field.isEmpty ? file : field
        var out: [ProcAttrWrite] = []
        if newKeyring {
            out.append(ProcAttrWrite(file: "keycreate", value: label, beforeKeyring: true, missingOK: true,
                                     what: "set the session keyring's SELinux label \"\(label)\" (\(named))"))
        }
        out.append(ProcAttrWrite(file: "exec", value: label,
                                 what: "set SELinux exec label \"\(label)\" (\(named))"))
        return out
    }

    /// linux.mountLabel on the mounts runc labels: new filesystems other than proc,
    /// sysfs, cgroup and mqueue get `context="LABEL"` in their data, mqueue's root the
    /// label as an xattr (only where SELinux is on, as runc), masked directories' tmpfs
    /// the context too. Returns the label for the masked directories. Where SELinux is
    /// off, runc passes the context anyway and the kernel refuses the first such mount:
    /// refused here by name instead.
    static func labelMounts(_ mounts: inout [PlannedMount], maskedPaths: [String], mountLabel: String?,
                            selinux: Bool = SELinux.enabled) throws(SpecError) -> String? {
        guard let label = mountLabel, !label.isEmpty else { return nil }
        let context = "context=\"\(label)\""
        var labelled: [Int] = []
        for i in mounts.indices where mounts[i].bind == 0 {
            switch mounts[i].fstype ?? "" {
            case "proc", "sysfs", "cgroup", "cgroup2": continue
            case "mqueue": if selinux { mounts[i].fileLabel = label }
            default:
                mounts[i].data = mounts[i].data.map { $0 + "," + context } ?? context
                labelled.append(mounts[i].index)
            }
        }
        if !selinux && (!labelled.isEmpty || !maskedPaths.isEmpty) {
            let what = labelled.first.map { "mounts[\($0)]" } ?? "the masked paths' tmpfs"
            throw SpecError("linux.mountLabel", "SELinux is not enabled on this host: \(what) cannot be mounted with context \"\(label)\"")
        }
        return label
    }
}

enum AppArmor {
    /// false when the host says AppArmor is off or absent; nil when it cannot be told
    /// (no /sys), and the kernel then decides.
    static var enabled: Bool? {
        if let v = FS.readString("/sys/module/apparmor/parameters/enabled") { return v.hasPrefix("Y") }
        if FS.isDirectory("/sys/module") { return false }
        return nil
    }
}

enum SELinux {
    /// As runc's library decides: selinuxfs mounted read-write at /sys/fs/selinux and a
    /// policy loaded (a process label other than the bare "kernel").
    static var enabled: Bool {
        var vfs = statvfs()
        guard cb_fs_magic("/sys/fs/selinux") == 0xf97c_ff8c, statvfs("/sys/fs/selinux", &vfs) == 0,
              vfs.f_flag & 1 /* ST_RDONLY */ == 0 else { return false }
        guard let current = FS.readString("/proc/self/attr/current") else { return false }
        let label = String(current.prefix { $0 != "\0" && $0 != "\n" })
        return !label.isEmpty && label != "kernel"
    }
}
