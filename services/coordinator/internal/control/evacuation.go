package control

import (
	"context"

	"github.com/drplane/drplane/pkg/apierr"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Evacuation serves EvacuationService. Until the evacuation workflow is
// wired in, every call answers UNIMPLEMENTED. Moving single shards (drctl
// shards move) and setting a DC's state (drctl dc set-state) work through
// ShardService.
type Evacuation struct {
	drplanev1.UnimplementedEvacuationServiceServer
}

func evacuationUnimplemented(what string) error {
	return apierr.Newf(drplanev1.ErrorCode_ERROR_CODE_UNIMPLEMENTED,
		"%s is not implemented in this release: the evacuation workflow does not exist yet; "+
			"move shards one by one with ShardService.MoveShard (drctl shards move) and set the DC's state with SetDCState (drctl dc set-state)", what)
}

// Evacuate answers UNIMPLEMENTED.
func (Evacuation) Evacuate(context.Context, *drplanev1.EvacuateRequest) (*drplanev1.EvacuateResponse, error) {
	return nil, evacuationUnimplemented("Evacuate")
}

// Restore answers UNIMPLEMENTED.
func (Evacuation) Restore(context.Context, *drplanev1.RestoreRequest) (*drplanev1.RestoreResponse, error) {
	return nil, evacuationUnimplemented("Restore")
}
