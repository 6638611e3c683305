package store

import "math"

// dueMailboxes answers DueMailboxes exactly (the oldest due rows first)
// while keeping the cost bounded by the answer in the usual backlogs:
//
//  1. A loose index scan over the heads of at most visitCap mailboxes.
//     With few mailboxes (1,000,000 rows over 100 mailboxes) it sees them
//     all and its answer is exact, at one index probe per mailbox.
//  2. With more mailboxes than that, a window of the oldest rows in id
//     order, keeping each mailbox's due row. When the window yields limit
//     mailboxes they are exactly the oldest (any other mailbox's due row
//     comes after the window). With 100,000 shallow mailboxes the heads
//     are the oldest rows, so this costs about one probe per returned
//     mailbox.
//  3. Otherwise (many mailboxes and old rows that are not due, e.g. deep
//     strict mailboxes stuck behind a backed-off head), the full loose
//     index scan: one probe per mailbox.
func dueMailboxes(limit int,
	heads func(visitCap int) (names []string, visited int, err error),
	window func(rows int) ([]string, error),
) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	visitCap := 2*limit + 100
	names, visited, err := heads(visitCap)
	if err != nil || visited < visitCap {
		return names, err
	}
	names, err = window(8*limit + 100)
	if err != nil || len(names) >= limit {
		return names, err
	}
	names, _, err = heads(math.MaxInt32)
	return names, err
}
