import ArgumentParser

@main
struct MMULab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mmulab",
        abstract: "A user-space lab for secondary MMUs: find MMU-notifier races before the kernel does.",
        discussion: """
            Today the lab has its notifier core: the synchronisation layer with context \
            checks, whole-space and interval subscriptions, and shrinkers. `mmulab demo` \
            storms that core with mirror devices and checks that no device keeps a \
            stale translation. The primary MMU model, the plugin ABI and the reclaim \
            scenarios arrive in later releases.
            """,
        subcommands: [DemoCommand.self, EventsCommand.self],
        defaultSubcommand: DemoCommand.self
    )
}
