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
    /// What the config asked for, for errors: `process.apparmorProfile "x"`.
    var what: String
    var hint: String?
}

enum SecurityModules {
    /// The writes for one process. `apparmor` is process.apparmorProfile (or exec's
    /// --apparmor, with file "--apparmor" and no field); empty means none, as runc reads it.
    static func writes(apparmor: String?, file: String = "config.json",
                       field: String = "process.apparmorProfile") throws(SpecError) -> [ProcAttrWrite] {
        var out: [ProcAttrWrite] = []
        if let profile = apparmor, !profile.isEmpty {
            if AppArmor.enabled == false {
                // runc writes anyway and fails in the kernel's words ("write
                // /proc/self/attr/exec: invalid argument"); the host's state says why.
                throw SpecError(file: file, field, "AppArmor is not enabled on this host (/sys/module/apparmor/parameters/enabled): profile \"\(profile)\" cannot be applied")
            }
            // aa_change_onexec: the profile takes effect at the next execve.
            let named = field.isEmpty ? file : field
            out.append(ProcAttrWrite(file: "apparmor/exec", fallback: "exec", value: "exec " + profile,
                                     what: "unable to apply apparmor profile \"\(profile)\" (\(named))",
                                     hint: "is the profile loaded?"))
        }
        return out
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
