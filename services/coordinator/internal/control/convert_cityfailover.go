package control

import (
	"time"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/cityfail"
)

func cityFailoverStateToProto(s cityfail.State) drplanev1.CityFailoverState {
	switch s {
	case cityfail.Pending:
		return drplanev1.CityFailoverState_CITY_FAILOVER_STATE_PENDING
	case cityfail.Running:
		return drplanev1.CityFailoverState_CITY_FAILOVER_STATE_RUNNING
	case cityfail.Done:
		return drplanev1.CityFailoverState_CITY_FAILOVER_STATE_DONE
	case cityfail.Held:
		return drplanev1.CityFailoverState_CITY_FAILOVER_STATE_HELD
	case cityfail.Failed:
		return drplanev1.CityFailoverState_CITY_FAILOVER_STATE_FAILED
	}
	return drplanev1.CityFailoverState_CITY_FAILOVER_STATE_UNSPECIFIED
}

// ms is d in milliseconds, -1 kept for "unknown".
func ms(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

func cityFailoverToProto(r cityfail.Record, shards bool) *drplanev1.CityFailover {
	out := &drplanev1.CityFailover{
		Id: r.ID, Dc: r.DC, Trigger: r.Trigger, AcceptLoss: r.AcceptLoss, State: cityFailoverStateToProto(r.State),
		Verdict: r.Verdict, Reason: r.Reason, Witnesses: r.Witnesses, LeaseGoneSince: ts(r.LeaseGoneSince),
		RequestedBy: r.RequestedBy, CreatedAt: ts(r.CreatedAt), StartedAt: ts(r.StartedAt), FlippedAt: ts(r.FlippedAt),
		FlipMs: time.Duration(r.FlipTook).Milliseconds(), FinishedAt: ts(r.FinishedAt), Leader: r.Leader, Held: r.Held,
		Error: r.Error, ShardsTotal: i32(len(r.Shards)), ShardsFlipped: i32(r.Flipped()),
		Estimate: &drplanev1.RPOEstimate{RequestIds: r.Estimate.Requests, RequestsTotal: int64(r.Estimate.RequestsTotal),
			MaxLagBoundMs: ms(time.Duration(r.Estimate.MaxLagBound))},
	}
	if x := r.Exact; x != nil {
		e := &drplanev1.RPOExact{ComputedAt: ts(x.ComputedAt), RequestsTotal: int64(x.RequestsTotal)}
		for _, l := range x.Requests {
			e.Requests = append(e.Requests, &drplanev1.LostRequest{RequestId: l.RequestID, Gtid: l.GTID, Keyspace: l.Keyspace,
				Shard: l.Shard, OwnerDc: l.Owner, DivergenceId: l.DivergenceID})
		}
		out.Exact = e
	}
	if !shards {
		return out
	}
	for _, s := range r.Shards {
		out.Shards = append(out.Shards, &drplanev1.CityFailoverShard{
			Keyspace: s.Keyspace, Shard: i32(s.Shard), FromDc: s.From, ToDc: s.To, Fence: s.Fence,
			LagBoundMs: ms(time.Duration(s.LagBound)), LedgerMissing: i32(s.LedgerMissing), RequestIds: s.Requests,
			Flipped: s.Flipped, Held: s.Held,
		})
	}
	return out
}
