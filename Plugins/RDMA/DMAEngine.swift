import DevicePluginKit

#if canImport(Glibc)
import Glibc
#endif

/// The NIC's DMA engines: threads of their own that carry out transfers,
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
    private var threads: [pthread_t] = []

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

    init(host: Host, engines: Int, latencyNanoseconds: UInt64) {
        precondition(engines > 0 && latencyNanoseconds > 0, "an engine needs a thread and a latency")
        self.host = host
        self.latencyNanoseconds = latencyNanoseconds
        queueLock = host.makeLock("rdma dma queue", spin: true)
        work = HostCompletion(host: host, name: "rdma dma work")
        for index in 0..<engines {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            let status = pthread_create(&thread, nil, { context in
                let engine = Unmanaged<DMAEngine>.fromOpaque(context!).takeRetainedValue()
                engine.run()
                return nil
            }, context)
            precondition(status == 0, "pthread_create for DMA engine \(index) failed: \(status)")
            threads.append(thread)
        }
    }

    /// [blockable] Carries out one transfer on an engine and waits for it.
    func perform(addressSpace: UInt64, pfn: PFN, write: Bool, buffer: UnsafeMutableRawBufferPointer) {
        let transfer = Transfer(host: host, addressSpace: addressSpace, pfn: pfn, write: write, buffer: buffer)
        queueLock.withLock { queue.append(transfer) }
        work.complete()
        transfer.done.wait()
    }

    private func run() {
        while true {
            work.wait()
            let next = queueLock.withLock { () -> Transfer? in
                if queue.isEmpty { return nil }  // a stop token
                return queue.removeFirst()
            }
            guard let transfer = next else {
                if queueLock.withLock({ stopping }) { return }
                continue
            }
            host.sleep(nanoseconds: latencyNanoseconds)
            DMAEngine.copy(host, transfer.addressSpace, transfer.pfn, write: transfer.write, transfer.buffer)
            transfer.done.complete()
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
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
    }
}
