import ArgumentParser
import MMUNotifier

struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "List the notifier event reasons and the Linux event each one models."
    )

    func run() {
        let width = NotifierEvent.allCases.map(\.description.count).max() ?? 0
        print("event".padded(to: width) + "  Linux enum mmu_notifier_event")
        for event in NotifierEvent.allCases {
            print(event.description.padded(to: width) + "  " + event.linuxEvent)
        }
    }
}
