package elect

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// memberAnswer is what one etcd member said of its raft leader.
type memberAnswer struct {
	endpoint string
	err      error  // no answer
	leader   uint64 // 0: the member knows no leader
}

// quorumGone reports whether the answers prove that etcd has no quorum
// anywhere: a majority of its members answered, none of them with a leader.
// A quorum needs a majority of the members, which would include one of
// them. Fewer answers prove nothing: the silent members may be a majority
// with a leader, cut off from this agent (and from the member it talks to).
func quorumGone(members int, answers []memberAnswer) bool {
	leaderless := 0
	for _, a := range answers {
		switch {
		case a.err != nil:
		case a.leader != 0:
			return false
		default:
			leaderless++
		}
	}
	return members > 0 && leaderless >= members/2+1
}

// learnMembers returns the client URL of every voting etcd member, read
// while etcd has a quorum (the tenure just began); nil when it cannot be
// read (the client's endpoints stand in then).
func (t *term) learnMembers(ctx context.Context) []string {
	mctx, cancel := context.WithTimeout(ctx, t.e.opTimeout())
	defer cancel()
	resp, err := t.e.o.Client.MemberList(mctx)
	if err != nil {
		if ctx.Err() == nil {
			t.log.Warn().Err(err).Msg("could not list the etcd members; judging quorum by the client's endpoints")
		}
		return nil
	}
	var urls []string
	for _, m := range resp.Members {
		if m.IsLearner {
			continue
		}
		if len(m.ClientURLs) == 0 {
			urls = append(urls, "") // a member not started yet: counts, cannot answer
			continue
		}
		urls = append(urls, m.ClientURLs[0])
	}
	return urls
}

// askMembers asks every member, within budget, whether it knows a raft
// leader (Maintenance.Status, which a member answers by itself).
func (t *term) askMembers(ctx context.Context, budget time.Duration) []memberAnswer {
	var eps []string
	if m := t.members.Load(); m != nil {
		eps = *m
	}
	if len(eps) == 0 {
		eps = t.e.o.Client.Endpoints()
	}
	answers := make([]memberAnswer, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		answers[i].endpoint = ep
		if ep == "" {
			answers[i].err = fmt.Errorf("no client URL")
			continue
		}
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, budget)
			defer cancel()
			resp, err := t.e.o.Client.Status(sctx, ep)
			if err != nil {
				answers[i].err = err
				return
			}
			answers[i].leader = resp.Leader
		})
	}
	wg.Wait()
	return answers
}

// singlePointLimit is the watchdog's check of a single-point primary: once
// the lease has gone SinglePointLimit without a renewal, it asks every
// member and returns why the agent must fence itself, "" when a majority of
// the members answered without a leader (no quorum anywhere: nobody can
// promote, the masters keep serving).
func (t *term) singlePointLimit(ctx context.Context, age time.Duration) string {
	limit := t.e.o.SinglePointLimit
	if limit <= 0 || age < limit {
		return ""
	}
	answers := t.askMembers(ctx, t.tm.window())
	if quorumGone(len(answers), answers) {
		return ""
	}
	var said []string
	for _, a := range answers {
		switch {
		case a.err != nil:
			said = append(said, a.endpoint+": no answer")
		case a.leader != 0:
			said = append(said, fmt.Sprintf("%s: leader %x", a.endpoint, a.leader))
		default:
			said = append(said, a.endpoint+": no leader")
		}
	}
	sort.Strings(said)
	return fmt.Sprintf("single-point primary for %s (limit %s) and no majority of the %d etcd members answers without a leader (%s): "+
		"a majority out of reach may elect another agent, which may promote",
		age.Round(time.Millisecond), limit, len(answers), strings.Join(said, "; "))
}
