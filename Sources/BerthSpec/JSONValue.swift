// JSON for Berth: a parser that reports line and column, and a value tree that
// `JSONReader` turns into typed values with errors naming the JSON path
// ("process.user.uid: -1 is not an unsigned 32-bit integer"). FoundationEssentials'
// JSONDecoder reports neither the position of a syntax error nor the field of an
// out-of-range number, and Codable's generic machinery costs ~1.5 ms at every start.

/// A JSON value. Numbers keep their source text so integers are exact at any width.
/// Objects keep their key order (duplicates: the last one wins, as in Go).
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// True for values that ask for nothing: null, false, 0, "", [], {} (recursively empty).
    public var isEmptyRequest: Bool {
        switch self {
        case .null: return true
        case .bool(let b): return !b
        case .number(let n): return Double(n) == 0
        case .string(let s): return s.isEmpty
        case .array(let a): return a.isEmpty
        case .object(let o): return o.allSatisfy { $0.1.isEmptyRequest }
        }
    }

    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    public subscript(key: String) -> JSONValue? {
        guard case .object(let o) = self else { return nil }
        return o.last(where: { $0.0 == key })?.1
    }
}

public struct JSONSyntaxError: Error, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var reason: String
    public var description: String { "line \(line) column \(column): \(reason)" }
}

// MARK: parser

extension JSONValue {
    public static func parse(_ bytes: [UInt8]) throws(JSONSyntaxError) -> JSONValue {
        var p = Parser(b: bytes)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        if p.i < p.b.count { throw p.error("unexpected \(p.describe(p.b[p.i])) after the top-level value") }
        return v
    }

    public static func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue { try parse(Array(text.utf8)) }
}

private struct Parser {
    let b: [UInt8]
    var i = 0

    func error(_ reason: String) -> JSONSyntaxError {
        var line = 1, col = 1
        for k in 0..<min(i, b.count) {
            if b[k] == 0x0a { line += 1; col = 1 } else { col += 1 }
        }
        return JSONSyntaxError(line: line, column: col, reason: reason)
    }

    func describe(_ c: UInt8) -> String {
        c >= 0x20 && c < 0x7f ? "character '\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16))"
    }

    mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0a || b[i] == 0x0d || b[i] == 0x09 { i += 1 }
    }

    mutating func value(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        if depth > 512 { throw error("nesting too deep") }
        guard i < b.count else { throw error("unexpected end of input") }
        switch b[i] {
        case 0x7b: // {
            i += 1
            var pairs: [(String, JSONValue)] = []
            skipSpace()
            if i < b.count && b[i] == 0x7d { i += 1; return .object(pairs) }
            while true {
                skipSpace()
                guard i < b.count else { throw error("unexpected end of input in an object") }
                guard b[i] == 0x22 else { throw error("expected a string key, found \(describe(b[i]))") }
                let k = try string()
                skipSpace()
                guard i < b.count, b[i] == 0x3a else { throw error("expected ':' after key \"\(k)\"") }
                i += 1
                skipSpace()
                let v = try value(depth: depth + 1)
                pairs.append((k, v))
                skipSpace()
                guard i < b.count else { throw error("unexpected end of input in an object") }
                if b[i] == 0x2c { i += 1; continue }
                if b[i] == 0x7d { i += 1; return .object(pairs) }
                throw error("expected ',' or '}' in an object, found \(describe(b[i]))")
            }
        case 0x5b: // [
            i += 1
            var items: [JSONValue] = []
            skipSpace()
            if i < b.count && b[i] == 0x5d { i += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard i < b.count else { throw error("unexpected end of input in an array") }
                if b[i] == 0x2c { i += 1; continue }
                if b[i] == 0x5d { i += 1; return .array(items) }
                throw error("expected ',' or ']' in an array, found \(describe(b[i]))")
            }
        case 0x22: return .string(try string())
        case 0x74: try literal("true"); return .bool(true)
        case 0x66: try literal("false"); return .bool(false)
        case 0x6e: try literal("null"); return .null
        case 0x2d, 0x30...0x39: return .number(try number())
        default: throw error("unexpected \(describe(b[i]))")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let n = word.utf8CodeUnitCount
        let w = UnsafeBufferPointer(start: word.utf8Start, count: n)
        guard i + n <= b.count, b[i..<(i + n)].elementsEqual(w) else { throw error("invalid literal") }
        i += n
    }

    mutating func number() throws(JSONSyntaxError) -> String {
        let start = i
        if b[i] == 0x2d { i += 1 }
        func digits(_ p: inout Parser) -> Int {
            let s = p.i
            while p.i < p.b.count, p.b[p.i] >= 0x30 && p.b[p.i] <= 0x39 { p.i += 1 }
            return p.i - s
        }
        guard i < b.count else { throw error("invalid number") }
        if b[i] == 0x30 { i += 1 } else if digits(&self) == 0 { throw error("invalid number") }
        if i < b.count && b[i] == 0x2e { i += 1; if digits(&self) == 0 { throw error("invalid number") } }
        if i < b.count && (b[i] == 0x65 || b[i] == 0x45) {
            i += 1
            if i < b.count && (b[i] == 0x2b || b[i] == 0x2d) { i += 1 }
            if digits(&self) == 0 { throw error("invalid number") }
        }
        return String(decoding: b[start..<i], as: UTF8.self)
    }

    mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        guard i + 4 <= b.count else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    mutating func string() throws(JSONSyntaxError) -> String {
        i += 1 // opening quote
        // Fast path: no escape before the closing quote (nearly every string in a config).
        var j = i
        while j < b.count, b[j] != 0x22, b[j] != 0x5c, b[j] >= 0x20 { j += 1 }
        if j < b.count, b[j] == 0x22 {
            let s = String(decoding: b[i..<j], as: UTF8.self)
            i = j + 1
            return s
        }
        var out: [UInt8] = []
        while true {
            guard i < b.count else { throw error("unterminated string") }
            let c = b[i]
            if c == 0x22 { i += 1; break }
            if c < 0x20 { throw error("control character in a string") }
            if c != 0x5c { out.append(c); i += 1; continue }
            i += 1
            guard i < b.count else { throw error("unterminated string") }
            let e = b[i]
            i += 1
            switch e {
            case 0x22: out.append(0x22)
            case 0x5c: out.append(0x5c)
            case 0x2f: out.append(0x2f)
            case 0x62: out.append(0x08)
            case 0x66: out.append(0x0c)
            case 0x6e: out.append(0x0a)
            case 0x72: out.append(0x0d)
            case 0x74: out.append(0x09)
            case 0x75:
                var u = try hex4()
                if u >= 0xd800 && u < 0xdc00, i + 1 < b.count, b[i] == 0x5c, b[i + 1] == 0x75 {
                    i += 2
                    let lo = try hex4()
                    if lo >= 0xdc00 && lo < 0xe000 { u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00) } else { u = 0xfffd }
                }
                let scalar = Unicode.Scalar(u) ?? "\u{fffd}"
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: throw error("invalid escape '\\\(Character(Unicode.Scalar(e)))'")
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

