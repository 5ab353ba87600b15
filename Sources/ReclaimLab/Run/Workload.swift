import Foundation
import LabSync
import MMUNotifier
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

/// Counts of a run: one shard per workload thread, bumped by that thread
/// alone (no shared cache line on the path of every access: with every
/// actor bumping one set of atomics, each access moved a line between the
/// cores), and a shared set for the pressure actors' rare counts. The
/// totals sum them all.
final class RunCounters: Sendable {
    enum Count: Int, CaseIterable {
        case cpuReads, cpuWrites, deviceReads, deviceWrites, failedAccesses, checkedReads
    }

    /// One workload thread's counts, on cache lines of their own. Single
    /// writer: only its thread bumps them (a load and a store, no locked
    /// read-modify-write); anyone may read them.
    final class Shard: @unchecked Sendable {
        // @unchecked: the slots are atomics, allocated once.
        private static let slots = 16  // two cache lines, so no neighbour shares them
        private let counts: UnsafeMutablePointer<Atomic<Int>>

        init() {
            counts = UnsafeMutableRawPointer.allocate(byteCount: Self.slots * MemoryLayout<Atomic<Int>>.stride, alignment: 64)
                .bindMemory(to: Atomic<Int>.self, capacity: Self.slots)
            for index in 0..<Self.slots { (counts + index).initialize(to: Atomic(0)) }
        }

        deinit {
            counts.deinitialize(count: Self.slots)
            counts.deallocate()
        }

        /// Adds one to `count` (the shard's own thread only).
        @inline(__always)
        func bump(_ count: Count) {
            counts[count.rawValue].store(counts[count.rawValue].load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        }

        subscript(_ count: Count) -> Int { counts[count.rawValue].load(ordering: .relaxed) }
    }

    /// A shard per workload thread, then one per attach-churn actor (which
    /// reads through workload threads of its own), made with the counters
    /// (read-only after).
    private let shards: [Shard]
    private let workloadThreads: Int

    // The pressure actors' counts (several threads: atomic adds).
    let failedAccesses = Atomic<Int>(0)
    let deviceReads = Atomic<Int>(0)
    let checkedReads = Atomic<Int>(0)

    init(workloadThreads: Int, attachChurners: Int) {
        self.workloadThreads = workloadThreads
        shards = (0..<workloadThreads + attachChurners).map { _ in Shard() }
    }

    /// The shard of the `index`-th workload thread.
    func workloadShard(_ index: Int) -> Shard { shards[index] }

    /// The shard of the `index`-th attach-churn actor.
    func attachChurnShard(_ index: Int) -> Shard { shards[workloadThreads + index] }

    /// The run's total of `count`, every shard and the shared counts.
    func total(_ count: Count) -> Int {
        let shared: Int
        switch count {
        case .failedAccesses: shared = failedAccesses.load(ordering: .relaxed)
        case .deviceReads: shared = deviceReads.load(ordering: .relaxed)
        case .checkedReads: shared = checkedReads.load(ordering: .relaxed)
        case .cpuReads, .cpuWrites, .deviceWrites: shared = 0
        }
        return shards.reduce(shared) { $0 + $1[count] }
    }

    var operations: Int { total(.cpuReads) + total(.cpuWrites) + total(.deviceReads) + total(.deviceWrites) }
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
    /// The device it drives, how the run names that instance (`gpu#0`), and
    /// the path its accesses are reported under.
    let device: (instance: PluginInstance, binding: PluginInstance.Binding, label: String)?
    /// The device's aging check on this mapping (it times accesses once the
    /// device has answered a young check).
    let aging: (check: AgingCheck, mapping: Int)?
    /// This thread's counts (bumped by this thread only).
    let counters: RunCounters.Shard
    let heartbeat: Heartbeat
    /// Its device accesses, for the run loop's reading of the primary's checks.
    let history: AccessHistory?
    /// `device access`, `attach-churn read`: how its findings name the way it got there.
    let path: String

    init(
        lab: Lab, spec: WorkloadSpec, mapping: TrackedMapping, space: AddressSpace, writerIndex: Int?, writers: Int,
        device: (instance: PluginInstance, binding: PluginInstance.Binding, label: String)?, counters: RunCounters.Shard, heartbeat: Heartbeat,
        path: String? = nil, history: AccessHistory? = nil
    ) {
        self.lab = lab
        self.spec = spec
        self.mapping = mapping
        self.space = space
        self.writerIndex = writerIndex
        self.writers = writers
        self.device = device
        aging = device.flatMap { lab.aging(of: $0.instance, on: mapping) }
        self.counters = counters
        self.heartbeat = heartbeat
        self.history = device == nil ? nil : history ?? AccessHistory()
        self.path = path ?? (device == nil ? "CPU access" : "device access")
    }

    /// Tells the run who the calling thread is (call on the thread, first).
    func register() {
        lab.actors.registerCurrentThread(ActorIdentity(name: heartbeat.name, instance: device?.label, path: path, history: history))
    }

    func run(seed: UInt64, stop: StopFlag) {
        register()
        var rng = SplitMix64(seed: seed)
        var picker = PagePicker(pages: mapping.pages, pattern: spec.pattern, start: Int(rng.next() % UInt64(mapping.pages)))
        // Pacing: up to 1,000 accesses a second each access is followed by
        // its interval's sleep; above, one sleep per millisecond's worth of
        // accesses (a sleep per access would cost more than the access, and
        // one shorter than the timer slack overshoots it many times over).
        let batch = max(spec.rate / 1_000, 1)
        let pause: Duration? = spec.rate > 0 ? .nanoseconds(Int64(batch) * 1_000_000_000 / Int64(spec.rate)) : nil
        var sincePause = 0
        while !stop.isSet {
            heartbeat.beat()
            var page = picker.pick(&rng)
            let wantsWrite = writerIndex != nil && Double(rng.next() >> 11) / Double(1 << 53) < spec.writes
            if wantsWrite, let own = ownPage(near: page) {
                page = own
                let atomic = device != nil && spec.atomics > 0 && Double(rng.next() >> 11) / Double(1 << 53) < spec.atomics
                write(page, atomic: atomic)
            } else {
                read(page)
            }
            if let pause {
                sincePause += 1
                if sincePause == batch {
                    sincePause = 0
                    lab.machine.sync.sleep(for: pause)
                } else {
                    lab.machine.sync.preemptionPoint()
                }
            } else {
                lab.machine.sync.preemptionPoint()  // a device access may take no host lock at all
            }
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

    /// One access; returns when it began (lab clock; 0 for a CPU access,
    /// which is not timed: reading the clock would cost a CPU access a
    /// fifth of its time), or nil if it failed cleanly.
    private func access(_ page: Int, write: Bool, atomic: Bool = false, _ bytes: inout PageTag) -> UInt64? {
        let address = mapping.address + UInt64(page) * 4096
        var began: UInt64 = 0
        do {
            if let device {
                began = lab.clock.nanoseconds
                let pumpAfter = history?.record(address, write: write, at: began) ?? false
                let target = device.binding.deviceAddress + UInt64(page) * 4096
                let agingBegan = aging.flatMap { $0.check.isActive ? $0.check.now : nil }
                try bytes.withBytes {
                    try device.instance.access(device.binding, deviceAddress: target, write: write, atomic: atomic, buffer: $0)
                }
                if let hot = mapping.hot { hot.deviceUsed(page, at: lab.clock.nanoseconds) }
                if let aging, let agingBegan { aging.check.deviceUsed(mapping: aging.mapping, page: page, start: agingBegan) }
                counters.bump(write ? .deviceWrites : .deviceReads)
                if pumpAfter { lab.attribution.collectIfFilling(lab) }
            } else if write {
                try bytes.withBytes { try space.write(address, from: UnsafeRawBufferPointer($0)) }
                counters.bump(.cpuWrites)
            } else {
                // The payload is at least 16 bytes (ScenarioReader), so the whole tag is read.
                _ = try bytes.withBytes { try space.read(address, into: $0) }
                counters.bump(.cpuReads)
            }
            heartbeat.succeeded()
            return began
        } catch {
            // munmap churn, mprotect flips, an OOM kill: the access fails
            // cleanly, which is allowed; what it returns is never checked.
            counters.bump(.failedAccesses)
            return nil
        }
    }

    private func write(_ page: Int, atomic: Bool = false) {
        let epoch = mapping.epoch.load(ordering: .acquiring)
        let (word, last) = mapping.version(of: page, in: epoch)
        let version = last + 1
        var bytes = mapping.pageTag(page: page, version: version)
        guard access(page, write: true, atomic: atomic, &bytes) != nil else { return }
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
        var bytes = PageTag()
        guard let began = access(page, write: false, &bytes) else { return }
        guard epoch % 2 == 0, mapping.epoch.load(ordering: .acquiring) == epoch else { return }
        counters.bump(.checkedReads)
        check(bytes, page: page, before: before, began: began, epoch: epoch)
    }

    private func check(_ tag: PageTag, page: Int, before: UInt32, began: UInt64, epoch: UInt64) {
        // The common case first, with no classification: its own tag, new enough.
        if page >= mapping.duplicates, tag.magic == TrackedMapping.magic, tag.space == UInt32(mapping.spaceIndex),
            tag.mapping == UInt32(mapping.mappingIndex), tag.page == UInt32(page), tag.version >= before
        {
            return
        }
        let content = PageContent(tag.bytes, mappings: lab.mappings)
        if page < mapping.duplicates {
            if content != .duplicate { report(.useAfterFree, page, "a duplicate page holds", content, began) }
            return
        }
        switch content {
        case .zeros:
            // A lazily freed page may have been discarded: zeroes are its
            // legal content until a write completes after the MADV_FREE.
            if before > 0, !mapping.mayReadZerosAfterLazyFree(page, knowing: before, in: epoch) {
                report(.lostWrite, page, "zeros, but version \(before) was written before the read", nil, began)
            }
        case .tag(let tag):
            if tag.space != UInt32(mapping.spaceIndex) {
                report(.crossSpaceLeak, page, "another address space's data:", content, began)
            } else if tag.mapping != UInt32(mapping.mappingIndex) || tag.page != UInt32(page) {
                report(.useAfterFree, page, "another page's data:", content, began)
            } else if tag.version < before {
                report(.lostWrite, page, "version \(tag.version), but version \(before) was written before the read", nil, began)
            }
        case .shortLived:
            report(.crossSpaceLeak, page, "another address space's data:", content, began)
        case .duplicate, .unrecognised:
            report(.useAfterFree, page, "no data of this page:", content, began)
        }
    }

    /// Notes a symptom seen on a read of `page` (the description is built
    /// only for the first few of its kind, off the path of the reads that pass).
    ///
    /// A CPU read goes through the primary's own page table, so what it
    /// finds wrong is in the page's frame: the bug is keyed to the writer
    /// whose data went astray, when the data says who that is. For another
    /// page's data, that page's writer (its write landed in a frame that is
    /// not its page's: through a stale translation); for a lost write, this
    /// page's writer (its write did not reach this page's frame, or was
    /// dropped). Every page has one writer, so the many reads that notice
    /// one writer's lost data make one bug. A device read may itself have
    /// gone astray (through a stale translation: then the primary flagged it
    /// and it is attached to that), so it is keyed to the reader.
    private func report(_ invariant: Finding.Invariant, _ page: Int, _ what: String, _ content: PageContent?, _ timed: UInt64) {
        let began = timed != 0 ? timed : lab.clock.nanoseconds
        let address = mapping.address + UInt64(page) * 4096
        var found: PageID? = nil
        var culprit: (writer: ActorIdentity, space: AddressSpaceID, address: UInt64)? = nil
        if case .tag(let tag) = content {
            let other = lab.mappings[Int(tag.space)][Int(tag.mapping)]
            let otherAddress = other.address + UInt64(tag.page) * 4096
            found = PageID(other.space.id, otherAddress)
            if device == nil { culprit = other.writer(of: Int(tag.page)).map { ($0, other.space.id, otherAddress) } }
        } else if invariant == .lostWrite, device == nil {
            culprit = mapping.writer(of: page).map { ($0, mapping.space.id, address) }
        }
        let key: BugKey
        if let culprit {
            let event = lab.lastInvalidation(culprit.space, culprit.address, atOrBefore: began)
            let path = culprit.writer.path + (invariant == .lostWrite ? ", lost" : ", found in another page")
            key = BugKey(invariant: invariant, instance: culprit.writer.instance, path: path, event: event.map { "\($0.event)" })
        } else {
            let event = lab.lastInvalidation(mapping.space.id, address, atOrBefore: began)
            let reading = device == nil ? "CPU read" : path == "device access" ? "device read" : path
            key = BugKey(invariant: invariant, instance: device?.label, path: reading, event: event.map { "\($0.event)" })
        }
        let symptom = Symptom(
            key: key, page: PageID(mapping.space.id, address), found: found, nanoseconds: began, reader: device == nil ? nil : ThreadIdentity.current.tid)
        lab.noteSymptom(symptom) {
            let reader = "\(heartbeat.name) (" + (device.map { "device \($0.label)" } ?? "CPU") + ")"
            let data = content.map { " " + $0.describe(mappings: lab.mappings) } ?? ""
            let writer = culprit.map { ", written by \($0.writer.name)" } ?? ""
            let detail = "\(reader) read \(mapping.spaceName)/\(mapping.mappingName) page \(page) at 0x\(String(address, radix: 16)): \(what)\(data)\(writer)"
            return Finding(
                invariant: invariant, detail: detail, place: mapping.place(of: page), trail: lab.trail.trail(space: mapping.space.id, address: address),
                seconds: lab.clock.seconds(began), actor: heartbeat.name)
        }
    }
}
