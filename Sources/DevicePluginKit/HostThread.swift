import CDevicePluginABI

/// A thread the host made for the plugin (ABI 1.4 `thread_create`): the
/// host schedules it with its own actors (one at a time, from a seed, under
/// `mmulab run --schedule`). Join it exactly once, before the instance is
/// destroyed.
public final class HostThread: @unchecked Sendable {
    // @unchecked: `handle` is cleared by `join`, which is called once, by
    // the plugin's owner of the thread.
    let host: Host
    private var handle: OpaquePointer?
    public let name: String

    init(host: Host, handle: OpaquePointer, name: String) {
        self.host = host
        self.handle = handle
        self.name = name
    }

    /// [blockable] Waits until the thread's body has returned.
    public func join() {
        guard let handle else { preconditionFailure("thread '\(name)' joined twice") }
        self.handle = nil
        host.table.pointee.thread_join(host.context, handle)
    }

    /// The body, handed to the host's thread as its argument.
    final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}

extension Host {
    /// Whether the host offers the thread services (ABI 1.4): threads,
    /// `yield`, the host's clock and thread ids.
    public var offersThreadServices: Bool {
        table.pointee.abi_minor >= 4
            && Int(table.pointee.struct_size) >= MemoryLayout<mmulab_host>.offset(of: \.thread_id)! + MemoryLayout<UnsafeRawPointer>.size
    }

    /// [blockable] Starts `body` on a thread of the host's named `name`.
    /// Throws `MMULAB_ERR_NOT_SUPPORTED` on a host older than ABI 1.4 (a
    /// plugin must not make threads of its own: see the header).
    public func spawnThread(named name: String, _ body: @escaping @Sendable () -> Void) throws(PluginError) -> HostThread {
        guard offersThreadServices else {
            throw PluginError(status: Int32(MMULAB_ERR_NOT_SUPPORTED), "the host offers no threads (ABI 1.4)")
        }
        let argument = Unmanaged.passRetained(HostThread.Body(body)).toOpaque()
        var handle: OpaquePointer? = nil
        var error = mmulab_error()
        let status = name.withCString { label in
            table.pointee.thread_create(context, label, { raw in
                Unmanaged<HostThread.Body>.fromOpaque(raw!).takeRetainedValue().run()
            }, argument, &handle, &error)
        }
        guard status == mmulab_status(MMULAB_OK), let handle else {
            Unmanaged<HostThread.Body>.fromOpaque(argument).release()
            throw PluginError(error)
        }
        return HostThread(host: self, handle: handle, name: name)
    }

    /// [any-thread] Lets another thread run; never sleeps. Every loop that
    /// polls memory for another thread's progress must call it (on a host
    /// older than 1.4 it does nothing).
    public func yield() {
        guard offersThreadServices else { return }
        table.pointee.yield(context)
    }

    /// [any-thread] The host's monotonic clock in nanoseconds (virtual under
    /// `--schedule`); nil on a host older than 1.4.
    public var nowNanoseconds: UInt64? {
        guard offersThreadServices else { return nil }
        return table.pointee.now_ns(context)
    }

    /// [any-thread] The host's number for the calling thread (never 0);
    /// nil on a host older than 1.4.
    public var currentThreadID: UInt64? {
        guard offersThreadServices else { return nil }
        return table.pointee.thread_id(context)
    }
}
