package control_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/drplane/drplane/pkg/audit"
	"github.com/drplane/drplane/pkg/state"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/control"
)

// TestReleaseFailoverHold: status shows the agent's hold; an operator
// releases it (audited, recorded for the agent); viewers may not; bad
// requests name the field.
func TestReleaseFailoverHold(t *testing.T) {
	a := startAPI(t)
	ctx := t.Context()
	until := time.Date(2026, 1, 2, 3, 14, 0, 0, time.UTC)
	hold := &state.FailoverHold{Reason: state.HoldUnsettled, Detail: "the master promoted 3s ago failed",
		Since: until.Add(-10 * time.Minute), Until: until}
	require.NoError(t, a.st.PutMemory(ctx, state.ClusterMemory{DC: "dc-a1", Cluster: "main", Hold: hold}, nil))

	st := &control.Topology{Store: a.st}
	resp, err := st.GetStatus(ctx, &drplanev1.GetStatusRequest{})
	require.NoError(t, err)
	var held *drplanev1.FailoverHold
	for _, dc := range resp.GetDcs() {
		for _, cl := range dc.GetClusters() {
			if dc.GetName() == "dc-a1" {
				held = cl.GetFailoverHold()
			} else {
				assert.Nil(t, cl.GetFailoverHold(), "%s/%s is not held", dc.GetName(), cl.GetName())
			}
		}
	}
	require.NotNil(t, held)
	assert.Equal(t, state.HoldUnsettled, held.GetReason())
	assert.Equal(t, until, held.GetUntil().AsTime())

	_, err = a.fo.ReleaseFailoverHold(as(t, viewerToken), &drplanev1.ReleaseFailoverHoldRequest{Dc: "dc-a1", Cluster: "main", Reason: "x"})
	requireAPIError(t, err, codes.PermissionDenied, drplanev1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "")
	_, err = a.fo.ReleaseFailoverHold(as(t, operatorToken), &drplanev1.ReleaseFailoverHoldRequest{Dc: "dc-a1", Cluster: "main"})
	requireAPIError(t, err, codes.InvalidArgument, drplanev1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "reason")
	_, err = a.fo.ReleaseFailoverHold(as(t, operatorToken), &drplanev1.ReleaseFailoverHoldRequest{Dc: "dc-a1", Cluster: "nope", Reason: "x"})
	requireAPIError(t, err, codes.NotFound, drplanev1.ErrorCode_ERROR_CODE_NOT_FOUND, "cluster")
	_, _, err = state.Get[state.HoldRelease](ctx, a.st, a.st.HoldReleaseKey("dc-a1", "main"))
	require.ErrorIs(t, err, state.ErrNotFound, "refused releases record nothing")

	rel, err := a.fo.ReleaseFailoverHold(as(t, operatorToken), &drplanev1.ReleaseFailoverHoldRequest{
		Dc: "dc-a1", Cluster: "main", Reason: "disk replaced"})
	require.NoError(t, err)
	assert.True(t, rel.GetHeld())
	assert.Equal(t, state.HoldUnsettled, rel.GetHold().GetReason())
	rec, _, err := state.Get[state.HoldRelease](ctx, a.st, a.st.HoldReleaseKey("dc-a1", "main"))
	require.NoError(t, err)
	assert.Equal(t, "operator:ops-operator", rec.By)
	assert.Equal(t, "disk replaced", rec.Reason)
	assert.Equal(t, rel.GetReleasedAt().AsTime(), rec.At)

	// REST, on a cluster that is not held.
	code, body := a.rest(t, http.MethodPost, "/v1/clusters/dc-b1/main:releaseFailoverHold", operatorToken, `{"reason": "drill"}`)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	assert.NotContains(t, string(body), `"held":true`)

	evs := a.events(t, control.ActionFailoverRelease)
	var ok, denied int
	for _, e := range evs {
		switch e.Outcome {
		case audit.OutcomeOK:
			ok++
		case audit.OutcomeDenied:
			denied++
		}
	}
	assert.Equal(t, 2, ok, "both releases audited: %+v", evs)
	assert.Equal(t, 1, denied, "the viewer's attempt audited")
}
