import DevicePluginKit

/// The NIC's DMA engines: threads of the host's (ABI 1.4 `thread_create`,
/// so the host schedules them with everything else) that carry out transfers,
/// each taking `latency` of simulated time before it touches memory. A
/// transfer is in flight from the moment the NIC read its translation until
/// the engine finishes; an invalidation that may sleep waits for the
/// transfers in flight on its range to drain before it reports dirty pages
/// and lets the primary free them (mlx5: the UMR that zaps the MTTs fences
/// the DMA before the notifier returns).
///
/// With a latency of 0 there is no engine: the posting thread does the DMA
/// itself, and "in flight" is the few instructions of the copy.
final class DMAEngine: @unchecked Sendable {
    // @unchecked: `queue` and `stopping` are guarded by `queueLock`;
    // `threads` is written by init and stop only.
    let host: Host
    let latencyNanoseconds: UInt64
    private let queueLock: HostLock
    /// One `complete` per queued transfer (and per engine at stop): a semaphore.
    private let work: HostCompletion
    private var queue: [Transfer] = []
    private var stopping = false
    private var threads: [HostThread] = []

    /// One DMA transfer: what to copy and whom to tell.
    final class Transfer: @unchecked Sendable {
        // @unchecked: handed from the posting thread to one engine and back
        // through `done`, which orders the accesses.
        let addressSpace: UInt64
        let pfn: PFN
        let write: Bool
        let buffer: UnsafeMutableRawBufferPointer
        let done: HostCompletion

        init(host: Host, addressSpace: UInt64, pfn: PFN, write: Bool, buffer: UnsafeMutableRawBufferPointer) {
            self.addressSpace = addressSpace
            self.pfn = pfn
            self.write = write
            self.buffer = buffer
            done = HostCompletion(host: host, name: "rdma dma transfer")
        }
    }

    /// Starts `engines` engine threads; fails on a host without thread services.
    init(host: Host, engines: Int, latencyNanoseconds: UInt64) throws(PluginError) {
        precondition(engines > 0 && latencyNanoseconds > 0, "an engine needs a thread and a latency")
        self.host = host
        self.latencyNanoseconds = latencyNanoseconds
        queueLock = host.makeLock("rdma dma queue", spin: true)
        work = HostCompletion(host: host, name: "rdma dma work")
        do {
            for index in 0..<engines {
                threads.append(try host.spawnThread(named: "dma engine \(index)") { [self] in run() })
            }
        } catch {
            stop()
            throw PluginError(status: error.status, "dma-us needs the host's threads: \(error.message)")
        }
    }

    /// [blockable] Carries out one transfer on an engine and waits for it.
    func perform(addressSpace: UInt64, pfn: PFN, write: Bool, buffer: UnsafeMutableRawBufferPointer) {
        let transfer = Transfer(host: host, addressSpace: addressSpace, pfn: pfn, write: write, buffer: buffer)
        queueLock.withLock { queue.append(transfer) }
        work.complete()
        transfer.done.wait()
    }

    /// Each wake-up takes every transfer queued by then and carries them
    /// out together after one `latency`, as a NIC works on many outstanding
    /// requests at once: each is in flight from its post until its copy,
    /// as before, but the engine no longer sleeps a latency per transfer
    /// (which held the NIC to a few hundred remote operations a second
    /// whatever the number of posting threads). A wake-up that finds the
    /// queue empty (its transfer was taken by an earlier batch, or a stop
    /// token) checks for stop and waits again.
    private func run() {
        var batch: [Transfer] = []
        while true {
            work.wait()
            queueLock.withLock {
                batch.append(contentsOf: queue)
                queue.removeAll(keepingCapacity: true)
            }
            if batch.isEmpty {
                if queueLock.withLock({ stopping }) { return }
                continue
            }
            host.sleep(nanoseconds: latencyNanoseconds)
            for transfer in batch {
                DMAEngine.copy(host, transfer.addressSpace, transfer.pfn, write: transfer.write, transfer.buffer)
                transfer.done.complete()
            }
            batch.removeAll(keepingCapacity: true)
        }
    }

    /// The checked copy itself, wherever it runs.
    static func copy(_ host: Host, _ addressSpace: UInt64, _ pfn: PFN, write: Bool, _ buffer: UnsafeMutableRawBufferPointer) {
        if write {
            host.dmaWrite(addressSpace: addressSpace, pfn, from: UnsafeRawBufferPointer(buffer))
        } else {
            host.dmaRead(addressSpace: addressSpace, pfn, into: buffer)
        }
    }

    /// [blockable] Finishes what is queued and stops the engines.
    func stop() {
        queueLock.withLock { stopping = true }
        for _ in threads { work.complete() }
        for thread in threads { thread.join() }
        threads.removeAll()
    }
}
