public import VirtualMemory

/// A reclaim scenario: the machine, the address spaces and their mappings,
/// the plugins with their bindings, the workloads, the pressure, how long,
/// the seed, and which checks are on. Read from YAML by `ScenarioReader`;
/// every field has the default a scenario file may leave out.
public struct Scenario: Sendable, Equatable {
    public var name: String
    public var summary: String = ""
    public var seed: UInt64 = 1
    public var length: Length = .operations(100_000)
    public var machine = MachineSpec()
    public var spaces: [SpaceSpec] = []
    public var plugins: [PluginSpec] = []
    public var workloads: [WorkloadSpec] = []
    public var pressure = PressureSpec()
    public var checks: Set<Check> = Set(Check.allCases)
    /// Where the machine was written (for set-up errors).
    public var machineMark = SourceMark.unknown

    public init(name: String) { self.name = name }

    /// How long a run lasts: checked accesses (CPU and device together), or
    /// wall-clock seconds.
    public enum Length: Sendable, Equatable {
        case operations(Int)
        case seconds(Double)
    }

    /// The oracle's invariants (docs/ORACLE.md).
    public enum Check: String, Sendable, CaseIterable, Hashable {
        case staleTranslation = "stale-translation"
        case useAfterFree = "use-after-free"
        case crossSpaceLeak = "cross-space-leak"
        case lostWrite = "lost-write"
        /// A page a device uses hot must not be evicted (docs/ORACLE.md, "Hot
        /// page evicted" and "Used page reported not young").
        case hotPages = "hot-pages"
        case pinLeak = "pin-leak"
        /// Device accesses keep the primary's permissions (no write through
        /// a read-only translation, no access to a PROT_NONE page).
        case permissions
        case contexts
        /// Successful starts paired with one end; retry only from a non-blockable start.
        case pairing
        case watchdog
        /// What plugins report about themselves (`MMULAB_LOG_MISBEHAVING`).
        case pluginReports = "plugin-reports"
        /// Host services called with bad arguments; registrations, pins and
        /// pages left behind at detach or destroy.
        case pluginContract = "plugin-contract"
        /// Lock order (lockdep): inversions, reclaim inversions, locks held
        /// when a callback returns. Off, locks cost nothing extra.
        case lockOrder = "lock-order"
    }
}

/// The primary MMU's machine.
public struct MachineSpec: Sendable, Equatable {
    public var frames = 4_096
    public var nodes = 1
    /// Bytes of each page the model stores (the oracle's tags need 16).
    public var payloadSize = 16
    public var swapSlots = 8_192
    /// Free-frame watermarks per node; nil: the model's defaults.
    public var lowWatermark: Int? = nil
    public var highWatermark: Int? = nil
    /// Transparent huge pages for private anonymous memory (Linux:
    /// /sys/kernel/mm/transparent_hugepage/enabled): never, madvise (only
    /// mappings marked `huge`), always.
    public var transparentHugePages: TransparentHugePages = .never
    /// Frames in ZONE_MOVABLE, over all nodes (each node's upper part):
    /// user memory comes from there first, and a long-term pin moves a
    /// page out of it. 0: none.
    public var movableFrames = 0

    public init() {}
}

/// An address space and its mappings.
public struct SpaceSpec: Sendable, Equatable {
    public var name: String
    public var mappings: [MappingSpec] = []

    public init(name: String, mappings: [MappingSpec] = []) {
        self.name = name
        self.mappings = mappings
    }
}

public struct MappingSpec: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case anonymous, file }
    public var name: String
    public var kind: Kind = .anonymous
    public var pages: Int
    /// `MADV_MERGEABLE`: KSM may merge its pages.
    public var mergeable = false
    /// Devices use it hot: the hot-pages check watches its evictions.
    public var hot = false
    /// madvise(MADV_HUGEPAGE): huge pages where the machine's setting is
    /// `madvise` (anonymous mappings only).
    public var huge = false

    public init(name: String, kind: Kind = .anonymous, pages: Int, mergeable: Bool = false) {
        self.name = name
        self.kind = kind
        self.pages = pages
        self.mergeable = mergeable
    }
}

/// A plugin to load, its instances and their bindings.
public struct PluginSpec: Sendable, Equatable {
    /// A bundled plugin's name (`gpu`, `rdma`, `kvm`) or a path to a `.so`.
    public var plugin: String
    /// The name workloads use for it (defaults to `plugin`).
    public var name: String
    public var options = ""
    public var instances = 1
    public var bindings: [BindingSpec] = []
    /// Where the plugin, and its options, were written (for set-up errors).
    public var mark = SourceMark.unknown
    public var optionsMark = SourceMark.unknown

    public init(plugin: String, name: String) {
        self.plugin = plugin
        self.name = name
    }
}

/// One binding of each instance of a plugin: a mapping, or a window of it.
public struct BindingSpec: Sendable, Equatable {
    public var space: String
    public var mapping: String
    /// Where the window starts in the device's address space; nil: the
    /// mapping's own address (GPU SVM style).
    public var deviceAddress: UInt64? = nil
    public var write = true
    public var pinned = false
    /// Where the binding was written (for set-up errors).
    public var mark = SourceMark.unknown

    public init(space: String, mapping: String) {
        self.space = space
        self.mapping = mapping
    }
}

/// Threads that access a mapping: the CPU, or a plugin's device.
public struct WorkloadSpec: Sendable, Equatable {
    public enum Actor: Sendable, Equatable {
        case cpu
        case device(plugin: String)
    }
    public enum Pattern: Sendable, Equatable {
        case uniform
        case sequential
        /// Zipf's law with exponent `s` (about 1: a few hot pages).
        case zipfian(s: Double)
    }
    public var name: String
    public var actor: Actor
    public var space: String
    public var mapping: String
    public var threads = 1
    public var pattern: Pattern = .uniform
    /// The fraction of accesses that write, 0...1.
    public var writes = 0.5
    /// Device workloads: the fraction of the writes that are atomics,
    /// 0...1 (the device takes the page exclusive first, ABI 1.5).
    public var atomics = 0.0
    /// Accesses per second per thread; 0: as fast as it can.
    public var rate = 0

    public init(name: String, actor: Actor, space: String, mapping: String) {
        self.name = name
        self.actor = actor
        self.space = space
        self.mapping = mapping
    }
}

/// What the run does to memory besides the workloads. Each is off unless
/// the scenario names it.
public struct PressureSpec: Sendable, Equatable {
    /// Keep free memory this low with a balloon (frames taken by a hog
    /// address space), so reclaim runs all the time.
    public var balloonPages: Int? = nil
    /// kswapd on.
    public var backgroundReclaim = true
    /// Page migrations per second across nodes.
    public var migrationRate: Int? = nil
    /// KSM scans per second, and the fraction of pages the CPU workloads
    /// write with duplicate content.
    public var ksmScansPerSecond: Int? = nil
    public var ksmDuplicates = 0.0
    /// munmap + mmap of a mapping's pages, per second.
    public var churn: [RatedTarget] = []
    /// mprotect read-only and back, per second.
    public var mprotect: [RatedTarget] = []
    /// fork + exit of a child of a space, per second.
    public var forkRate: [RatedTarget] = []
    /// An OOM kill of a space after this many milliseconds.
    public var oomKill: OOMKill? = nil
    /// A device migrating ranges of a binding to its memory and back.
    public var deviceMigration: [DeviceTarget] = []
    /// A fresh binding attached, read through and detached, over and over,
    /// while the rest of the run invalidates (registration races).
    public var attachChurn: [DeviceTarget] = []
    /// Writeback of a file mapping's dirty pages, per second.
    public var writeback: [RatedTarget] = []
    /// Short-lived address spaces a device binds and that exit under it.
    public var exitRelease: [ExitRelease] = []
    /// MADV_FREE of a window of an anonymous mapping, per second.
    public var lazyFree: [WindowTarget] = []
    /// Live snapshots with userfaultfd write-protect, per second: the
    /// mapping write-protected whole, then released 16 pages at a time,
    /// the pages CPU writes wait on first.
    public var userfaultSnapshot: [RatedTarget] = []
    /// mremap of a mapping away and back, per second (away for a
    /// millisecond: accesses there fail; the data moves with it).
    public var mremap: [RatedTarget] = []
    /// A khugepaged-like collapse daemon: scans per second, each trying up
    /// to 8 aligned 2 MiB ranges that are not huge pages yet (collapsed
    /// only if a page there is young, for the CPU or by `test_young`).
    public var collapseScansPerSecond: Int? = nil
    /// Compaction: pages of the tracked mappings moved within their node,
    /// per second (pinned pages are passed over untold).
    public var compactionRate: Int? = nil

    public init() {}

    /// A window of `pages` pages of a mapping, chosen at random each time,
    /// and a rate.
    public struct WindowTarget: Sendable, Equatable {
        public var space: String
        public var mapping: String
        public var rate: Int
        public var pages: Int
        public init(space: String, mapping: String, rate: Int, pages: Int) {
            self.space = space
            self.mapping = mapping
            self.rate = rate
            self.pages = pages
        }
    }

    public struct RatedTarget: Sendable, Equatable {
        public var space: String
        public var mapping: String?
        public var rate: Int
        /// mprotect only: a random window of this many pages each time
        /// (nil: the whole mapping).
        public var pages: Int?
        public init(space: String, mapping: String?, rate: Int, pages: Int? = nil) {
            self.space = space
            self.mapping = mapping
            self.rate = rate
            self.pages = pages
        }
    }

    /// A plugin's binding on a mapping, a rate, and pages per round.
    public struct DeviceTarget: Sendable, Equatable {
        public var plugin: String
        public var space: String
        public var mapping: String
        public var rate: Int
        public var pages: Int
        /// Attach churn only: each binding is registered pinned (RDMA
        /// without on-demand paging: a long-term pin of the whole mapping).
        public var pinned: Bool
        public init(plugin: String, space: String, mapping: String, rate: Int, pages: Int, pinned: Bool = false) {
            self.plugin = plugin
            self.space = space
            self.mapping = mapping
            self.rate = rate
            self.pages = pages
            self.pinned = pinned
        }
    }

    public struct ExitRelease: Sendable, Equatable {
        public var plugin: String
        public var rate: Int
        public var pages: Int
        public init(plugin: String, rate: Int, pages: Int) {
            self.plugin = plugin
            self.rate = rate
            self.pages = pages
        }
    }

    public struct OOMKill: Sendable, Equatable {
        public var space: String
        public var afterMilliseconds: Int
        public init(space: String, afterMilliseconds: Int) {
            self.space = space
            self.afterMilliseconds = afterMilliseconds
        }
    }
}
