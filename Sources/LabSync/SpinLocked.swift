/// A value guarded by its own spin lock: for small state that is read and
/// written in short critical sections that never sleep.
public final class SpinLocked<Value>: @unchecked Sendable {
    // @unchecked: `value` is only touched with `lock` held (so the
    // runtime's exclusivity checks on it could never fail, and are off).
    @usableFromInline let lock: SpinLock
    @usableFromInline @exclusivity(unchecked) var value: Value

    public init(_ value: Value, name: String, domain: SyncDomain) {
        self.value = value
        lock = SpinLock(name, domain: domain)
    }

    /// Runs `body` with the lock held and the value borrowed for change.
    /// Inlinable, so callers in other modules get it specialised (the
    /// generic version fetched metadata for `Value` and `R` on every call).
    @inlinable
    public func withLock<R, E: Error>(file: StaticString = #fileID, line: UInt = #line, _ body: (inout Value) throws(E) -> R) throws(E) -> R {
        lock.lock(file: file, line: line)
        defer { lock.unlock() }
        return try body(&value)
    }
}
