import Foundation
import LabSync
import PluginHost
import Synchronization
import VirtualMemory

/// Chooses pages the way a workload says: uniform, sequential, or Zipf
/// (inverse CDF, precomputed once per workload).
struct PagePicker {
    private let pages: Int
    private let pattern: WorkloadSpec.Pattern
    private var next = 0
    private let cdf: [Double]

    init(pages: Int, pattern: WorkloadSpec.Pattern, start: Int) {
        self.pages = pages
        self.pattern = pattern
        next = start % max(pages, 1)
        if case .zipfian(let s) = pattern {
            var sums = [Double](repeating: 0, count: pages)
            var total = 0.0
            for rank in 0..<pages {
                total += 1 / pow(Double(rank + 1), s)
                sums[rank] = total
            }
            cdf = sums.map { $0 / total }
        } else {
            cdf = []
        }
    }

    mutating func pick(_ rng: inout SplitMix64) -> Int {
        switch pattern {
        case .uniform: return Int(rng.next() % UInt64(pages))
        case .sequential:
            defer { next = (next + 1) % pages }
            return next
        case .zipfian:
            let u = Double(rng.next() >> 11) / Double(1 << 53)
            var low = 0
            var high = pages - 1
            while low < high {
                let middle = (low + high) / 2
                if cdf[middle] < u { low = middle + 1 } else { high = middle }
            }
            return low
        }
    }
}

/// Counts shared by every actor of a run.
final class RunCounters: Sendable {
    let cpuReads = Atomic<Int>(0)
    let cpuWrites = Atomic<Int>(0)
    let deviceReads = Atomic<Int>(0)
    let deviceWrites = Atomic<Int>(0)
    let failedAccesses = Atomic<Int>(0)
    let checkedReads = Atomic<Int>(0)

    var operations: Int {
        cpuReads.load(ordering: .relaxed) + cpuWrites.load(ordering: .relaxed) + deviceReads.load(ordering: .relaxed)
            + deviceWrites.load(ordering: .relaxed)
    }
}

/// One thread of a workload: picks pages, reads and writes them through
/// the CPU or its device, and checks every read against the oracle.
struct WorkloadThread {
    let lab: Lab
    let spec: WorkloadSpec
    let mapping: TrackedMapping
    let space: AddressSpace
    /// This thread's place among the mapping's writer threads (it writes
    /// only the pages that are its own), if it writes.
    let writerIndex: Int?
    let writers: Int
    let device: (instance: PluginInstance, binding: PluginInstance.Binding)?
    let counters: RunCounters
    let findings: FindingLog
    let heartbeat: Heartbeat

    func run(seed: UInt64, stop: StopFlag) {
        var rng = SplitMix64(seed: seed)
        var picker = PagePicker(pages: mapping.pages, pattern: spec.pattern, start: Int(rng.next() % UInt64(mapping.pages)))
        let interval: Duration? = spec.rate > 0 ? .nanoseconds(1_000_000_000 / spec.rate) : nil
        while !stop.isSet {
            heartbeat.beat()
            var page = picker.pick(&rng)
            let wantsWrite = writerIndex != nil && Double(rng.next() >> 11) / Double(1 << 53) < spec.writes
            if wantsWrite, let own = ownPage(near: page) {
                page = own
                write(page)
            } else {
                read(page)
            }
            if let interval { lab.machine.sync.sleep(for: interval) }
        }
        heartbeat.finish()
    }

    /// The page of this writer nearest `page` (outside the duplicates).
    private func ownPage(near page: Int) -> Int? {
        guard let k = writerIndex else { return nil }
        let first = mapping.duplicates
        guard mapping.pages - first > k else { return nil }
        let offset = max(page - first, 0)
        var own = first + offset - offset % writers + k
        if own >= mapping.pages { own -= writers }
        return own >= first ? own : nil
    }

    private func access(_ page: Int, write: Bool, _ bytes: inout [UInt8]) -> Bool {
        let address = mapping.address + UInt64(page) * 4096
        do {
            if let device {
                let target = device.binding.deviceAddress + UInt64(page) * 4096
                try bytes.withUnsafeMutableBytes { try device.instance.access(device.binding, deviceAddress: target, write: write, buffer: $0) }
                mapping.hot?.deviceUsed(page, at: lab.trail.clock.nanoseconds)
                if write { counters.deviceWrites.add(1, ordering: .relaxed) } else { counters.deviceReads.add(1, ordering: .relaxed) }
            } else if write {
                try space.write(address, bytes)
                counters.cpuWrites.add(1, ordering: .relaxed)
            } else {
                bytes = try space.read(address)
                counters.cpuReads.add(1, ordering: .relaxed)
            }
            return true
        } catch {
            // munmap churn, mprotect flips, an OOM kill: the access fails
            // cleanly, which is allowed; what it returns is never checked.
            counters.failedAccesses.add(1, ordering: .relaxed)
            return false
        }
    }

    private func write(_ page: Int) {
        let epoch = mapping.epoch.load(ordering: .acquiring)
        let (word, last) = mapping.version(of: page, in: epoch)
        let version = last + 1
        var bytes = mapping.tag(page: page, version: version)
        guard access(page, write: true, &bytes) else { return }
        // Published only if the memory was not replaced meanwhile (the
        // exchange fails if churn reset the page after `word` was read).
        if epoch % 2 == 0 && mapping.epoch.load(ordering: .acquiring) == epoch {
            mapping.publish(version, of: page, in: epoch, replacing: word)
        }
    }

    /// Reads `page` once and checks what came back (also used by actors
    /// that read through a binding of their own).
    func read(_ page: Int) {
        let epoch = mapping.epoch.load(ordering: .acquiring)
        let before = mapping.version(of: page, in: epoch).version
        var bytes = [UInt8](repeating: 0, count: 16)
        guard access(page, write: false, &bytes) else { return }
        guard epoch % 2 == 0, mapping.epoch.load(ordering: .acquiring) == epoch else { return }
        counters.checkedReads.add(1, ordering: .relaxed)
        check(bytes, page: page, before: before)
    }

    private func check(_ bytes: [UInt8], page: Int, before: UInt32) {
        if page < mapping.duplicates {
            if bytes != mapping.duplicateContent { report(.useAfterFree, page, "a duplicate page holds \(bytes)") }
            return
        }
        if bytes.allSatisfy({ $0 == 0 }) {
            if before > 0 { report(.lostWrite, page, "zeros, but version \(before) was written before the read") }
            return
        }
        guard let tag = TrackedMapping.decode(bytes) else {
            report(.useAfterFree, page, "\(bytes) is no page's data")
            return
        }
        if tag.space != UInt32(mapping.spaceIndex) {
            report(.crossSpaceLeak, page, "it holds page \(tag.page) of address space #\(tag.space)'s data")
        } else if tag.mapping != UInt32(mapping.mappingIndex) || tag.page != UInt32(page) {
            report(.useAfterFree, page, "it holds mapping #\(tag.mapping) page \(tag.page)'s data")
        } else if tag.version < before {
            report(.lostWrite, page, "version \(tag.version), but version \(before) was written before the read")
        }
    }

    /// Notes a finding about a read of `page` (the description is built
    /// only here, off the path of the reads that pass).
    private func report(_ invariant: Finding.Invariant, _ page: Int, _ what: String) {
        let address = mapping.address + UInt64(page) * 4096
        findings.note(
            invariant,
            "\(spec.name) (\(device == nil ? "CPU" : "device")) read \(mapping.spaceName)/\(mapping.mappingName) page \(page) at 0x"
                + String(address, radix: 16) + ": " + what,
            place: mapping.place(of: page), trail: lab.trail.trail(space: mapping.space.id, address: address))
    }
}

/// Findings of a run, from any thread (bounded: a storm of one bug need
/// not be kept in full).
final class FindingLog: @unchecked Sendable {
    // @unchecked: `counts` is an array of atomics, allocated once.
    static let kept = 1_000
    private let log = ReportLog<Finding>(capacity: kept)
    let total = Atomic<Int>(0)
    /// By `Finding.Invariant.allCases` index: every finding, kept or not.
    private let counts: UnsafeMutablePointer<Atomic<Int>>

    /// The invariants whose checks the scenario has on: only their
    /// findings are kept (and counted in `total`).
    let enabled: Set<Finding.Invariant>

    init(enabled: Set<Finding.Invariant> = Set(Finding.Invariant.allCases)) {
        self.enabled = enabled
        counts = .allocate(capacity: Finding.Invariant.allCases.count)
        for index in Finding.Invariant.allCases.indices { (counts + index).initialize(to: Atomic(0)) }
    }

    deinit {
        counts.deinitialize(count: Finding.Invariant.allCases.count)
        counts.deallocate()
    }

    /// Notes a finding; its place and trail are worked out only while the
    /// log still keeps findings (a storm of one bug costs little).
    func note(
        _ invariant: Finding.Invariant, _ detail: @autoclosure () -> String, place: @autoclosure () -> Finding.Place? = nil,
        trail: @autoclosure () -> [String] = []
    ) {
        counts[Finding.Invariant.allCases.firstIndex(of: invariant)!].add(1, ordering: .relaxed)
        guard enabled.contains(invariant) else { return }
        let before = total.add(1, ordering: .relaxed).oldValue
        guard before < Self.kept else { return }
        log.record(Finding(invariant: invariant, detail: detail(), place: place(), trail: trail()))
    }

    /// Counts `extra` findings of `invariant` that were recorded elsewhere
    /// and not kept (a full log of the primary's).
    func countUnkept(_ invariant: Finding.Invariant, _ extra: Int) {
        guard extra > 0 else { return }
        counts[Finding.Invariant.allCases.firstIndex(of: invariant)!].add(extra, ordering: .relaxed)
        if enabled.contains(invariant) { total.add(extra, ordering: .relaxed) }
    }

    /// How many findings of these invariants were noted (kept or not).
    func count(of invariants: Set<Finding.Invariant>) -> Int {
        Finding.Invariant.allCases.enumerated().filter { invariants.contains($0.element) }
            .reduce(0) { $0 + counts[$1.offset].load(ordering: .relaxed) }
    }

    var all: [Finding] { log.snapshot }
}

/// An actor's sign of life for the watchdog.
final class Heartbeat: Sendable {
    let name: String
    let beats = Atomic<Int>(0)
    let finished = Atomic<Bool>(false)
    init(name: String) { self.name = name }
    func beat() { beats.add(1, ordering: .relaxed) }
    func finish() { finished.store(true, ordering: .releasing) }
}

/// Tells every actor to finish.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// Finds actors that stopped making progress: a heartbeat that has not
/// moved for `limit` (a callback that never returns, a retry loop that
/// never ends). Each stuck actor is reported once.
struct Watchdog {
    private let heartbeats: [Heartbeat]
    private let limit: Duration
    private var lastBeats: [Int]
    private var lastChange: [ContinuousClock.Instant]
    /// Indices of the actors reported stuck.
    private(set) var stuck = Set<Int>()

    init(_ heartbeats: [Heartbeat], limit: Duration, start: ContinuousClock.Instant) {
        self.heartbeats = heartbeats
        self.limit = limit
        lastBeats = heartbeats.map { $0.beats.load(ordering: .relaxed) }
        lastChange = [ContinuousClock.Instant](repeating: start, count: heartbeats.count)
    }

    /// The names of the actors newly found stuck at `now`.
    mutating func check(at now: ContinuousClock.Instant) -> [String] {
        var found: [String] = []
        for (index, heartbeat) in heartbeats.enumerated() where !heartbeat.finished.load(ordering: .acquiring) {
            let beats = heartbeat.beats.load(ordering: .relaxed)
            if beats != lastBeats[index] {
                lastBeats[index] = beats
                lastChange[index] = now
            } else if now - lastChange[index] > limit, stuck.insert(index).inserted {
                found.append(heartbeat.name)
            }
        }
        return found
    }

    /// Every actor either finished or is stuck.
    var allFinishedOrStuck: Bool {
        heartbeats.indices.allSatisfy { stuck.contains($0) || heartbeats[$0].finished.load(ordering: .acquiring) }
    }

    /// Every actor is stuck: the run cannot go on.
    var nothingMoves: Bool { !heartbeats.isEmpty && stuck.count == heartbeats.count }
}
