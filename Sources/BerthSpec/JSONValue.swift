// JSON for Berth: a parser that reports line and column, a value tree, and a Decoder
// over that tree whose errors carry the full JSON path ("process.user.uid: -1 does not
// fit ..."). FoundationEssentials' JSONDecoder reports neither the position of a syntax
// error nor the field of an out-of-range number, and costs start-up time.

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

extension JSONValue: Decodable {
    public init(from decoder: Decoder) throws {
        if let d = decoder as? TreeDecoder { self = d.value; return }
        throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "JSONValue decodes only through JSONValue.decode"))
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

// MARK: decoding a tree into Decodable types

extension JSONValue {
    /// Decodes `T` from this value; errors are DecodingErrors whose coding path is the
    /// JSON path of the offending value.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try T(from: TreeDecoder(value: self, codingPath: []))
    }
}

struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String
    init(_ i: Int) { intValue = i; stringValue = "Index \(i)" }
    init?(intValue: Int) { self.init(intValue) }
    init?(stringValue: String) { return nil }
}

final class TreeDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(value: JSONValue, codingPath: [any CodingKey]) {
        self.value = value
        self.codingPath = codingPath
    }

    func mismatch(_ expected: Any.Type, _ what: String) -> DecodingError {
        .typeMismatch(expected, .init(codingPath: codingPath, debugDescription: "expected \(what), found \(value.kindName)"))
    }

    func container<Key: CodingKey>(keyedBy: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let pairs) = value else { throw mismatch([String: Any].self, "an object") }
        var dict: [String: JSONValue] = [:]
        for (k, v) in pairs { dict[k] = v }
        return KeyedDecodingContainer(Keyed<Key>(dict: dict, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else { throw mismatch([Any].self, "an array") }
        return Unkeyed(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(d: self) }

    func integer<T: FixedWidthInteger>(_ t: T.Type, _ name: String) throws -> T {
        guard case .number(let text) = value else { throw mismatch(t, name) }
        if let v = T(text) { return v }
        let out = DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(text) is not \(name)"))
        throw out
    }
}

private struct Single: SingleValueDecodingContainer {
    let d: TreeDecoder
    var codingPath: [any CodingKey] { d.codingPath }

    func decodeNil() -> Bool { d.value == .null }
    func decode(_ t: Bool.Type) throws -> Bool {
        guard case .bool(let b) = d.value else { throw d.mismatch(t, "a boolean") }
        return b
    }
    func decode(_ t: String.Type) throws -> String {
        guard case .string(let s) = d.value else { throw d.mismatch(t, "a string") }
        return s
    }
    func decode(_ t: Double.Type) throws -> Double {
        guard case .number(let n) = d.value, let v = Double(n) else { throw d.mismatch(t, "a number") }
        return v
    }
    func decode(_ t: Float.Type) throws -> Float { Float(try decode(Double.self)) }
    func decode(_ t: Int.Type) throws -> Int { try d.integer(t, "an integer") }
    func decode(_ t: Int8.Type) throws -> Int8 { try d.integer(t, "an 8-bit integer") }
    func decode(_ t: Int16.Type) throws -> Int16 { try d.integer(t, "a 16-bit integer") }
    func decode(_ t: Int32.Type) throws -> Int32 { try d.integer(t, "a 32-bit integer") }
    func decode(_ t: Int64.Type) throws -> Int64 { try d.integer(t, "a 64-bit integer") }
    func decode(_ t: UInt.Type) throws -> UInt { try d.integer(t, "an unsigned integer") }
    func decode(_ t: UInt8.Type) throws -> UInt8 { try d.integer(t, "an unsigned 8-bit integer") }
    func decode(_ t: UInt16.Type) throws -> UInt16 { try d.integer(t, "an unsigned 16-bit integer") }
    func decode(_ t: UInt32.Type) throws -> UInt32 { try d.integer(t, "an unsigned 32-bit integer") }
    func decode(_ t: UInt64.Type) throws -> UInt64 { try d.integer(t, "an unsigned 64-bit integer") }
    func decode<T: Decodable>(_ t: T.Type) throws -> T { try T(from: d) }
}

private struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let dict: [String: JSONValue]
    let codingPath: [any CodingKey]
    var allKeys: [Key] { dict.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { dict[key.stringValue] != nil }

    func child(_ key: Key) throws -> TreeDecoder {
        guard let v = dict[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
        }
        return TreeDecoder(value: v, codingPath: codingPath + [key])
    }

    func decodeNil(forKey key: Key) throws -> Bool { (dict[key.stringValue] ?? .null) == .null }
    func decode<T: Decodable>(_ t: T.Type, forKey key: Key) throws -> T { try T(from: child(key)) }
    func decodeIfPresent<T: Decodable>(_ t: T.Type, forKey key: Key) throws -> T? {
        guard let v = dict[key.stringValue], v != .null else { return nil }
        return try T(from: TreeDecoder(value: v, codingPath: codingPath + [key]))
    }
    func decode(_ t: Bool.Type, forKey key: Key) throws -> Bool { try Single(d: child(key)).decode(t) }
    func decode(_ t: String.Type, forKey key: Key) throws -> String { try Single(d: child(key)).decode(t) }
    func decode(_ t: Double.Type, forKey key: Key) throws -> Double { try Single(d: child(key)).decode(t) }
    func decode(_ t: Float.Type, forKey key: Key) throws -> Float { try Single(d: child(key)).decode(t) }
    func decode(_ t: Int.Type, forKey key: Key) throws -> Int { try Single(d: child(key)).decode(t) }
    func decode(_ t: Int8.Type, forKey key: Key) throws -> Int8 { try Single(d: child(key)).decode(t) }
    func decode(_ t: Int16.Type, forKey key: Key) throws -> Int16 { try Single(d: child(key)).decode(t) }
    func decode(_ t: Int32.Type, forKey key: Key) throws -> Int32 { try Single(d: child(key)).decode(t) }
    func decode(_ t: Int64.Type, forKey key: Key) throws -> Int64 { try Single(d: child(key)).decode(t) }
    func decode(_ t: UInt.Type, forKey key: Key) throws -> UInt { try Single(d: child(key)).decode(t) }
    func decode(_ t: UInt8.Type, forKey key: Key) throws -> UInt8 { try Single(d: child(key)).decode(t) }
    func decode(_ t: UInt16.Type, forKey key: Key) throws -> UInt16 { try Single(d: child(key)).decode(t) }
    func decode(_ t: UInt32.Type, forKey key: Key) throws -> UInt32 { try Single(d: child(key)).decode(t) }
    func decode(_ t: UInt64.Type, forKey key: Key) throws -> UInt64 { try Single(d: child(key)).decode(t) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try child(key).container(keyedBy: NestedKey.self)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try child(key).unkeyedContainer() }
    func superDecoder() throws -> any Decoder { TreeDecoder(value: .object(dict.map { ($0.key, $0.value) }), codingPath: codingPath) }
    func superDecoder(forKey key: Key) throws -> any Decoder { try child(key) }
}

private struct Unkeyed: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [JSONValue], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    mutating func next() throws -> TreeDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "array ended"))
        }
        let d = TreeDecoder(value: items[currentIndex], codingPath: codingPath + [IndexKey(currentIndex)])
        currentIndex += 1
        return d
    }

    mutating func decodeNil() throws -> Bool {
        if !isAtEnd && items[currentIndex] == .null { currentIndex += 1; return true }
        return false
    }
    mutating func decode<T: Decodable>(_ t: T.Type) throws -> T { try T(from: next()) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: NestedKey.self)
    }
    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> any Decoder { try next() }
}
