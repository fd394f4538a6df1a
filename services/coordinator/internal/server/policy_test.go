package server_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
	"github.com/drplane/drplane/services/coordinator/internal/auth"
	"github.com/drplane/drplane/services/coordinator/internal/server"
)

// TestPolicyCoversEveryMethod keeps the policy in step with the services:
// a method missing from it would silently need the admin role.
func TestPolicyCoversEveryMethod(t *testing.T) {
	p := server.Policy()
	for _, sd := range []grpc.ServiceDesc{
		drplanev1.TopologyService_ServiceDesc, drplanev1.FailoverService_ServiceDesc,
		drplanev1.ShardService_ServiceDesc, drplanev1.EvacuationService_ServiceDesc,
		drplanev1.AuditService_ServiceDesc, drplanev1.ReplicationService_ServiceDesc,
		drplanev1.DivergenceService_ServiceDesc, drplanev1.CityFailoverService_ServiceDesc,
	} {
		for _, m := range sd.Methods {
			name := "/" + sd.ServiceName + "/" + m.MethodName
			assert.Contains(t, p, name, "no role for %s", name)
		}
		for _, m := range sd.Streams {
			name := "/" + sd.ServiceName + "/" + m.StreamName
			assert.Contains(t, p, name, "no role for stream %s", name)
		}
	}
	assert.Equal(t, auth.RoleViewer, p[drplanev1.FailoverService_ListFailovers_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.FailoverService_ListKillSwitches_FullMethodName])
	assert.Equal(t, auth.RoleOperator, p[drplanev1.FailoverService_Switchover_FullMethodName])
	assert.Equal(t, auth.RoleAdmin, p[drplanev1.FailoverService_SetKillSwitch_FullMethodName])
	assert.Equal(t, auth.RoleAdmin, p[drplanev1.FailoverService_ClearKillSwitch_FullMethodName])
	assert.Equal(t, auth.RoleOperator, p[drplanev1.FailoverService_ReleaseFailoverHold_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.ShardService_Route_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.ShardService_WatchRoutes_FullMethodName])
	assert.Equal(t, auth.RoleAdmin, p[drplanev1.ShardService_MoveShard_FullMethodName])
	assert.Equal(t, auth.RoleAdmin, p[drplanev1.ShardService_SetDCState_FullMethodName])
	assert.Equal(t, auth.RoleOperator, p[drplanev1.EvacuationService_Evacuate_FullMethodName])
	assert.Equal(t, auth.RoleOperator, p[drplanev1.EvacuationService_Restore_FullMethodName])
	assert.Equal(t, auth.RoleOperator, p[drplanev1.EvacuationService_CancelOperation_FullMethodName])
	assert.Equal(t, auth.RoleOperator, p[drplanev1.EvacuationService_ResumeOperation_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.EvacuationService_ListOperations_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.EvacuationService_WatchOperation_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.DivergenceService_ListDivergence_FullMethodName])
	assert.Equal(t, auth.RoleOperator, p[drplanev1.DivergenceService_ResolveDivergence_FullMethodName])
	assert.Equal(t, auth.RoleOperator, p[drplanev1.CityFailoverService_FailOverDC_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.CityFailoverService_GetCityFailover_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.ShardService_AckRoutes_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.AuditService_SearchAudit_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.ReplicationService_GetReplicationStatus_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.ReplicationService_GetRequest_FullMethodName])
	assert.Equal(t, auth.RoleViewer, p[drplanev1.ReplicationService_ListDeadLetters_FullMethodName])
	assert.Equal(t, auth.RoleOperator, p[drplanev1.ReplicationService_RetryDeadLetters_FullMethodName])
}
