/// Reproducible iteration for plugins.
///
/// A `Dictionary`'s order depends on the process's hash seed (and, for
/// object identities, on heap addresses), so a plugin that acts on its
/// entries in dictionary order (zaps ranges, frees children, services VMs)
/// does things in a different order on every run, and `mmulab run
/// --schedule` cannot replay it. Iterate in key order instead.
extension Dictionary where Key: Comparable {
    /// The values, ordered by their keys.
    @inlinable  // specialised in the plugin: unspecialised, the sort cost a GPU invalidation 17,000 instructions
    public var valuesInKeyOrder: [Value] { sorted { $0.key < $1.key }.map(\.value) }
}
