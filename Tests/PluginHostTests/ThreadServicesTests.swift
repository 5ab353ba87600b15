import LabSync
import MMUNotifier
import PluginHost
import TestSupport
import Testing
import VirtualMemory

/// ABI 1.4: a plugin's threads, yields, clock reads and thread ids go
/// through the host, so a controlled scheduler schedules them too.
@Suite("Thread services through the ABI")
struct ThreadServicesTests {
    static func statistics(_ instance: PluginInstance) -> [String: UInt64] {
        Dictionary(uniqueKeysWithValues: instance.statistics().map { ($0.name, $0.value) })
    }

    @Test func aPluginThreadRunsAndIsJoinedOnTheHostsClock() throws {
        let plugin = try load(fixture("servicesprobe"))
        let machine = makeMachine(frames: 256)
        let instance = try PluginInstance.create(plugin, machine: machine).get()
        let stats = Self.statistics(instance)
        #expect(stats["worker runs"] == 1, "\(stats)")
        #expect(stats["worker slept ns", default: 0] >= 1_000_000, "the worker's 1 ms sleep passed on the host's clock: \(stats)")
        #expect(stats["worker thread id", default: 0] != 0 && stats["creator thread id", default: 0] != 0)
        #expect(stats["worker thread id"] != stats["creator thread id"], "two threads, two ids")
        #expect(instance.log.snapshot.allSatisfy { $0.level != .misbehaving })
        instance.destroy()
    }

    @Test func badThreadInputIsRefusedOrReportedNotACrash() throws {
        let plugin = try load(fixture("servicesprobe"))
        let machine = makeMachine(frames: 256)
        let instance = try PluginInstance.create(plugin, machine: machine, options: "bad-threads").get()
        #expect(Self.statistics(instance)["null entry refused"] == 1, "thread_create without an entry fails with MMULAB_ERR_INVALID")
        let reports = instance.log.snapshot.filter { $0.level == .misbehaving }.map(\.message)
        #expect(reports.contains { $0.contains("NULL thread") }, "\(reports)")
        #expect(reports.contains { $0.contains("already joined") }, "\(reports)")
        instance.destroy()
    }

    /// Under a controlled scheduler the plugin's thread is one of the
    /// scheduler's: the same seed gives the same schedule, the same thread
    /// ids and the same virtual time; nothing escapes.
    @Test func underAControlledSchedulerThePluginsThreadIsScheduled() throws {
        let plugin = try load(fixture("servicesprobe"))
        func once(seed: UInt64) -> ([String: UInt64], ScheduleStatistics, [String]) {
            let scheduler = ControlledScheduler(strategy: .pct(depth: 3), seed: seed)
            let domain = SyncDomain(scheduler: scheduler)
            let outcome = scheduler.run { () -> ([String: UInt64], [String]) in
                let machine = Machine(.init(memory: .init(frames: 256, nodes: 2, payloadSize: 16), swapSlots: 1024), notifierCore: NotifierCore(sync: domain))
                guard let instance = try? PluginInstance.create(plugin, machine: machine).get() else { return ([:], ["create failed"]) }
                defer { instance.destroy() }
                return (Self.statistics(instance), instance.scheduleEscapes)
            }
            guard case .finished(let (stats, escapes), let left) = outcome else {
                Issue.record("seed \(seed): \(outcome)")
                return ([:], scheduler.statistics, [])
            }
            #expect(left.isEmpty)
            return (stats, scheduler.statistics, escapes)
        }
        let first = once(seed: testSeed)
        let again = once(seed: testSeed)
        #expect(first.0["worker runs"] == 1, "\(first.0)")
        #expect(first.0["worker slept ns", default: 0] >= 1_000_000 && first.0["worker slept ns", default: 0] < 2_000_000, "virtual: \(first.0)")
        #expect(first.0 == again.0, "seed \(testSeed): the same counters, ids and virtual times")
        #expect(first.1 == again.1, "seed \(testSeed): the same schedule")
        #expect(first.1.foreignThreads.isEmpty && first.2.isEmpty, "nothing escaped: \(first.1.foreignThreads) \(first.2)")
        #expect(first.1.threads == 2, "the root and the plugin's worker")
    }

    /// A call into the host from a thread the host did not make is reported
    /// in deterministic mode, naming the plugin and the thread.
    @Test func aCallFromAForeignThreadIsReportedNamingThePlugin() throws {
        let plugin = try load(fixture("servicesprobe"))
        let scheduler = ControlledScheduler(strategy: .random(switchProbability: 0.5), seed: testSeed)
        let domain = SyncDomain(scheduler: scheduler)
        let outcome = scheduler.run { () -> [String] in
            let machine = Machine(.init(memory: .init(frames: 256, nodes: 2, payloadSize: 16), swapSlots: 1024), notifierCore: NotifierCore(sync: domain))
            let space = machine.makeAddressSpace()
            guard let base = try? space.map(length: 4 * 4096, kind: .anonymousPrivate),
                let instance = try? PluginInstance.create(plugin, machine: machine).get(),
                let binding = try? instance.attach(addressSpace: space.id, start: base, length: 4 * 4096, pinned: true)
            else { return ["setup failed"] }
            // A thread of its own, as a plugin's pthread_create would make.
            let stray = FreeRunningScheduler().spawn(name: "stray dma") {
                var bytes: [UInt8] = [1, 2, 3]
                try? bytes.withUnsafeMutableBytes { try instance.access(binding, deviceAddress: base, write: true, buffer: $0) }
            }
            stray.join()
            instance.detach(binding)
            instance.destroy()
            return instance.scheduleEscapes
        }
        guard case .finished(let escapes, _) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(escapes.count == 1, "reported once: \(escapes)")
        #expect(escapes.first?.contains("services-probe") == true && escapes.first?.contains("stray dma") == true, "\(escapes)")
        #expect(escapes.first?.contains("dma_write") == true, "names the service: \(escapes)")
        #expect(scheduler.statistics.foreignThreads.contains { $0.contains("stray dma") })
    }
}
