import Glibc

/// An error for the user: one line, lowercase, no final period. `exitCode` is what the
/// CLI exits with (1 for every runtime error, per runc).
public struct BerthError: Error, CustomStringConvertible {
    public var message: String
    public var exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 1) { self.message = message; self.exitCode = exitCode }
    public var description: String { message }
}

/// Debug messages (`--debug`). The CLI points this at its log; nil means off, and the
/// message is not even built then. Berth is single-threaded, hence unsafe is fine.
nonisolated(unsafe) public var debugSink: ((String) -> Void)?

/// Warnings (always logged), such as capability names the kernel does not know.
nonisolated(unsafe) public var warningSink: ((String) -> Void)?

func warn(_ message: String) { warningSink?(message) }

@inline(__always)
func debug(_ message: @autoclosure () -> String) {
    if let sink = debugSink { sink(message()) }
}

/// errno in runc's (Go's) wording: "no such file or directory", "operation not permitted".
public func errnoWords(_ e: Int32) -> String {
    guard let p = strerror(e) else { return "errno \(e)" }
    let s = String(cString: p)
    guard let f = s.first else { return s }
    return f.lowercased() + s.dropFirst()
}

extension BerthError {
    static func sys(_ what: String, _ e: Int32 = errno) -> BerthError {
        BerthError("\(what): \(errnoWords(e))")
    }
}

/// Retries a syscall-style call while it fails with EINTR.
@inline(__always)
func retrying<T: SignedInteger>(_ body: () -> T) -> T {
    while true {
        let r = body()
        if r < 0 && errno == EINTR { continue }
        return r
    }
}

/// An open file descriptor with a single owner, closed when the owner goes out of scope,
/// so that no error path has to remember to close it. `release()` hands it on instead.
struct FileDescriptor: ~Copyable {
    let raw: Int32
    init(_ raw: Int32) { self.raw = raw }
    consuming func release() -> Int32 {
        let r = raw
        discard self
        return r
    }
    deinit { close(raw) }
}

enum FS {
    /// What readFile takes by default: a config or a state file is never larger.
    static let readLimit = 16 << 20

    static func readFile(_ path: String, limit: Int = readLimit) throws(BerthError) -> [UInt8] {
        let fd = retrying { open(path, O_RDONLY | O_CLOEXEC) }
        if fd < 0 { throw .sys(path) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buf.withUnsafeMutableBytes { b in retrying { read(fd, b.baseAddress, b.count) } }
            if n < 0 { throw .sys("read \(path)") }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
            if out.count > limit { errno = EFBIG; throw BerthError("\(path): too large (over \(limit >> 20) MiB)") }
        }
        return out
    }

    static func readString(_ path: String) -> String? {
        guard let b = try? readFile(path) else { return nil }
        return String(decoding: b, as: UTF8.self)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { b in retrying { write(fd, b.baseAddress! + off, b.count - off) } }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    /// Writes a file through a temporary name in the same directory and a rename, so a
    /// reader never sees half of it.
    static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(BerthError) {
        let tmp = path + ".tmp\(getpid())"
        let fd = retrying { open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode) }
        if fd < 0 { throw .sys("open \(tmp)") }
        if !writeAll(fd, bytes) {
            let e = errno; close(fd); unlink(tmp); throw .sys("write \(tmp)", e)
        }
        close(fd)
        if rename(tmp, path) != 0 { let e = errno; unlink(tmp); throw .sys("rename \(tmp) to \(path)", e) }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }


    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func mkdirAll(_ path: String, mode: mode_t = 0o755) throws(BerthError) {
        if isDirectory(path) { return }
        var cur = ""
        for comp in path.split(separator: "/") {
            cur += "/" + comp
            if mkdir(cur, mode) != 0 && errno != EEXIST { throw .sys("mkdir \(cur)") }
        }
    }

    /// Removes a directory tree (state directories hold only plain files). Does not
    /// follow symlinks.
    static func removeTree(_ path: String) {
        if unlink(path) == 0 { return }
        guard let d = opendir(path) else { return }
        while let ent = readdir(d) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name == "." || name == ".." { continue }
            let child = path + "/" + name
            if unlink(child) != 0 { removeTree(child) }
        }
        closedir(d)
        rmdir(path)
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let ent = readdir(d) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { out.append(name) }
        }
        return out.sorted()
    }

    static func currentDirectory() -> String {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let ok = buf.withUnsafeMutableBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { getcwd($0, b.count) != nil }
        }
        guard ok, let end = buf.firstIndex(of: 0) else { return "/" }
        return String(decoding: buf[..<end], as: UTF8.self)
    }
}

enum Paths {
    /// Lexically cleans an absolute path: collapses "//", ".", and ".." (never above "/").
    static func clean(_ path: String) -> String {
        var parts: [Substring] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Makes `path` absolute against `base` and cleans it.
    static func absolute(_ path: String, base: String) -> String {
        path.hasPrefix("/") ? clean(path) : clean(base + "/" + path)
    }
}

/// Wall-clock time in RFC 3339. Hand-made: Foundation's formatters are not worth their
/// start-up cost.
public enum WallClock {
    public static func now() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts
    }

    public static func rfc3339(_ ts: timespec = now(), nanos: Bool) -> String {
        var t = ts.tv_sec
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return s.count >= w ? s : String(repeating: "0", count: w - s.count) + s
        }
        var s = "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
        s += "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2))"
        if nanos {
            // Go's RFC3339Nano drops trailing zeros of the fraction.
            var frac = pad(Int32(ts.tv_nsec), 9)
            while frac.hasSuffix("0") { frac.removeLast() }
            if !frac.isEmpty { s += "." + frac }
        }
        return s + "Z"
    }
}
