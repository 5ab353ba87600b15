import MMUNotifier

extension Machine {
    /// One mapping of a frame: where a young check found it.
    struct MappingKey: Hashable {
        let space: AddressSpaceID
        let address: UInt64
    }

    /// The mappings a young check found, a set of `MappingKey`s: the first
    /// two inline, any more in a `Set`.
    ///
    /// Reclaim makes one per frame it checks, and almost every frame is
    /// mapped once or twice (a fork family shares a page a few times at
    /// most), so the common case allocates nothing and hashes nothing.
    struct MappingKeys {
        private var first: MappingKey?
        private var second: MappingKey?
        /// The third and later keys (nil until there is one).
        private var more: Set<MappingKey>?

        init() {}

        /// Adds `key` if it is not there yet.
        mutating func insert(_ key: MappingKey) {
            guard !contains(key) else { return }
            if first == nil {
                first = key
            } else if second == nil {
                second = key
            } else {
                if more == nil { more = [] }
                more!.insert(key)
            }
        }

        /// Whether `key` was inserted.
        func contains(_ key: MappingKey) -> Bool {
            if first == key || second == key { return true }
            return more?.contains(key) ?? false
        }
    }
}
