import CDevicePluginABI
import CPluginOops
import LabSync
import MMUNotifier

/// Notifier registration and the interval sequence, and shrinkers: each
/// handle checked (NULL, ended or removed already), `interval_set_seq`
/// checked against the callback it must come from, and each registration
/// recorded in the instance's ledger with the binding whose call made it.
enum NotifierServices {
    /// Puts each service below into the host table. The closures only forward: Swift forms a
    /// C function pointer from a literal closure or a global function, not from a static method.
    static func install(into t: inout mmulab_host) {
        t.subscribe = { NotifierServices.subscribe($0, $1, $2, $3, $4, $5) }
        t.unsubscribe = { NotifierServices.unsubscribe($0, $1) }

        t.interval_insert = { NotifierServices.intervalInsert($0, $1, $2, $3, $4, $5, $6, $7) }
        t.interval_remove = { NotifierServices.intervalRemove($0, $1) }
        t.interval_read_begin = { NotifierServices.intervalReadBegin($0) }
        t.interval_read_retry = { NotifierServices.intervalReadRetry($0, $1) }
        t.interval_set_seq = { NotifierServices.intervalSetSeq($0, $1) }

        t.shrinker_register = { NotifierServices.shrinkerRegister($0, $1, $2, $3, $4) }
        t.shrinker_unregister = { NotifierServices.shrinkerUnregister($0, $1) }
    }

    /// [blockable] `subscribe`: a whole-space subscription, recorded in the
    /// ledger with the binding whose call made it. The ops table must have
    /// start and end, `out` must be given, the address space must exist.
    static func subscribe(
        _ ctx: UnsafeMutableRawPointer?, _ addressSpace: UInt64, _ ops: UnsafePointer<mmulab_subscriber_ops>?,
        _ data: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status {
        guard let host = HostContext.from(ctx, "subscribe") else { return mmulab_status(MMULAB_ERR_INVALID) }
        CallFrames.enterService(host, "subscribe")
        defer { CallFrames.leave() }
        guard let ops else { return host.invalid(error, "subscribe", "the ops table is NULL") }
        guard ops.pointee.invalidate_range_start != nil, ops.pointee.invalidate_range_end != nil else {
            return host.invalid(error, "subscribe", "the ops table lacks invalidate_range_start/end")
        }
        guard let out else { return host.invalid(error, "subscribe", "out is NULL: the subscription could never be ended") }
        let (found, status) = host.space(addressSpace, for: "subscribe", error)
        guard let space = found else { return status }
        let subscriber = CSubscriber(ops: copyTable(ops, sizeField: \.struct_size, empty: mmulab_subscriber_ops()), data: data, context: host)
        do {
            try space.notifiers.register(subscriber)
        } catch let failure {
            return fail(error, MMULAB_ERR_KILLED, "subscribe: \(failure)")
        }
        let record = SubscriptionRecord(subscriber: subscriber, notifiers: space.notifiers, binding: CallFrames.currentBinding(of: host).binding)
        host.ledger.withLock { $0.subscriptions[ObjectIdentifier(record)] = record }
        out.pointee = OpaquePointer(Unmanaged.passRetained(record).toOpaque())
        return mmulab_status(MMULAB_OK)
    }

    /// [blockable] `unsubscribe`: only a subscription of this instance, once.
    static func unsubscribe(_ ctx: UnsafeMutableRawPointer?, _ handle: OpaquePointer?) {
        guard let host = HostContext.from(ctx, "unsubscribe") else { return }
        CallFrames.enterService(host, "unsubscribe")
        defer { CallFrames.leave() }
        guard let handle else { return host.report("unsubscribe", "the subscription is NULL") }
        let record = Unmanaged<SubscriptionRecord>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
        guard record.subscriber.context === host else {
            return host.report("unsubscribe", "\(record.what) belongs to another instance")
        }
        guard !record.ended.exchange(true, ordering: .acquiringAndReleasing) else {
            return host.report("unsubscribe", "\(record.what) was ended already")
        }
        host.end(record)
        host.quarantine.keep(record)
        Unmanaged<SubscriptionRecord>.fromOpaque(UnsafeRawPointer(handle)).release()
    }

    /// [blockable] `interval_insert`: an interval subscription over a page-aligned,
    /// nonempty range that does not wrap, recorded in the ledger with its binding.
    static func intervalInsert(
        _ ctx: UnsafeMutableRawPointer?, _ addressSpace: UInt64, _ start: UInt64, _ length: UInt64,
        _ ops: UnsafePointer<mmulab_interval_ops>?, _ data: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
        _ error: UnsafeMutablePointer<mmulab_error>?
    ) -> mmulab_status {
        guard let host = HostContext.from(ctx, "interval_insert") else { return mmulab_status(MMULAB_ERR_INVALID) }
        CallFrames.enterService(host, "interval_insert")
        defer { CallFrames.leave() }
        guard let ops, ops.pointee.invalidate != nil else {
            return host.invalid(error, "interval_insert", "the ops table is NULL or lacks invalidate")
        }
        let (end, overflow) = start.addingReportingOverflow(length)
        guard length > 0, start % 4096 == 0, length % 4096 == 0, !overflow else {
            return host.invalid(error, "interval_insert", "[0x\(String(start, radix: 16)), +\(length)) must be page aligned, nonzero and not wrap")
        }
        guard let out else { return host.invalid(error, "interval_insert", "out is NULL: the interval could never be removed") }
        let (found, status) = host.space(addressSpace, for: "interval_insert", error)
        guard let space = found else { return status }
        let invalidator = CInterval(ops: copyTable(ops, sizeField: \.struct_size, empty: mmulab_interval_ops()), data: data, context: host)
        let record = IntervalRecord(
            invalidator: invalidator, space: space.id, start: start, end: end, binding: host.owner(space: addressSpace, start: start, end: end))
        do {
            let interval = try space.notifiers.insertInterval(start: start, end: end, ops: invalidator)
            host.ledger.withLock { ledger in
                record.keep(interval)
                ledger.intervals[ObjectIdentifier(record)] = record
            }
        } catch let failure {
            return fail(error, MMULAB_ERR_KILLED, "interval_insert: \(failure)")
        }
        out.pointee = OpaquePointer(Unmanaged.passRetained(record).toOpaque())
        return mmulab_status(MMULAB_OK)
    }

    /// [blockable] `interval_remove`: only an interval of this instance, once; no
    /// callback for it runs after this returns.
    static func intervalRemove(_ ctx: UnsafeMutableRawPointer?, _ handle: OpaquePointer?) {
        guard let host = HostContext.from(ctx, "interval_remove") else { return }
        CallFrames.enterService(host, "interval_remove")
        defer { CallFrames.leave() }
        guard let record = IntervalRecord.checked(handle, "interval_remove", allowRemoved: true) else { return }
        guard record.invalidator.context === host else {
            return host.report("interval_remove", "\(record.what) belongs to another instance")
        }
        guard !record.removed.exchange(true, ordering: .acquiringAndReleasing) else {
            return host.report("interval_remove", "\(record.what) was removed already")
        }
        host.remove(record)
        host.quarantine.keep(record)
        Unmanaged<IntervalRecord>.fromOpaque(UnsafeRawPointer(handle!)).release()
    }

    /// [blockable] `interval_read_begin`: sleeps while an invalidation of the
    /// interval is in progress.
    static func intervalReadBegin(_ handle: OpaquePointer?) -> UInt64 {
        guard let record = IntervalRecord.checked(handle, "interval_read_begin") else { return 0 }
        return record.interval.readBegin()
    }

    /// [any-thread] `interval_read_retry`: call under the lock the invalidate
    /// callback takes.
    static func intervalReadRetry(_ handle: OpaquePointer?, _ seq: UInt64) -> Bool {
        // A removed interval answers "retry": nothing may be installed through it.
        guard let record = IntervalRecord.checked(handle, "interval_read_retry") else { return true }
        return record.interval.readRetry(seq)
    }

    /// [any-thread] `interval_set_seq`: only from the interval's own invalidate
    /// callback, with the sequence it was given (Linux: mmu_interval_set_seq).
    static func intervalSetSeq(_ handle: OpaquePointer?, _ seq: UInt64) {
        guard let record = IntervalRecord.checked(handle, "interval_set_seq", allowRemoved: true) else { return }
        // Only from this interval's own invalidate callback, with the
        // sequence that callback was given (Linux: mmu_interval_set_seq).
        guard let frame = CallFrames.innermostPluginCall, frame.pointee.object == UnsafeRawPointer(record.opaque) else {
            return record.invalidator.context.report(
                "interval_set_seq", "called outside the invalidate callback of \(record.what) (only from it, under the lock the fault path holds)")
        }
        guard seq == frame.pointee.sequence else {
            return record.invalidator.context.report(
                "interval_set_seq", "given \(seq), not the current_seq \(frame.pointee.sequence) its invalidate callback was given")
        }
        record.interval.setSeq(seq)
    }

    /// [blockable] `shrinker_register`: the ops table must have count and scan,
    /// `out` must be given; recorded in the ledger with its binding.
    static func shrinkerRegister(
        _ ctx: UnsafeMutableRawPointer?, _ name: UnsafePointer<CChar>?, _ ops: UnsafePointer<mmulab_shrinker_ops>?,
        _ data: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?
    ) -> mmulab_status {
        guard let host = HostContext.from(ctx, "shrinker_register") else { return mmulab_status(MMULAB_ERR_INVALID) }
        CallFrames.enterService(host, "shrinker_register")
        defer { CallFrames.leave() }
        guard let ops, ops.pointee.count != nil, ops.pointee.scan != nil else {
            return host.invalid(nil, "shrinker_register", "the ops table is NULL or lacks count/scan")
        }
        guard let out else { return host.invalid(nil, "shrinker_register", "out is NULL: the shrinker could never be unregistered") }
        let label = name.map { String(cString: $0) } ?? host.pluginName
        let shrinker = CShrinker(ops: copyTable(ops, sizeField: \.struct_size, empty: mmulab_shrinker_ops()), data: data, name: label, context: host)
        let record = ShrinkerRecord(shrinker: shrinker, binding: CallFrames.currentBinding(of: host).binding)
        host.ledger.withLock { $0.shrinkers[ObjectIdentifier(record)] = record }
        host.machine.shrinkers.register(shrinker)
        out.pointee = OpaquePointer(Unmanaged.passRetained(record).toOpaque())
        return mmulab_status(MMULAB_OK)
    }

    /// [blockable] `shrinker_unregister`: only a shrinker of this instance, once.
    static func shrinkerUnregister(_ ctx: UnsafeMutableRawPointer?, _ handle: OpaquePointer?) {
        guard let host = HostContext.from(ctx, "shrinker_unregister") else { return }
        CallFrames.enterService(host, "shrinker_unregister")
        defer { CallFrames.leave() }
        guard let handle else { return host.report("shrinker_unregister", "the shrinker is NULL") }
        let record = Unmanaged<ShrinkerRecord>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
        guard record.shrinker.context === host else { return host.report("shrinker_unregister", "\(record.what) belongs to another instance") }
        guard !record.unregistered.exchange(true, ordering: .acquiringAndReleasing) else {
            return host.report("shrinker_unregister", "\(record.what) was unregistered already")
        }
        host.unregister(record)
        host.quarantine.keep(record)
        Unmanaged<ShrinkerRecord>.fromOpaque(UnsafeRawPointer(handle)).release()
    }
}

extension HostContext {
    /// Ends a subscription (the plugin's `unsubscribe`, or the host's after a leak).
    func end(_ record: SubscriptionRecord) {
        try? record.notifiers.unregister(record.subscriber)  // not registered: the space has released it
        ledger.withLock { _ = $0.subscriptions.removeValue(forKey: ObjectIdentifier(record)) }
    }

    /// Removes an interval (the plugin's `interval_remove`, or the host's after a leak).
    func remove(_ record: IntervalRecord) {
        try? record.interval.owner.removeInterval(record.interval)
        ledger.withLock { _ = $0.intervals.removeValue(forKey: ObjectIdentifier(record)) }
    }

    /// Unregisters a shrinker (the plugin's, or the host's after a leak).
    func unregister(_ record: ShrinkerRecord) {
        machine.shrinkers.unregister(record.shrinker)
        ledger.withLock { _ = $0.shrinkers.removeValue(forKey: ObjectIdentifier(record)) }
    }

    /// The whole-space subscriptions the instance holds now.
    var subscribers: [CSubscriber] { ledger.withLock { $0.subscriptions.values.map(\.subscriber) } }
}
