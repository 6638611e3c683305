package webhooks

// mailboxEventTypes are the event types that may end a provider's mailbox
// names (Sentry's MAILBOX_EVENT_TYPES): the events its regions process.
// The list is fixed because the value comes from a request nobody has
// verified yet, and every distinct value is a mailbox of its own: an open
// set would let a sender make mailboxes without bound. A provider absent
// here does not split its mailboxes by event.
var mailboxEventTypes = map[string]map[string]bool{
	"github":            githubRegionEvents,
	"github_enterprise": githubRegionEvents,
	"gitlab":            gitlabRegionEvents,
}

// MailboxEventType returns eventType when provider's mailbox names may
// end with it, and "" (no suffix) otherwise.
func MailboxEventType(provider, eventType string) string {
	if mailboxEventTypes[provider][eventType] {
		return eventType
	}
	return ""
}
