// Command-line parsing in runc's dialect, which is Go's flag package: `-flag` and
// `--flag` are the same, a value comes as `--flag=v` or `--flag v`, booleans take
// `--flag=false`, and parsing stops at the first argument that is not a flag.
//
// A table-driven parser rather than swift-argument-parser: that package costs ~1.5 ms
// per call (paid by every container start) and does not accept single-dash long flags,
// which containerd really sends (`-no-subreaper`).

public enum FlagKind: Sendable { case bool, string, int, strings }

public struct FlagSpec: Sendable {
    public var names: [String]
    public var kind: FlagKind
    public init(names: [String], kind: FlagKind) { self.names = names; self.kind = kind }
}

public struct ParsedFlags {
    public var bools: [String: Bool] = [:]
    public var strings: [String: String] = [:]
    public var lists: [String: [String]] = [:]
    public var positional: [String] = []

    public func bool(_ n: String) -> Bool { bools[n] ?? false }
    public func string(_ n: String) -> String? { strings[n] }
    public func int(_ n: String) -> Int? { strings[n].flatMap { Int($0) } }
}

public struct ArgError: Error { public var message: String }

/// Go's strconv.ParseBool.
public func parseGoBool(_ s: String) -> Bool? {
    switch s {
    case "1", "t", "T", "TRUE", "true", "True": return true
    case "0", "f", "F", "FALSE", "false", "False": return false
    default: return nil
    }
}

/// Parses `args` against `specs`. The canonical name of a flag is its first name. With
/// `stopAtPositional` (Go's rule) everything after the first positional argument is
/// positional too.
public func parseFlags(_ args: ArraySlice<String>, _ specs: [FlagSpec], stopAtPositional: Bool = true) throws(ArgError) -> ParsedFlags {
    var out = ParsedFlags()
    var byName: [String: FlagSpec] = [:]
    for s in specs { for n in s.names { byName[n] = s } }
    var i = args.startIndex
    while i < args.endIndex {
        let a = args[i]
        i += 1
        if a == "--" { out.positional.append(contentsOf: args[i...]); break }
        guard a.hasPrefix("-"), a.count > 1 else {
            out.positional.append(a)
            if stopAtPositional { out.positional.append(contentsOf: args[i...]); break }
            continue
        }
        var body = Substring(a.dropFirst())
        if body.hasPrefix("-") { body = body.dropFirst() }
        var name = String(body)
        var value: String?
        if let eq = body.firstIndex(of: "=") {
            name = String(body[..<eq])
            value = String(body[body.index(after: eq)...])
        }
        guard let spec = byName[name] else { throw ArgError(message: "flag provided but not defined: -\(name)") }
        let key = spec.names[0]
        switch spec.kind {
        case .bool:
            if let v = value {
                guard let b = parseGoBool(v) else { throw ArgError(message: "invalid boolean value \"\(v)\" for -\(name)") }
                out.bools[key] = b
            } else {
                out.bools[key] = true
            }
        case .string, .int, .strings:
            if value == nil {
                guard i < args.endIndex else { throw ArgError(message: "flag needs an argument: -\(name)") }
                value = args[i]
                i += 1
            }
            if spec.kind == .int && Int(value!) == nil {
                throw ArgError(message: "invalid value \"\(value!)\" for flag -\(name): parse error")
            }
            if spec.kind == .strings { out.lists[key, default: []].append(value!) } else { out.strings[key] = value! }
        }
    }
    return out
}

/// Signal names and numbers as runc accepts them: "9", "KILL", "SIGKILL", "sigkill".
public func parseSignal(_ s: String) -> Int32? {
    // A number as runc takes it, 0 included (a probe: `kill -a ID 0`).
    if let n = Int32(s) { return n >= 0 && n < 65 ? n : nil }
    var name = s.uppercased()
    if name.hasPrefix("SIG") { name.removeFirst(3) }
    if name.hasPrefix("RTMIN+"), let k = Int32(name.dropFirst(6)), k >= 0, 34 + k <= 64 { return 34 + k }
    if name.hasPrefix("RTMAX-"), let k = Int32(name.dropFirst(6)), k >= 0, 64 - k >= 34 { return 64 - k }
    return signalTable[name]
}

public let signalTable: [String: Int32] = [
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
    "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29,
    "PWR": 30, "SYS": 31, "RTMIN": 34, "RTMAX": 64,
]

/// runc's `list` table: Go's tabwriter with minwidth 12, padding 3; the last column
/// is not padded.
public func table(_ rows: [[String]]) -> String {
    guard let cols = rows.first?.count else { return "" }
    var widths = [Int](repeating: 12, count: cols)
    for r in rows { for (i, c) in r.enumerated() where i < cols - 1 { widths[i] = max(widths[i], c.count + 3) } }
    var s = ""
    for r in rows {
        for (i, c) in r.enumerated() {
            s += c
            if i < cols - 1 { s += String(repeating: " ", count: widths[i] - c.count) }
        }
        s += "\n"
    }
    return s
}


/// urfave/cli's argument reordering, which runc's commands (all but exec and ps) get:
/// flags written after the container id still count (`runc update ID --memory 1M`).
/// Flags move to the front in order; an argument right after a flag written without "="
/// goes with it (as its value, or back to the positionals when the flag is a bool, as
/// Go's flag parsing then leaves it); "--" ends the flags.
public func reorderArgs(_ args: ArraySlice<String>) -> [String] {
    var flags: [String] = [], rest: [String] = []
    var takesValue = false
    for (i, a) in zip(args.indices, args) {
        if a == "--" { rest += args[i...]; break }
        if takesValue && !a.hasPrefix("-") {
            takesValue = false
            flags.append(a)
            continue
        }
        takesValue = false
        if a != "-" && a.hasPrefix("-") {
            flags.append(a)
            takesValue = !a.contains("=")
        } else {
            rest.append(a)
        }
    }
    return flags + rest
}
