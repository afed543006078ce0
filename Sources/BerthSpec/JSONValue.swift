// A JSON value of any shape. Used for config fields Berth keeps but does not interpret
// (annotations pass through), and for fields a later version implements: their mere
// presence is detected so they can be refused by name instead of silently ignored.
public enum JSONValue: Decodable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// True for values that ask for nothing: null, false, 0, "", [], {} (recursively empty).
    public var isEmptyRequest: Bool {
        switch self {
        case .null: return true
        case .bool(let b): return !b
        case .number(let n): return n == 0
        case .string(let s): return s.isEmpty
        case .array(let a): return a.isEmpty
        case .object(let o): return o.values.allSatisfy { $0.isEmptyRequest }
        }
    }
}
