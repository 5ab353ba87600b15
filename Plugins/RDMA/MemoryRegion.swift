import DevicePluginKit
import Synchronization

/// What a memory region allows (Linux: `IBV_ACCESS_*`).
struct AccessFlags: OptionSet, Sendable, CustomStringConvertible {
    let rawValue: UInt32
    static let localWrite = AccessFlags(rawValue: 1 << 0)
    static let remoteWrite = AccessFlags(rawValue: 1 << 1)
    static let remoteRead = AccessFlags(rawValue: 1 << 2)
    static let onDemand = AccessFlags(rawValue: 1 << 3)

    var description: String {
        [(Self.localWrite, "LOCAL_WRITE"), (.remoteWrite, "REMOTE_WRITE"), (.remoteRead, "REMOTE_READ"), (.onDemand, "ON_DEMAND")]
            .filter { contains($0.0) }.map(\.1).joined(separator: "|")
    }
}

/// A registered memory region (Linux: `ib_mr` / mlx5's `mlx5_ib_mr`): a
/// window `[start, end)` of one address space that remote peers reach by
/// key at `iova`. Subclasses say how translations are had: on demand
/// (`ODPRegion`, `ImplicitODPRegion`) or pinned up front (`PinnedRegion`).
class MemoryRegion: @unchecked Sendable {
    // @unchecked: `key` is set once by the key table before the region is
    // published; `users` is atomic; subclasses guard their own state.
    unowned let nic: NIC
    let addressSpace: UInt64
    let start: UInt64
    let end: UInt64
    let iova: UInt64
    let access: AccessFlags
    /// The memory key (lkey and rkey alike, as one mlx5 mkey).
    var key: UInt32 = 0
    /// Remote operations using the region now: deregistration waits for none.
    let users = Atomic<Int>(0)

    /// What `ibv_reg_mr` is asked for.
    struct Request {
        var addressSpace: UInt64
        var start: UInt64
        var end: UInt64
        var iova: UInt64
        var access: AccessFlags
    }

    init(nic: NIC, _ request: Request) {
        self.nic = nic
        addressSpace = request.addressSpace
        start = request.start
        end = request.end
        iova = request.iova
        access = request.access
    }

    var writable: Bool { access.contains(.remoteWrite) }

    /// [blockable] One remote READ or WRITE of the page holding `address`.
    func transfer(_ address: UInt64, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) throws(PluginError) {
        preconditionFailure("\(Self.self) must override transfer")
    }

    /// [blockable] On-demand regions: the translation table holding
    /// `address`, in use by the caller until `releaseTable`.
    func acquireTable(for address: UInt64) throws(PluginError) -> UmemODP {
        preconditionFailure("\(Self.self) has no on-demand translation table")
    }

    func releaseTable(_ table: UmemODP) {}

    /// [blockable] `ibv_advise_mr(PREFETCH[_WRITE])` over `[first, last)`.
    func prefetch(_ first: UInt64, _ last: UInt64) throws(PluginError) {}

    /// [blockable] Deregistration, after the key is gone and no user is left.
    func release() {}
}

/// The NIC's key table (mlx5: the `odp_mkeys` xarray): remote operations
/// find their region by key, so a deregistered region's key fails as a
/// remote access error. Indices are reused; each registration gets the next
/// variant byte, so a stale key meets a new region at the same index only
/// after 256 registrations (as with mlx5's 8-bit key).
final class KeyTable: @unchecked Sendable {
    // @unchecked: everything is guarded by `lock` (a spin lock: lookups are short).
    static let indexLimit: UInt32 = 1 << 24
    private let lock: HostLock
    private var regions: [UInt32: MemoryRegion] = [:]
    private var freeIndices: [UInt32] = []
    private var nextIndex: UInt32 = 1
    private var variant: UInt8 = 0

    init(host: Host) { lock = host.makeLock("rdma keys", spin: true) }

    /// Publishes `region` under a fresh key.
    func register(_ region: MemoryRegion) throws(PluginError) {
        try lock.withLock { () throws(PluginError) in
            let index: UInt32
            if let reused = freeIndices.popLast() {
                index = reused
            } else {
                guard nextIndex < Self.indexLimit else { throw .noMemory("no memory key left (\(Self.indexLimit - 1) regions registered)") }
                index = nextIndex
                nextIndex += 1
            }
            variant &+= 1
            region.key = index << 8 | UInt32(variant)
            precondition(regions[region.key] == nil, "key 0x\(String(region.key, radix: 16)) is live twice")
            regions[region.key] = region
        }
    }

    /// The region of `key`, with one more user, or nil if there is none.
    func acquire(_ key: UInt32) -> MemoryRegion? {
        lock.withLock {
            guard let region = regions[key] else { return nil }
            region.users.add(1, ordering: .acquiring)
            return region
        }
    }

    func remove(_ key: UInt32) {
        lock.withLock {
            if regions.removeValue(forKey: key) != nil { freeIndices.append(key >> 8) }
        }
    }
}
