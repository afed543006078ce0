import CBerth
import Glibc

/// CVE-2019-5736 (the mechanism is described in selfexe.c). Before Berth puts a process
/// running its own code where container processes can see it (every `exec`, every
/// `create`/`run`: a waiting init's new pid namespace can be joined by another container),
/// it re-executes itself from a view of its binary that cannot be opened for writing. It
/// costs one more start of the binary; a berth installed on a read-only mount, or one the
/// caller may not write (rootless), is already protected and skips it.
public enum BinaryProtection {
    static let marker = "_BERTH_PROTECTED_REEXEC"
    nonisolated(unsafe) static var reexecuted = false

    /// Called first by the CLI: notes whether this process is the re-executed one, and
    /// clears the marker so that no hook or child ever sees it.
    public static func noteStartup() {
        if getenv(marker) != nil {
            reexecuted = true
            unsetenv(marker)
        }
    }

    /// Returns when /proc/self/exe cannot be written through; otherwise re-executes the
    /// same command line (and does not return), or fails.
    static func ensure(for why: String) throws(BerthError) {
        if cb_exe_is_protected("/proc/self/exe") == 1 { return }
        if reexecuted {
            throw BerthError("\(why): still not running from a read-only view of the berth binary after re-executing (CVE-2019-5736)")
        }
        debug("\(why): re-executing from a read-only view of the berth binary (CVE-2019-5736)")
        setenv(marker, "1", 1)
        let r = cb_reexec_protected(CommandLine.unsafeArgv, environ)
        unsetenv(marker)
        throw BerthError.sys("\(why): re-execute from a read-only view of the berth binary (CVE-2019-5736)", -r)
    }
}
