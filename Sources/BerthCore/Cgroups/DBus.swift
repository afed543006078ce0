#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// A small D-Bus client: just what the systemd cgroup driver needs (method calls to
// org.freedesktop.systemd1 and its JobRemoved signal), over a unix stream socket.
//
// Why Berth's own and not sd-bus: Berth is one static binary, and Debian ships sd-bus
// (libsystemd) as a shared library only; linking it would make every Berth command load
// libsystemd and its dependencies, for the one command in a hundred that talks to
// systemd. The wire format is small (the D-Bus specification's marshalling of a handful
// of types), and the connection is synchronous, as the CLI is. youki made the same choice.
//
// Only little-endian messages are produced; replies in either byte order are read.

indirect enum DBusValue: Equatable {
    case byte(UInt8)
    case bool(Bool)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case double(Double)
    case string(String)
    case objectPath(String)
    case signature(String)
    /// Elements with their signature (needed for an empty array).
    case array(String, [DBusValue])
    case structure([DBusValue])
    case dictEntry(DBusValue, DBusValue)
    case variant(DBusValue)

    var signature: String {
        switch self {
        case .byte: return "y"
        case .bool: return "b"
        case .int32: return "i"
        case .uint32: return "u"
        case .int64: return "x"
        case .uint64: return "t"
        case .double: return "d"
        case .string: return "s"
        case .objectPath: return "o"
        case .signature: return "g"
        case .array(let e, _): return "a" + e
        case .structure(let vs): return "(" + vs.map(\.signature).joined() + ")"
        case .dictEntry(let k, let v): return "{" + k.signature + v.signature + "}"
        case .variant: return "v"
        }
    }

    var stringValue: String? {
        switch self {
        case .string(let s), .objectPath(let s), .signature(let s): return s
        case .variant(let v): return v.stringValue
        default: return nil
        }
    }
}

enum DBusWire {
    static func alignment(_ c: UInt8) -> Int {
        switch c {
        case UInt8(ascii: "y"), UInt8(ascii: "g"), UInt8(ascii: "v"): return 1
        case UInt8(ascii: "n"), UInt8(ascii: "q"): return 2
        case UInt8(ascii: "x"), UInt8(ascii: "t"), UInt8(ascii: "d"), UInt8(ascii: "("), UInt8(ascii: "{"): return 8
        default: return 4  // b i u s o a h
        }
    }

    /// Splits a signature into its complete types ("a(sv)s" -> ["a(sv)", "s"]), or nil.
    static func split(_ sig: String) -> [String]? {
        let b = Array(sig.utf8)
        var out: [String] = []
        var i = 0
        while i < b.count {
            guard let end = completeType(b, i) else { return nil }
            out.append(String(decoding: b[i..<end], as: UTF8.self))
            i = end
        }
        return out
    }

    /// The index just past the complete type starting at `i`.
    static func completeType(_ b: [UInt8], _ i: Int) -> Int? {
        guard i < b.count else { return nil }
        switch b[i] {
        case UInt8(ascii: "a"): return completeType(b, i + 1)
        case UInt8(ascii: "("), UInt8(ascii: "{"):
            let close: UInt8 = b[i] == UInt8(ascii: "(") ? UInt8(ascii: ")") : UInt8(ascii: "}")
            var j = i + 1
            while j < b.count && b[j] != close {
                guard let e = completeType(b, j) else { return nil }
                j = e
            }
            return j < b.count ? j + 1 : nil
        case UInt8(ascii: "y"), UInt8(ascii: "b"), UInt8(ascii: "n"), UInt8(ascii: "q"), UInt8(ascii: "i"),
             UInt8(ascii: "u"), UInt8(ascii: "x"), UInt8(ascii: "t"), UInt8(ascii: "d"), UInt8(ascii: "s"),
             UInt8(ascii: "o"), UInt8(ascii: "g"), UInt8(ascii: "v"), UInt8(ascii: "h"):
            return i + 1
        default: return nil
        }
    }
}

/// Marshals values in little-endian order; offsets count from the message's start, so
/// one writer builds the header and the body is written with its own (8-aligned) start.
struct DBusWriter {
    var bytes: [UInt8] = []

    mutating func pad(_ n: Int) { while bytes.count % n != 0 { bytes.append(0) } }
    mutating func u32(_ v: UInt32) { pad(4); withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { pad(8); withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }

    mutating func write(_ v: DBusValue) {
        switch v {
        case .byte(let x): bytes.append(x)
        case .bool(let x): u32(x ? 1 : 0)
        case .int32(let x): u32(UInt32(bitPattern: x))
        case .uint32(let x): u32(x)
        case .int64(let x): u64(UInt64(bitPattern: x))
        case .uint64(let x): u64(x)
        case .double(let x): u64(x.bitPattern)
        case .string(let s), .objectPath(let s):
            let u = Array(s.utf8)
            u32(UInt32(u.count)); bytes += u; bytes.append(0)
        case .signature(let s):
            let u = Array(s.utf8)
            bytes.append(UInt8(u.count)); bytes += u; bytes.append(0)
        case .array(let elem, let items):
            u32(0)
            let lengthAt = bytes.count - 4
            pad(DBusWire.alignment(elem.utf8.first ?? 0))
            let start = bytes.count
            for item in items { write(item) }
            let n = UInt32(bytes.count - start).littleEndian
            withUnsafeBytes(of: n) { for (k, b) in $0.enumerated() { bytes[lengthAt + k] = b } }
        case .structure(let vs):
            pad(8)
            for x in vs { write(x) }
        case .dictEntry(let k, let x):
            pad(8); write(k); write(x)
        case .variant(let x):
            write(.signature(x.signature)); write(x)
        }
    }
}

struct DBusReader {
    let bytes: [UInt8]
    var pos: Int
    let little: Bool

    init(_ bytes: [UInt8], at pos: Int = 0, little: Bool = true) { self.bytes = bytes; self.pos = pos; self.little = little }

    struct Malformed: Error {}

    mutating func align(_ n: Int) throws(Malformed) {
        while pos % n != 0 { pos += 1 }
        if pos > bytes.count { throw Malformed() }
    }
    mutating func take(_ n: Int) throws(Malformed) -> ArraySlice<UInt8> {
        guard n >= 0, pos + n <= bytes.count else { throw Malformed() }
        defer { pos += n }
        return bytes[pos..<pos + n]
    }
    /// An aligned unsigned integer of `n` bytes in the message's byte order.
    mutating func fixed(_ n: Int) throws(Malformed) -> UInt64 {
        try align(n)
        var v: UInt64 = 0
        for (k, b) in try take(n).enumerated() { v |= UInt64(b) << (little ? 8 * k : 8 * (n - 1 - k)) }
        return v
    }
    mutating func u16() throws(Malformed) -> UInt16 { UInt16(try fixed(2)) }
    mutating func u32() throws(Malformed) -> UInt32 { UInt32(try fixed(4)) }
    mutating func u64() throws(Malformed) -> UInt64 { try fixed(8) }

    mutating func read(_ sig: String, depth: Int = 0) throws(Malformed) -> DBusValue {
        let b = Array(sig.utf8)
        guard let c = b.first, depth < 64 else { throw Malformed() }
        switch c {
        case UInt8(ascii: "y"): return .byte(try take(1).first!)
        case UInt8(ascii: "b"): return .bool(try u32() != 0)
        case UInt8(ascii: "n"): return .int32(Int32(Int16(bitPattern: try u16())))
        case UInt8(ascii: "q"): return .uint32(UInt32(try u16()))
        case UInt8(ascii: "i"): return .int32(Int32(bitPattern: try u32()))
        case UInt8(ascii: "u"), UInt8(ascii: "h"): return .uint32(try u32())
        case UInt8(ascii: "x"): return .int64(Int64(bitPattern: try u64()))
        case UInt8(ascii: "t"): return .uint64(try u64())
        case UInt8(ascii: "d"): return .double(Double(bitPattern: try u64()))
        case UInt8(ascii: "s"), UInt8(ascii: "o"):
            let n = Int(try u32())
            let s = String(decoding: try take(n), as: UTF8.self)
            _ = try take(1)
            return c == UInt8(ascii: "s") ? .string(s) : .objectPath(s)
        case UInt8(ascii: "g"):
            let n = Int(try take(1).first!)
            let s = String(decoding: try take(n), as: UTF8.self)
            _ = try take(1)
            return .signature(s)
        case UInt8(ascii: "v"):
            guard case .signature(let inner) = try read("g"), DBusWire.split(inner)?.count == 1 else { throw Malformed() }
            return .variant(try read(inner, depth: depth + 1))
        case UInt8(ascii: "a"):
            let elem = String(sig.dropFirst())
            let n = Int(try u32())
            try align(DBusWire.alignment(elem.utf8.first ?? 0))
            let end = pos + n
            guard end <= bytes.count else { throw Malformed() }
            var items: [DBusValue] = []
            while pos < end { items.append(try read(elem, depth: depth + 1)) }
            return .array(elem, items)
        case UInt8(ascii: "("), UInt8(ascii: "{"):
            try align(8)
            guard let parts = DBusWire.split(String(decoding: b[1..<b.count - 1], as: UTF8.self)) else { throw Malformed() }
            var vs: [DBusValue] = []
            for p in parts { vs.append(try read(p, depth: depth + 1)) }
            if c == UInt8(ascii: "{") {
                guard vs.count == 2 else { throw Malformed() }
                return .dictEntry(vs[0], vs[1])
            }
            return .structure(vs)
        default: throw Malformed()
        }
    }
}

struct DBusMessage {
    static let methodCall: UInt8 = 1, methodReturn: UInt8 = 2, error: UInt8 = 3, signal: UInt8 = 4

    var type: UInt8
    var flags: UInt8 = 0
    var serial: UInt32 = 0
    var path: String?
    var interface: String?
    var member: String?
    var errorName: String?
    var replySerial: UInt32?
    var destination: String?
    var sender: String?
    var body: [DBusValue] = []

    func encode() -> [UInt8] {
        var fields: [DBusValue] = []
        func field(_ code: UInt8, _ v: DBusValue?) { if let v { fields.append(.structure([.byte(code), .variant(v)])) } }
        field(1, path.map { .objectPath($0) })
        field(2, interface.map { .string($0) })
        field(3, member.map { .string($0) })
        field(4, errorName.map { .string($0) })
        field(5, replySerial.map { .uint32($0) })
        field(6, destination.map { .string($0) })
        let sig = body.map(\.signature).joined()
        field(8, sig.isEmpty ? nil : .signature(sig))
        var w = DBusWriter()
        w.bytes = [UInt8(ascii: "l"), type, flags, 1]
        w.u32(0)  // body length, patched below
        w.u32(serial)
        w.write(.array("(yv)", fields))
        w.pad(8)
        let bodyStart = w.bytes.count
        for v in body { w.write(v) }
        let n = UInt32(w.bytes.count - bodyStart).littleEndian
        withUnsafeBytes(of: n) { for (k, b) in $0.enumerated() { w.bytes[4 + k] = b } }
        return w.bytes
    }

    /// The total size of the message that starts `head` (at least 16 bytes), or nil.
    static func totalLength(_ head: ArraySlice<UInt8>) -> Int? {
        guard head.count >= 16 else { return nil }
        let h = Array(head.prefix(16))
        let little = h[0] == UInt8(ascii: "l")
        var r = DBusReader(h, at: 4, little: little)
        guard let body = try? r.u32(), let _ = try? r.u32(), let fields = try? r.u32() else { return nil }
        let headerEnd = (16 + Int(fields) + 7) & ~7
        return headerEnd + Int(body)
    }

    static func decode(_ bytes: [UInt8]) -> DBusMessage? {
        guard bytes.count >= 16, bytes[0] == UInt8(ascii: "l") || bytes[0] == UInt8(ascii: "B"), bytes[3] == 1 else { return nil }
        var r = DBusReader(bytes, at: 4, little: bytes[0] == UInt8(ascii: "l"))
        var m = DBusMessage(type: bytes[1], flags: bytes[2])
        do {
            _ = try r.u32()
            m.serial = try r.u32()
            guard case .array(_, let fields) = try r.read("a(yv)") else { return nil }
            var sig = ""
            for f in fields {
                guard case .structure(let p) = f, p.count == 2, case .byte(let code) = p[0], case .variant(let v) = p[1] else { return nil }
                switch code {
                case 1: m.path = v.stringValue
                case 2: m.interface = v.stringValue
                case 3: m.member = v.stringValue
                case 4: m.errorName = v.stringValue
                case 5: if case .uint32(let s) = v { m.replySerial = s }
                case 6: m.destination = v.stringValue
                case 7: m.sender = v.stringValue
                case 8: sig = v.stringValue ?? ""
                default: break
                }
            }
            try r.align(8)
            guard let types = DBusWire.split(sig) else { return nil }
            for t in types { m.body.append(try r.read(t)) }
        } catch { return nil }
        return m
    }
}

/// One synchronous connection: to systemd's private socket (peer to peer, no Hello) or to
/// the system bus (Hello first). Signals that arrive while a reply is awaited are kept.
final class DBusConnection {
    let fd: Int32
    let path: String
    private var serial: UInt32 = 0
    private var inbox: [UInt8] = []
    private var signals: [DBusMessage] = []
    /// How long to wait for any one answer.
    var timeoutMs: Int32 = 30_000

    private init(fd: Int32, path: String) { self.fd = fd; self.path = path }
    deinit { close(fd) }

    /// Connects and authenticates with EXTERNAL (the kernel vouches for our uid through
    /// SO_PEERCRED); `bus` says whether a bus daemon is on the other end (Hello).
    static func open(_ path: String, bus: Bool) throws(BerthError) -> DBusConnection {
        let c = DBusConnection(fd: try connectUnix(path), path: path)
        // The peer sees our uid as its own namespace has it: in a user namespace (rootless
        // Podman's) that is the id our uid maps to outside, not 0.
        let uid = String(Rootless.outsideUid(getuid()))
        let hex = uid.utf8.map { b in let d = Array("0123456789abcdef".utf8); return String(decoding: [d[Int(b >> 4)], d[Int(b & 15)]], as: UTF8.self) }.joined()
        // BEGIN goes with AUTH, before the server's OK, as sd-bus's own clients send it.
        // Sent after the OK instead, it can reach systemd in one read with the first call,
        // and systemd 252 then leaves that call unread in its buffer until more bytes
        // come: the call is never answered (seen as a hang in `delete`, about 1 in 10).
        // Pipelined, systemd takes BEGIN as soon as its OK is written, before it reads on.
        try c.send(Array("\0AUTH EXTERNAL \(hex)\r\nBEGIN\r\n".utf8))
        let line = try c.readLine()
        guard line.hasPrefix("OK ") else {
            throw BerthError("\(path): D-Bus authentication refused: \(line)")
        }
        if bus {
            _ = try c.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                           interface: "org.freedesktop.DBus", member: "Hello")
        }
        return c
    }

    private func send(_ bytes: [UInt8]) throws(BerthError) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw BerthError("\(path): write: \(errnoWords(errno))")
            }
            off += n
        }
    }

    private func fill() throws(BerthError) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let r = retrying { poll(&p, 1, timeoutMs) }
        if r == 0 { throw BerthError("\(path): no answer from D-Bus within \(timeoutMs / 1000) s") }
        var buf = [UInt8](repeating: 0, count: 8192)
        let n = retrying { buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }
        if n < 0 { throw BerthError("\(path): read: \(errnoWords(errno))") }
        if n == 0 { throw BerthError("\(path): D-Bus connection closed") }
        inbox += buf[0..<n]
    }

    private func readLine() throws(BerthError) -> String {
        while true {
            if let i = inbox.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: inbox[0..<i], as: UTF8.self)
                inbox.removeSubrange(0...i)
                return line.hasSuffix("\r") ? String(line.dropLast()) : line
            }
            if inbox.count > 4096 { throw BerthError("\(path): D-Bus authentication: overlong line") }
            try fill()
        }
    }

    private func nextMessage() throws(BerthError) -> DBusMessage {
        while true {
            if let total = DBusMessage.totalLength(inbox[...]) {
                guard total <= 64 << 20 else { throw BerthError("\(path): D-Bus message too large") }
                if inbox.count >= total {
                    let bytes = Array(inbox[0..<total])
                    inbox.removeSubrange(0..<total)
                    guard let m = DBusMessage.decode(bytes) else { throw BerthError("\(path): malformed D-Bus message") }
                    return m
                }
            }
            try fill()
        }
    }

    /// A method call, answered by its reply: the method's return (or, with `allowError`,
    /// an error reply, for the caller to look at); an error reply otherwise throws as
    /// "Name: message".
    @discardableResult
    func call(destination: String, path objPath: String, interface: String, member: String,
              body: [DBusValue] = [], allowError: Bool = false) throws(BerthError) -> DBusMessage {
        serial += 1
        let mine = serial
        let m = DBusMessage(type: DBusMessage.methodCall, serial: mine, path: objPath, interface: interface,
                            member: member, destination: destination, body: body)
        try send(m.encode())
        while true {
            let r = try nextMessage()
            if r.type == DBusMessage.signal { signals.append(r); continue }
            guard r.replySerial == mine else { continue }
            if r.type == DBusMessage.error && !allowError {
                throw BerthError(DBusConnection.errorText(r))
            }
            return r
        }
    }

    static func errorText(_ r: DBusMessage) -> String {
        let text = r.body.first?.stringValue ?? ""
        return text.isEmpty ? (r.errorName ?? "D-Bus error") : text
    }

    /// Waits for a signal matching `match` (one that came in earlier counts).
    func waitSignal(_ what: String, _ match: (DBusMessage) -> Bool) throws(BerthError) -> DBusMessage {
        if let i = signals.firstIndex(where: match) { return signals.remove(at: i) }
        while true {
            let r: DBusMessage
            do { r = try nextMessage() } catch {
                throw BerthError("waiting for \(what): \(error.message)")
            }
            if r.type == DBusMessage.signal && match(r) { return r }
        }
    }
}
