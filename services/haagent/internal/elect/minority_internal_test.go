package elect

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestQuorumGone: only a majority of members answering without a leader
// proves that no quorum exists anywhere.
func TestQuorumGone(t *testing.T) {
	silent := memberAnswer{err: errors.New("deadline exceeded")}
	none := memberAnswer{}
	led := memberAnswer{leader: 7}
	tests := []struct {
		name    string
		members int
		answers []memberAnswer
		want    bool
	}{
		{"one of three answers, no leader: a cut-off minority looks the same", 3, []memberAnswer{none, silent, silent}, false},
		{"two of three answer, no leader", 3, []memberAnswer{none, none, silent}, true},
		{"all three answer, no leader", 3, []memberAnswer{none, none, none}, true},
		{"a member knows a leader", 3, []memberAnswer{none, none, led}, false},
		{"two of five", 5, []memberAnswer{none, none, silent, silent, silent}, false},
		{"three of five", 5, []memberAnswer{none, none, none, silent, silent}, true},
		{"the only member", 1, []memberAnswer{none}, true},
		{"no member known", 0, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, quorumGone(tc.members, tc.answers))
		})
	}
}
