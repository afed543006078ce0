import BerthSpec
import Glibc

public enum Status: String, Sendable {
    case creating, created, running, paused, stopped

    public var canStart: Bool { self == .created }
    public var canKill: Bool { self == .created || self == .running || self == .paused }
    public var canDelete: Bool { self == .stopped }
}

/// What Berth records in `<root>/<id>/state.json`. The status is not stored: it is derived
/// on every call from the live init process (see `ContainerRecord.status`).
public struct StoredState: Sendable {
    public var ociVersion: String
    public var id: String
    public var pid: Int32
    /// Field 22 of /proc/PID/stat when init was created: tells a recycled pid apart.
    public var startTime: UInt64
    public var bundle: String
    public var rootfs: String
    public var created: String
    public var annotations: [String: String]?
    public var owner: String
    /// Absolute path of the container's cgroup v2 directory (pure v2, or a hybrid host's
    /// unified hierarchy).
    public var cgroup: String?
    /// On a v1 or hybrid host: the container's directory in each v1 hierarchy, keyed by
    /// the hierarchy's subsystems ("cpu,cpuacct", "name=systemd").
    public var cgroupV1: [String: String]? = nil
    /// Under the systemd driver: the transient unit (scope or slice) holding `cgroup`.
    public var systemdUnit: String? = nil
    /// The unit belongs to the user's own systemd (rootless), reached on the user's bus.
    public var systemdUser: Bool = false
    /// Under the systemd driver on cgroup v1: the device rules in force (DeviceEmulator's
    /// stateLines), put back after systemd rewrites the devices cgroup on `update`.
    public var systemdDevices: [String]? = nil
    /// The cgroup directories Berth created for it (removed at delete), deepest last.
    public var cgroupCreated: [String]?
    /// While `create` runs (pid is 0 then): the creator, so a creator that died half-way
    /// leaves a record `delete` can clean up, and a live one shows as "creating".
    public var creatorPid: Int32?
    public var creatorStartTime: UInt64?
    /// startContainer, poststart and poststop run from later commands, which must not
    /// read a config.json that may have changed since create.
    public var hooks: Hooks?
    /// True when the container has its own pid namespace: killing init then ends every
    /// process of the container.
    public var ownPidNamespace: Bool
    /// Created with --no-new-keyring: `exec` then keeps its caller's keyring too, as runc's.
    public var noNewKeyring = false
}

extension StoredState {
    init(_ r: JSONReader) throws(SpecError) {
        ociVersion = try r.string("ociVersion")
        id = try r.string("id")
        pid = try r.integer("pid", Int32.self)
        startTime = try r.integer("startTime", UInt64.self)
        bundle = try r.string("bundle")
        rootfs = try r.string("rootfs")
        created = try r.string("created")
        annotations = try r.optStringMap("annotations", allowNUL: true)
        owner = try r.optString("owner") ?? ""
        cgroup = try r.optString("cgroup")
        cgroupV1 = try r.optStringMap("cgroupV1")
        systemdUnit = try r.optString("systemdUnit")
        systemdUser = try r.optBool("systemdUser") ?? false
        systemdDevices = try r.optStrings("systemdDevices")
        cgroupCreated = try r.optStrings("cgroupCreated")
        creatorPid = try r.optInteger("creatorPid", Int32.self)
        creatorStartTime = try r.optInteger("creatorStartTime", UInt64.self)
        ownPidNamespace = try r.optBool("ownPidNamespace") ?? false
        noNewKeyring = try r.optBool("noNewKeyring") ?? false
        hooks = try r.optObject("hooks").map { (o: JSONReader) throws(SpecError) in try Hooks(o) }
    }

    var json: JSON {
        let s: (String) -> JSON = { .string($0) }
        var f: [(String, JSON)] = [
            ("ociVersion", s(ociVersion)), ("id", s(id)), ("pid", .int(Int64(pid))),
            ("startTime", .int(Int64(startTime))), ("bundle", s(bundle)), ("rootfs", s(rootfs)),
            ("created", s(created)), ("owner", s(owner)), ("ownPidNamespace", .bool(ownPidNamespace)),
        ]
        if let a = annotations { f.append(("annotations", .object(a.keys.sorted().map { ($0, s(a[$0]!)) }))) }
        if let c = cgroup { f.append(("cgroup", s(c))) }
        if let c = cgroupV1 { f.append(("cgroupV1", .object(c.keys.sorted().map { ($0, s(c[$0]!)) }))) }
        if let u = systemdUnit { f.append(("systemdUnit", s(u))) }
        if systemdUser { f.append(("systemdUser", .bool(true))) }
        if let d = systemdDevices { f.append(("systemdDevices", .array(d.map(s)))) }
        if let c = cgroupCreated { f.append(("cgroupCreated", .array(c.map(s)))) }
        if let c = creatorPid { f.append(("creatorPid", .int(Int64(c)))) }
        if let c = creatorStartTime { f.append(("creatorStartTime", .int(Int64(c)))) }
        if let h = hooks { f.append(("hooks", h.json)) }
        if noNewKeyring { f.append(("noNewKeyring", .bool(true))) }
        return .object(f)
    }
}

/// What `delete` needs to find a container's init and cgroup, kept apart from state.json
/// in a file of its own: written once (whole, by rename) when init exists, and never
/// rewritten. A state.json that was emptied, truncated or replaced cannot hide a live
/// container then.
enum RecoveryRecord {
    static let name = "recovery"

    static func write(_ st: StoredState, dir: String) {
        var f: [(String, JSON)] = [("pid", .int(Int64(st.pid))), ("startTime", .int(Int64(st.startTime))),
                                   ("ownPidNamespace", .bool(st.ownPidNamespace))]
        if let c = st.cgroup { f.append(("cgroup", .string(c))) }
        if let c = st.cgroupV1 { f.append(("cgroupV1", .object(c.keys.sorted().map { ($0, .string(c[$0]!)) }))) }
        if let u = st.systemdUnit { f.append(("systemdUnit", .string(u))) }
        if st.systemdUser { f.append(("systemdUser", .bool(true))) }
        if let c = st.cgroupCreated { f.append(("cgroupCreated", .array(c.map { .string($0) }))) }
        // A file of its own, written whole or not at all (older builds kept it in a
        // symlink's target, which held no more than PATH_MAX: long cgroup paths in ten v1
        // hierarchies went without a record).
        try? FS.writeAtomically(dir + "/" + name, Array(JSON.object(f).render(indent: nil).utf8), mode: 0o600)
    }

    /// Whether the container directory holds a record (an older build's symlink too).
    static func present(dir: String) -> Bool {
        var st = stat()
        return lstat(dir + "/" + name, &st) == 0
    }

    /// The record read back as a minimal state, or nil.
    static func read(dir: String, id: String) -> StoredState? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(dir + "/" + name, &buf, buf.count - 1)
        let bytes: [UInt8]
        if n > 0 {
            bytes = buf[0..<n].map { UInt8(bitPattern: $0) }  // an older build's symlink
        } else {
            guard let b = try? FS.readFile(dir + "/" + name) else { return nil }
            bytes = b
        }
        guard let r = try? JSONReader(JSONValue.parse(bytes), file: name),
              let pid = try? r.integer("pid", Int32.self), let start = try? r.integer("startTime", UInt64.self)
        else { return nil }
        var st = StoredState(ociVersion: ociSpecVersion, id: id, pid: pid, startTime: start, bundle: "", rootfs: "",
                             created: "", annotations: nil, owner: "", cgroup: try? r.optString("cgroup"),
                             cgroupCreated: (try? r.optStrings("cgroupCreated")) ?? nil, creatorPid: nil,
                             creatorStartTime: nil, hooks: nil,
                             ownPidNamespace: ((try? r.optBool("ownPidNamespace")) ?? nil) ?? false)
        st.cgroupV1 = (try? r.optStringMap("cgroupV1")) ?? nil
        st.systemdUnit = (try? r.optString("systemdUnit")) ?? nil
        st.systemdUser = ((try? r.optBool("systemdUser")) ?? nil) ?? false
        return st
    }
}

public struct ContainerRecord {
    public var dir: String
    public var state: StoredState

    public var fifoPath: String { dir + "/exec.fifo" }

    /// created | running | paused | stopped, from the live process: init gone, a zombie, or
    /// a different start time means stopped; a frozen cgroup means paused; init still
    /// blocked before exec (the fifo is there) means created.
    public var status: Status {
        if state.pid == 0, let c = state.creatorPid, let info = ProcStat.read(pid: c),
           info.startTime == state.creatorStartTime, info.state != "Z" {
            return .creating
        }
        guard state.pid > 0, let info = ProcStat.read(pid: state.pid) else { return .stopped }
        if info.state == "Z" || info.state == "X" || info.startTime != state.startTime { return .stopped }
        if ContainerCgroups(state).frozen() { return .paused }
        return FS.exists(fifoPath) ? .created : .running
    }

    /// The OCI state as `berth state` prints it: runc's key order, 2-space indent.
    public func ociState(status: Status) -> JSON {
        var fields: [(String, JSON)] = [
            ("ociVersion", .string(state.ociVersion)),
            ("id", .string(state.id)),
            ("pid", .int(status == .stopped ? 0 : Int64(state.pid))),
            ("status", .string(status.rawValue)),
            ("bundle", .string(state.bundle)),
            ("rootfs", .string(state.rootfs)),
            ("created", .string(state.created)),
        ]
        if let a = state.annotations, !a.isEmpty {
            fields.append(("annotations", .object(a.keys.sorted().map { ($0, .string(a[$0]!)) })))
        }
        fields.append(("owner", .string(state.owner)))
        return .object(fields)
    }
}

public enum ProcStat {
    public struct Info { public var state: Character; public var startTime: UInt64; public var comm: Substring }

    /// Parses /proc/PID/stat. The command name (field 2) may hold spaces and parentheses,
    /// so fields are counted after the last ')'.
    public static func read(pid: Int32) -> Info? {
        guard let s = FS.readString("/proc/\(pid)/stat"), let open = s.firstIndex(of: "("),
              let close = s.lastIndex(of: ")"), open < close else { return nil }
        let rest = s[s.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
        guard rest.count > 19, let st = rest[0].first, let start = UInt64(rest[19]) else { return nil }
        return Info(state: st, startTime: start, comm: s[s.index(after: open)..<close])
    }
}

public struct StateStore {
    public var root: String
    public init(root: String) { self.root = root }

    /// runc's rule: `[A-Za-z0-9_+.-]+`, and not "." or "..". The id names a directory, so
    /// it also fits in one file name (said plainly, not as ENAMETOOLONG).
    public static func validate(id: String) throws(BerthError) {
        let ok = !id.isEmpty && id != "." && id != ".." && id.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
                c == 0x5f || c == 0x2b || c == 0x2e || c == 0x2d
        }
        if !ok { throw BerthError("invalid container ID format: \(printable(id))") }
        if id.utf8.count > Int(NAME_MAX) {
            throw BerthError("invalid container ID format: the ID is \(id.utf8.count) bytes long; at most \(NAME_MAX) fit in a file name")
        }
    }

    /// An id as it can be shown on one line: as is, or quoted with escapes when it holds
    /// anything but printable ASCII.
    static func printable(_ s: String) -> String {
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) { return s }
        var q = ""
        JSON.quote(s, into: &q)
        return q
    }

    public func dir(_ id: String) -> String { root + "/" + id }

    /// Claims `<root>/<id>` with mkdir, which is atomic: two creates of one id cannot both win.
    func claim(_ id: String) throws(BerthError) -> String {
        try FS.mkdirAll(root, mode: 0o700)
        let d = dir(id)
        if mkdir(d, 0o711) != 0 {
            if errno == EEXIST { throw BerthError("container with given ID already exists") }
            throw .sys("mkdir \(d)")
        }
        return d
    }

    public func load(_ id: String) throws(BerthError) -> ContainerRecord {
        try StateStore.validate(id: id)
        let d = dir(id)
        let bytes: [UInt8]
        do { bytes = try FS.readFile(d + "/state.json") } catch {
            if errno == ENOENT || errno == ENOTDIR { throw BerthError("container does not exist") }
            throw BerthError("\(d)/state.json: corrupt state: \(error.message)")
        }
        do {
            let st = try StoredState(JSONReader(JSONValue.parse(bytes), file: "state.json"))
            return ContainerRecord(dir: d, state: st)
        } catch {
            if StateStore.isForeign(bytes) {
                throw BerthError("container \(id) belongs to another runtime (its state.json is in runc's format); manage it with that runtime")
            }
            throw BerthError("\(d)/state.json: corrupt state: \(error)")
        }
    }

    /// A state root shared with runc (Docker 20.10 keeps every runtime's containers in
    /// one): runc's state.json has its own keys, and the container is runc's to manage.
    static func isForeign(_ bytes: [UInt8]) -> Bool {
        guard case .object(let fields)? = try? JSONValue.parse(bytes) else { return false }
        return fields.contains { $0.0 == "init_process_pid" } && !fields.contains { $0.0 == "ociVersion" }
    }

    func isForeign(_ id: String) -> Bool {
        guard let bytes = try? FS.readFile(dir(id) + "/state.json") else { return false }
        return StateStore.isForeign(bytes)
    }

    /// `start` and `delete` hold this lock on the container's directory for their whole
    /// step, so a plain delete racing a start either kills a container that was never
    /// released, or sees it running and refuses (it never kills a program that `start`
    /// has just reported as started). An fd to close, or -1 where there is no directory.
    func lock(_ id: String) -> Int32 {
        guard (try? StateStore.validate(id: id)) != nil else { return -1 }
        let fd = open(dir(id), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = retrying { flock(fd, LOCK_EX) } }
        return fd
    }

    /// Removes a container's directory: the files Berth puts there, then the directory;
    /// anything unexpected falls back to a full walk.
    func remove(_ dir: String) {
        unlink(dir + "/state.json")
        unlink(dir + "/" + RecoveryRecord.name)
        unlink(dir + "/exec.fifo")
        if rmdir(dir) != 0 && errno != ENOENT { FS.removeTree(dir) }
    }

    func save(_ rec: ContainerRecord) throws(BerthError) {
        let bytes = Array(rec.state.json.render(indent: nil).utf8)
        // Never a state Berth could not read back (every later command would fail on it).
        if bytes.count > FS.readLimit {
            throw BerthError("\(rec.dir)/state.json: the container's state would take \(bytes.count >> 20) MiB, over the \(FS.readLimit >> 20) MiB berth reads back")
        }
        try FS.writeAtomically(rec.dir + "/state.json", bytes, mode: 0o600)
    }

    public func ids() -> [String] {
        FS.listDirectory(root).filter {
            FS.exists(root + "/" + $0 + "/state.json") || RecoveryRecord.present(dir: root + "/" + $0)
        }
    }
}
