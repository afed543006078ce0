import BerthCore
import BerthSpec
import CBerth
import Glibc

// The berth CLI: single-threaded and synchronous by design (setns into a mount
// namespace and unshare(CLONE_NEWUSER) refuse multithreaded callers).

/// Writes errors (and, with --debug, debug lines) to stderr and to the --log file in
/// runc's formats. One failed call writes exactly one error line: Podman decodes the whole
/// log file as one object.
struct Log {
    var fd: Int32 = -1
    var json = false
    var debug = false

    func line(_ level: String, _ msg: String, to: Int32? = nil) {
        let fd = to ?? self.fd
        guard fd >= 0 else { return }
        let time = WallClock.rfc3339(nanos: true)
        var text: String
        if json {
            text = JSON.object([("level", .string(level)), ("msg", .string(msg)), ("time", .string(time))]).render(indent: nil)
        } else {
            var q = ""
            JSON.quote(msg, into: &q)
            text = "time=\"\(time)\" level=\(level) msg=\(q)"
        }
        text += "\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
    }

    func debugLine(_ msg: String) {
        // Milliseconds since start: where a container start spends its time.
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let ms = Double(Int64(ts.tv_sec) - Int64(startTime.tv_sec)) * 1000 + Double(ts.tv_nsec - startTime.tv_nsec) / 1e6
        let msg = "[\(Double(Int(ms * 1000)) / 1000) ms] " + msg
        // Without --log, debug lines go to stderr in the same (logrus) format, as runc's.
        line("debug", msg, to: fd >= 0 ? fd : 2)
    }

    func warning(_ msg: String) {
        if fd >= 0 { line("warning", msg); return }
        let t = "warning: " + msg + "\n"
        _ = t.withCString { write(2, $0, strlen($0)) }
    }

    func error(_ msg: String) {
        line("error", msg)
        // One error, one line, whatever the message quotes (a path or hook output with
        // newlines): callers read the last line.
        var t = ""
        for u in msg.unicodeScalars {
            switch u {
            case "\n": t += "\\n"
            case "\r": t += "\\r"
            default: t.unicodeScalars.append(u)
            }
        }
        t += "\n"
        _ = t.withCString { write(2, $0, strlen($0)) }
    }
}

func out(_ s: String) {
    var s = s
    s.withUTF8 { b in
        var off = 0
        while off < b.count {
            let n = write(1, b.baseAddress! + off, b.count - off)
            if n <= 0 { if errno == EINTR { continue }; return }
            off += n
        }
    }
}

let usage = """
berth: an OCI container runtime

usage: berth [global options] command [command options] [arguments...]

commands:
   create     create a container (init waits before the user's program)
   start      run the user's program in a created container
   run        create and start a container (foreground unless --detach)
   state      print a container's state as JSON
   kill       send a signal to a container's init (or all its processes with --all)
   delete     delete a stopped container (--force: kill it first)
   list       list containers (--format table|json, -q)
   spec       write a default config.json into the bundle
   features   print the runtime's features as JSON
   exec       run a new process in a running container
   pause      freeze every process of a container (cgroup.freeze)
   resume     thaw a paused container
   ps         list a container's processes (--format table|json)
   update     change a running container's cgroup limits
   events     a container's stats (--stats), or a stream of stats and oom events

global options:
   --root DIR              state directory (default /run/berth)
   --log FILE              append errors to FILE (created at start-up)
   --log-format text|json  log line format (default text)
   --debug                 log debug messages
   --systemd-cgroup        manage cgroups through systemd (pure cgroup v2 hosts)
   -v, --version           print the version

"""

let commandHelp: [String: String] = [
    "create": "usage: berth create [--bundle DIR] [--pid-file FILE] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID",
    "start": "usage: berth start ID",
    "run": "usage: berth run [create's options] [--detach] [--keep] [--no-subreaper] ID",
    "state": "usage: berth state ID",
    "kill": "usage: berth kill [--all] ID [SIGNAL]   (SIGNAL: number or name, default SIGTERM)",
    "delete": "usage: berth delete [--force] ID",
    "list": "usage: berth list [--format table|json] [--quiet]",
    "spec": "usage: berth spec [--bundle DIR] [--rootless]",
    "features": "usage: berth features",
    "exec": "usage: berth exec [--process FILE] [--cwd D] [--env K=V]... [--user UID[:GID]] [--additional-gids G]... [--cap CAP]... [--no-new-privs] [--detach] [--pid-file F] [--preserve-fds N] [--cgroup SUB] [--ignore-paused] ID [COMMAND [ARG...]]",
    "pause": "usage: berth pause ID",
    "resume": "usage: berth resume ID",
    "ps": "usage: berth ps [--format table|json] ID [ps options]",
    "update": "usage: berth update [--resources FILE|-] [--memory N] [--memory-swap N] [--cpu-share N] [--cpu-quota N] [--cpu-period N] [--cpuset-cpus L] [--pids-limit N] [--blkio-weight N] ... ID",
    "events": "usage: berth events [--stats] [--interval 5s] ID",
]

let createFlags: [FlagSpec] = [
    FlagSpec(names: ["bundle", "b"], kind: .string),
    FlagSpec(names: ["console-socket"], kind: .string),
    FlagSpec(names: ["pidfd-socket"], kind: .string),
    FlagSpec(names: ["pid-file"], kind: .string),
    FlagSpec(names: ["no-pivot"], kind: .bool),
    FlagSpec(names: ["no-new-keyring"], kind: .bool),
    FlagSpec(names: ["preserve-fds"], kind: .int),
    FlagSpec(names: ["help", "h"], kind: .bool),
]

let commandFlags: [String: [FlagSpec]] = [
    "create": createFlags,
    "run": createFlags + [
        FlagSpec(names: ["detach", "d"], kind: .bool),
        FlagSpec(names: ["keep"], kind: .bool),
        FlagSpec(names: ["no-subreaper"], kind: .bool),
    ],
    "start": [FlagSpec(names: ["help", "h"], kind: .bool)],
    "state": [FlagSpec(names: ["help", "h"], kind: .bool)],
    "features": [FlagSpec(names: ["help", "h"], kind: .bool)],
    "kill": [FlagSpec(names: ["all", "a"], kind: .bool), FlagSpec(names: ["help", "h"], kind: .bool)],
    "delete": [FlagSpec(names: ["force", "f"], kind: .bool), FlagSpec(names: ["help", "h"], kind: .bool)],
    "list": [FlagSpec(names: ["format", "f"], kind: .string), FlagSpec(names: ["quiet", "q"], kind: .bool),
             FlagSpec(names: ["help", "h"], kind: .bool)],
    "spec": [FlagSpec(names: ["bundle", "b"], kind: .string), FlagSpec(names: ["rootless"], kind: .bool),
             FlagSpec(names: ["help", "h"], kind: .bool)],
    "exec": [
        FlagSpec(names: ["process", "p"], kind: .string), FlagSpec(names: ["console-socket"], kind: .string),
        FlagSpec(names: ["tty", "t"], kind: .bool), FlagSpec(names: ["cwd"], kind: .string),
        FlagSpec(names: ["env", "e"], kind: .strings), FlagSpec(names: ["user", "u"], kind: .string),
        FlagSpec(names: ["additional-gids", "g"], kind: .strings), FlagSpec(names: ["cap", "c"], kind: .strings),
        FlagSpec(names: ["no-new-privs"], kind: .bool), FlagSpec(names: ["detach", "d"], kind: .bool),
        FlagSpec(names: ["pid-file"], kind: .string), FlagSpec(names: ["preserve-fds"], kind: .int),
        FlagSpec(names: ["cgroup"], kind: .strings), FlagSpec(names: ["ignore-paused"], kind: .bool),
        FlagSpec(names: ["apparmor"], kind: .string), FlagSpec(names: ["process-label"], kind: .string),
        FlagSpec(names: ["pidfd-socket"], kind: .string), FlagSpec(names: ["help", "h"], kind: .bool),
    ],
    "pause": [FlagSpec(names: ["help", "h"], kind: .bool)],
    "resume": [FlagSpec(names: ["help", "h"], kind: .bool)],
    "ps": [FlagSpec(names: ["format", "f"], kind: .string), FlagSpec(names: ["help", "h"], kind: .bool)],
    "events": [FlagSpec(names: ["stats"], kind: .bool), FlagSpec(names: ["interval"], kind: .string),
               FlagSpec(names: ["help", "h"], kind: .bool)],
    "update": ["resources", "r", "memory", "memory-reservation", "memory-swap", "kernel-memory", "kernel-memory-tcp",
               "cpu-shares", "cpu-quota", "cpu-period", "cpu-burst", "cpu-rt-period", "cpu-rt-runtime", "cpu-idle",
               "cpuset-cpus", "cpuset-mems", "pids-limit", "blkio-weight", "l3-cache-schema", "mem-bw-schema"]
        .filter { $0 != "r" }.map { n in
            // runc's flag is --cpu-share; --cpu-shares (Berth's first spelling) stays an alias.
            FlagSpec(names: n == "resources" ? ["resources", "r"] : n == "cpu-shares" ? ["cpu-share", "cpu-shares"] : [n], kind: .string)
        }
        + [FlagSpec(names: ["help", "h"], kind: .bool)],
]

let globalFlags: [FlagSpec] = [
    FlagSpec(names: ["root"], kind: .string),
    FlagSpec(names: ["log"], kind: .string),
    FlagSpec(names: ["log-format"], kind: .string),
    FlagSpec(names: ["debug"], kind: .bool),
    FlagSpec(names: ["systemd-cgroup"], kind: .bool),
    FlagSpec(names: ["rootless"], kind: .string),
    FlagSpec(names: ["criu"], kind: .string),
    FlagSpec(names: ["version", "v"], kind: .bool),
    FlagSpec(names: ["help", "h"], kind: .bool),
]

/// Later versions implement these; until then they fail, and `checkpoint --help` exits
/// non-zero, which is how Podman learns checkpointing is unsupported.
let notYet: Set<String> = ["checkpoint", "restore"]

func exactly(_ n: Int, _ cmd: String, _ f: ParsedFlags) throws(BerthError) -> [String] {
    if f.positional.count != n {
        throw BerthError("\"\(cmd)\" requires exactly \(n) argument(s)")
    }
    return f.positional
}

nonisolated(unsafe) var startTime: timespec = {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts
}()

func main() -> Int32 {
    _ = startTime
    BinaryProtection.noteStartup()
    // A hook that exits without reading its stdin, or a caller that closed our stdout,
    // must give EPIPE, not kill Berth half-way. (Containers and hooks get default signal
    // dispositions back before execve.)
    signal(SIGPIPE, SIG_IGN)
    var log = Log()
    let argv = CommandLine.arguments
    let global: ParsedFlags
    do { global = try parseFlags(argv.dropFirst(), globalFlags) } catch {
        log.error(error.message)
        return 1
    }
    // The log file is opened first, every time: containerd reads it after any failure.
    if let path = global.string("log") {
        log.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if log.fd < 0 {
            log.error("--log \(path): \(errnoWords(errno))")
            return 1
        }
    }
    switch global.string("log-format") ?? "text" {
    case "text": break
    case "json": log.json = true
    case let f:
        log.error("--log-format: unknown format \"\(f)\" (text or json)")
        return 1
    }
    log.debug = global.bool("debug")
    let l = log
    if log.debug { debugSink = { l.debugLine($0) } }
    warningSink = { l.warning($0) }
    if global.bool("version") {
        out("berth version \(berthVersion)\ncommit: \(berthCommit)\nspec: \(ociSpecVersion)\n")
        return 0
    }
    guard let cmd = global.positional.first else {
        if global.bool("help") { out(usage); return 0 }
        log.error("no command given; see berth --help")
        return 1
    }
    if cmd == "help" { out(usage); return 0 }

    do throws(BerthError) {
        if notYet.contains(cmd) {
            throw BerthError("\"\(cmd)\" is not supported by berth yet")
        }
        guard let specs = commandFlags[cmd] else {
            // runc's (urfave/cli's) words for help on a command that does not exist.
            if global.positional.dropFirst().contains(where: { ["-h", "--help", "-help", "--h"].contains($0) }) {
                throw BerthError("No help topic for '\(cmd)'")
            }
            throw BerthError("unknown command \"\(cmd)\"; see berth --help")
        }
        let f: ParsedFlags
        // runc's commands take flags after the id too, except exec and ps (whose trailing
        // arguments are the command's own).
        let cmdArgs = ["exec", "ps"].contains(cmd) ? Array(global.positional.dropFirst())
                                                     : reorderArgs(global.positional.dropFirst())
        do { f = try parseFlags(cmdArgs[...], specs) } catch { throw BerthError(error.message) }
        if f.bool("help") { out((commandHelp[cmd] ?? "") + "\n"); return 0 }

        let systemdCgroup = global.bool("systemd-cgroup")
        var rt = Runtime(root: global.string("root") ?? Rootless.defaultRoot(), systemdCgroup: systemdCgroup)
        rt.rootlessCgroups = try Rootless.cgroups(flag: global.string("rootless"), systemdCgroup: systemdCgroup)
        if global.string("root") == nil && rt.store.root != "/run/berth" {
            try Rootless.prepareRoot(rt.store.root)
        }
        switch cmd {
        case "create", "run":
            let id = try exactly(1, cmd, f)[0]
            var o = CreateOptions()
            o.bundle = f.string("bundle") ?? "."
            o.pidFile = f.string("pid-file")
            o.consoleSocket = f.string("console-socket")
            o.noPivot = f.bool("no-pivot")
            o.noNewKeyring = f.bool("no-new-keyring")
            o.preserveFds = f.int("preserve-fds") ?? 0
            if f.string("pidfd-socket") != nil { throw BerthError("--pidfd-socket is not supported by berth yet") }
            if cmd == "create" {
                _ = try rt.create(id: id, o)
                return 0
            }
            return try rt.run(id: id, o, detach: f.bool("detach"), keep: f.bool("keep"), subreaper: !f.bool("no-subreaper"))
        case "start":
            try rt.start(id: try exactly(1, cmd, f)[0])
        case "state":
            out(try rt.state(id: try exactly(1, cmd, f)[0]) + "\n")
        case "kill":
            guard f.positional.count == 1 || f.positional.count == 2 else {
                throw BerthError("\"kill\" requires a container id and optionally a signal")
            }
            let sigText = f.positional.count == 2 ? f.positional[1] : "SIGTERM"
            guard let sig = parseSignal(sigText) else { throw BerthError("unknown signal \"\(sigText)\"") }
            try rt.kill(id: f.positional[0], signal: sig, all: f.bool("all"))
        case "delete":
            try rt.delete(id: try exactly(1, cmd, f)[0], force: f.bool("force"))
        case "list":
            _ = try exactly(0, cmd, f)
            let items = rt.list()
            if f.bool("quiet") {
                out(items.map { $0.0.state.id + "\n" }.joined())
                return 0
            }
            switch f.string("format") ?? "table" {
            case "table":
                var rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
                for (r, s) in items {
                    rows.append([r.state.id, String(s == .stopped ? 0 : r.state.pid), s.rawValue,
                                 r.state.bundle, r.state.created, r.state.owner])
                }
                out(table(rows))
            case "json":
                out(JSON.array(items.map { $0.0.ociState(status: $0.1) }).render(indent: nil) + "\n")
            case let other:
                throw BerthError("invalid format option \"\(other)\" (table or json)")
            }
        case "spec":
            _ = try exactly(0, cmd, f)
            let bundle = f.string("bundle") ?? "."
            let path = bundle + "/config.json"
            if access(path, F_OK) == 0 { throw BerthError("File \(path) exists. Remove it first") }
            let text = DefaultSpec.render(rootless: f.bool("rootless"))
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd < 0 { throw BerthError("\(path): \(errnoWords(errno))") }
            defer { close(fd) }
            _ = text.withCString { write(fd, $0, strlen($0)) }
        case "features":
            _ = try exactly(0, cmd, f)
            out(Features.render())
        case "exec":
            guard let id = f.positional.first else { throw BerthError("\"exec\" requires a container id", exitCode: 255) }
            var o = ExecOptions()
            o.processFile = f.string("process")
            o.args = Array(f.positional.dropFirst())
            if o.processFile == nil && o.args.isEmpty {
                throw BerthError("exec: give a command after the container id, or --process FILE", exitCode: 255)
            }
            o.tty = f.bool("tty")
            o.consoleSocket = f.string("console-socket")
            o.cwd = f.string("cwd")
            o.env = f.lists["env"] ?? []
            o.user = f.string("user")
            o.additionalGids = f.lists["additional-gids"] ?? []
            o.caps = f.lists["cap"] ?? []
            o.noNewPrivs = f.bool("no-new-privs")
            o.detach = f.bool("detach")
            o.pidFile = f.string("pid-file")
            o.preserveFds = f.int("preserve-fds") ?? 0
            o.cgroups = f.lists["cgroup"] ?? []
            o.ignorePaused = f.bool("ignore-paused")
            o.apparmor = f.string("apparmor")
            o.processLabel = f.string("process-label")
            if f.string("pidfd-socket") != nil { throw BerthError("--pidfd-socket is not supported by berth yet", exitCode: 255) }
            return try rt.exec(id: id, o)
        case "pause":
            try rt.pause(id: try exactly(1, cmd, f)[0])
        case "resume":
            try rt.resume(id: try exactly(1, cmd, f)[0])
        case "ps":
            guard let id = f.positional.first else { throw BerthError("\"ps\" requires a container id") }
            let pids = try rt.pids(id: id)
            switch f.string("format") ?? "table" {
            case "json":
                out(JSON.array(pids.map { .int(Int64($0)) }).render(indent: nil) + "\n")
            case "table":
                let args = f.positional.count > 1 ? Array(f.positional.dropFirst()) : ["-ef"]
                out(try psTable(args: args, pids: Set(pids)))
            case let other:
                throw BerthError("invalid format option \"\(other)\" (table or json)")
            }
        case "update":
            let id = try exactly(1, cmd, f)[0]
            try rt.update(id: id, resources: try updateResources(f))
        case "events":
            let id = try exactly(1, cmd, f)[0]
            if f.bool("stats") {
                out(try rt.stats(id: id) + "\n")
            } else {
                let ms = try parseDuration(f.string("interval") ?? "5s")
                try rt.events(id: id, intervalMs: ms) { out($0 + "\n") }
            }
        default:
            throw BerthError("unknown command \"\(cmd)\"")
        }
        return 0
    } catch {
        log.error(error.message)
        return error.exitCode
    }
}

let berthCommit = "unknown"

/// Go's time.ParseDuration for the forms callers use: "5s", "100ms", "1m", "1.5s".
func parseDuration(_ s: String) throws(BerthError) -> Int {
    let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
    for (u, scale) in units where s.hasSuffix(u) {
        let num = s.dropLast(u.count)
        if u == "s" && num.hasSuffix("m") { continue }
        if let v = Double(num), v > 0 { return max(1, Int(v * scale)) }
    }
    throw BerthError("--interval: invalid duration \"\(s)\" (e.g. 5s, 500ms)")
}

/// Sizes as runc's update takes them: bytes, or with k/m/g/t (powers of 1024); -1 = unlimited.
func parseBytes(_ s: String, _ flag: String) throws(BerthError) -> Int64 {
    if s == "-1" { return -1 }
    var t = s.lowercased()
    if t.hasSuffix("b") { t.removeLast() }
    var scale: Int64 = 1
    if let last = t.last, let i = "kmgt".firstIndex(of: last) {
        scale = 1 << (10 * Int64("kmgt".distance(from: "kmgt".startIndex, to: i) + 1))
        t.removeLast()
    }
    guard let v = Int64(t), v >= 0 else { throw BerthError("--\(flag): invalid size \"\(s)\"") }
    return v * scale
}

/// `update`'s resources: a LinuxResources document (--resources FILE, or - for stdin),
/// then runc's single-value flags on top.
func updateResources(_ f: ParsedFlags) throws(BerthError) -> Resources {
    var r = Resources()
    if let src = f.string("resources") {
        let bytes: [UInt8]
        if src == "-" {
            var all: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(0, &buf, buf.count)
                if n <= 0 { break }
                all += buf[0..<n]
            }
            bytes = all
        } else {
            guard let b = try? readAll(src) else { throw BerthError("--resources: cannot read \(src): \(errnoWords(errno))") }
            bytes = b
        }
        do { r = try Resources(JSONReader(JSONValue.parse(bytes), file: "resources")) } catch {
            throw BerthError("\(error)")
        }
    }
    func int(_ name: String) throws(BerthError) -> Int64? {
        guard let v = f.string(name) else { return nil }
        guard let n = Int64(v) else { throw BerthError("--\(name): invalid number \"\(v)\"") }
        return n
    }
    if let v = f.string("memory") { r.memory = r.memory ?? MemoryResources(); r.memory!.limit = try parseBytes(v, "memory") }
    if let v = f.string("memory-reservation") { r.memory = r.memory ?? MemoryResources(); r.memory!.reservation = try parseBytes(v, "memory-reservation") }
    if let v = f.string("memory-swap") { r.memory = r.memory ?? MemoryResources(); r.memory!.swap = try parseBytes(v, "memory-swap") }
    if let v = f.string("kernel-memory") { r.memory = r.memory ?? MemoryResources(); r.memory!.kernel = try parseBytes(v, "kernel-memory") }
    if let v = f.string("kernel-memory-tcp") { r.memory = r.memory ?? MemoryResources(); r.memory!.kernelTCP = try parseBytes(v, "kernel-memory-tcp") }
    if let v = try int("cpu-share") { r.cpu = r.cpu ?? CPUResources(); r.cpu!.shares = UInt64(max(v, 0)) }
    if let v = try int("cpu-quota") { r.cpu = r.cpu ?? CPUResources(); r.cpu!.quota = v }
    if let v = try int("cpu-period") { r.cpu = r.cpu ?? CPUResources(); r.cpu!.period = UInt64(max(v, 0)) }
    if let v = try int("cpu-burst") { r.cpu = r.cpu ?? CPUResources(); r.cpu!.burst = UInt64(max(v, 0)) }
    if let v = try int("cpu-idle") { r.cpu = r.cpu ?? CPUResources(); r.cpu!.idle = v }
    if let v = try int("cpu-rt-period") { r.cpu = r.cpu ?? CPUResources(); r.cpu!.realtimePeriod = UInt64(max(v, 0)) }
    if let v = try int("cpu-rt-runtime") { r.cpu = r.cpu ?? CPUResources(); r.cpu!.realtimeRuntime = v }
    if let v = f.string("cpuset-cpus") { r.cpu = r.cpu ?? CPUResources(); r.cpu!.cpus = v }
    if let v = f.string("cpuset-mems") { r.cpu = r.cpu ?? CPUResources(); r.cpu!.mems = v }
    if let v = try int("pids-limit") { r.pids = v }
    if let v = try int("blkio-weight") {
        r.blockIO = r.blockIO ?? BlockIOResources()
        guard let w = UInt16(exactly: v) else { throw BerthError("--blkio-weight: out of range") }
        r.blockIO!.weight = w
    }
    if f.string("l3-cache-schema") != nil || f.string("mem-bw-schema") != nil {
        throw BerthError("--l3-cache-schema/--mem-bw-schema: Intel RDT is not supported by berth")
    }
    return r
}

func readAll(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw BerthError("open") }
    defer { close(fd) }
    var all: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 { throw BerthError("read") }
        if n == 0 { return all }
        all += buf[0..<n]
    }
}

/// `ps` in table mode: ps(1) with the caller's arguments, filtered to the container's
/// processes by the PID column.
func psTable(args: [String], pids: Set<Int32>) throws(BerthError) -> String {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw BerthError("pipe: \(errnoWords(errno))") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    var pid: pid_t = 0
    let argv = ["ps"] + args
    let r = withCStrings(argv) { posix_spawnp(&pid, "ps", &actions, nil, $0, environ) }
    posix_spawn_file_actions_destroy(&actions)
    close(fds[1])
    var output: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fds[0], &buf, buf.count)
        if n <= 0 { break }
        output += buf[0..<n]
    }
    close(fds[0])
    if r != 0 { throw BerthError("ps: \(errnoWords(r))") }
    var st: Int32 = 0
    waitpid(pid, &st, 0)
    let lines = String(decoding: output, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
    guard let header = lines.first, let col = header.split(separator: " ").firstIndex(of: "PID") else {
        throw BerthError("ps: no PID column in its output")
    }
    var result = String(header) + "\n"
    for line in lines.dropFirst() {
        let fields = line.split(separator: " ")
        if col < fields.count, let p = Int32(fields[col]), pids.contains(p) { result += line + "\n" }
    }
    return result
}


exit(main())
