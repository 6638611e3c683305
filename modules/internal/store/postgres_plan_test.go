package store

import (
	"slices"
	"testing"
)

func TestPlanInsert(t *testing.T) {
	p := func(mailbox, key string) NewPayload { return NewPayload{MailboxName: mailbox, DeliveryKey: key} }
	tests := []struct {
		name      string
		batch     []NewPayload
		wantOrder []int
		wantRank  []int32
	}{
		{"no keys: batch order", []NewPayload{p("m", ""), p("m", ""), p("n", "")}, []int{0, 1, 2}, []int32{1, 2, 3}},
		{"keys sorted, ids by batch position", []NewPayload{p("m", "c"), p("m", "a"), p("m", "b")}, []int{1, 2, 0}, []int32{2, 3, 1}},
		{"mailbox before key, byte order", []NewPayload{p("n", "a"), p("m", "b"), p("M", "z")}, []int{2, 1, 0}, []int32{3, 2, 1}},
		{"unkeyed first, in batch order", []NewPayload{p("m", "b"), p("m", ""), p("m", "a"), p("m", "")}, []int{1, 3, 2, 0}, []int32{2, 4, 3, 1}},
		{"a repeated key is sent once, its first", []NewPayload{p("m", "b"), p("m", "a"), p("m", "b"), p("n", "b")}, []int{1, 0, 3}, []int32{2, 1, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := planInsert(tc.batch)
			if !slices.Equal(got.order, tc.wantOrder) || !slices.Equal(got.rank, tc.wantRank) {
				t.Fatalf("planInsert = order %v rank %v, want %v %v", got.order, got.rank, tc.wantOrder, tc.wantRank)
			}
		})
	}
}
