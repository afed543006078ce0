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

    func line(_ level: String, _ msg: String) {
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
        if fd >= 0 { line("debug", msg); return }
        let t = "debug: " + msg + "\n"
        _ = t.withCString { write(2, $0, strlen($0)) }
    }

    func warning(_ msg: String) {
        if fd >= 0 { line("warning", msg); return }
        let t = "warning: " + msg + "\n"
        _ = t.withCString { write(2, $0, strlen($0)) }
    }

    func error(_ msg: String) {
        line("error", msg)
        let t = msg + "\n"
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

global options:
   --root DIR              state directory (default /run/berth)
   --log FILE              append errors to FILE (created at start-up)
   --log-format text|json  log line format (default text)
   --debug                 log debug messages
   --systemd-cgroup        manage cgroups through systemd (not supported yet)
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
let notYet: Set<String> = ["exec", "pause", "resume", "ps", "update", "events", "checkpoint", "restore"]

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
        if global.bool("systemd-cgroup") {
            throw BerthError("--systemd-cgroup: systemd cgroup management is not supported by berth yet")
        }
        if notYet.contains(cmd) {
            throw BerthError("\"\(cmd)\" is not supported by berth yet")
        }
        guard let specs = commandFlags[cmd] else { throw BerthError("unknown command \"\(cmd)\"; see berth --help") }
        let f: ParsedFlags
        do { f = try parseFlags(global.positional.dropFirst(), specs) } catch { throw BerthError(error.message) }
        if f.bool("help") { out((commandHelp[cmd] ?? "") + "\n"); return 0 }

        let rt = Runtime(root: global.string("root") ?? "/run/berth")
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
exit(main())
