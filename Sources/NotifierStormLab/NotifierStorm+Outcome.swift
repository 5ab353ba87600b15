public import MMUNotifier
import LabSync

extension NotifierStorm {
    /// What a finished storm found and did, taken once its actors have
    /// stopped (`mmulab notifier-storm` prints it).
    public struct Outcome: Sendable {
        public let seed: UInt64
        public let elapsed: Duration
        public let invalidations: Int
        /// Non-blockable starts a device refused, over every address space.
        public let refusedStarts: Int
        public let faults: Int
        /// Faults that had to start over (readRetry said an invalidation came between).
        public let faultRetries: Int
        /// Guests registered while the storm ran.
        public let registrations: Int
        /// Invalidation starts by event, over every address space.
        public let startsByEvent: [NotifierEvent: Int]
        /// Checks that found a device still holding a translation an ended invalidation made stale.
        public let staleTranslations: Int
        public let contractViolations: Int
        public let contextViolations: Int
        /// What each violation was: the first stale translations, then up to
        /// ten contract and ten context violations.
        public let findings: [String]

        /// Violations of every kind.
        public var violationCount: Int { staleTranslations + contractViolations + contextViolations }
        public var isClean: Bool { violationCount == 0 }

        init(_ storm: NotifierStorm, elapsed: Duration) {
            let core = storm.core
            let c = storm.counters
            var byEvent: [NotifierEvent: Int] = [:]
            var refused = 0
            for space in storm.spaces {
                let stats = space.notifiers.statistics
                byEvent.merge(stats.startsByEvent, uniquingKeysWith: +)
                refused += stats.refusedStarts
            }
            seed = storm.seed
            self.elapsed = elapsed
            invalidations = c.invalidations.load(ordering: .relaxed)
            refusedStarts = refused
            faults = c.faults.load(ordering: .relaxed)
            faultRetries = c.faultRetries.load(ordering: .relaxed)
            registrations = c.registrations.load(ordering: .relaxed)
            startsByEvent = byEvent
            staleTranslations = c.stale.load(ordering: .relaxed)
            contractViolations = core.contractViolations.count
            contextViolations = core.sync.contextViolations.count
            findings = storm.staleDescriptions
                + core.contractViolations.snapshot.prefix(10).map(\.description)
                + core.sync.contextViolations.snapshot.prefix(10).map(\.description)
        }
    }
}
