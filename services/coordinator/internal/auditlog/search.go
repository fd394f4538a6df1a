package auditlog

import (
	"context"
	"errors"

	"github.com/drplane/drplane/pkg/apierr"
	"github.com/drplane/drplane/pkg/docstore"
	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// Search serves AuditService from the audit index.
type Search struct {
	drplanev1.UnimplementedAuditServiceServer
	docs  docstore.Store
	index string
}

// NewSearch returns the service over index (DefaultIndex when empty) of
// docs.
func NewSearch(docs docstore.Store, index string) *Search {
	if index == "" {
		index = DefaultIndex
	}
	return &Search{docs: docs, index: index}
}

// SearchAudit finds audit events, newest first: query in query_string
// syntax, actor and action as exact filters, since ≤ time < until, paged by
// page_size and page_token.
func (s *Search) SearchAudit(ctx context.Context, req *drplanev1.SearchAuditRequest) (*drplanev1.SearchAuditResponse, error) {
	q, err := query(req)
	if err != nil {
		return nil, err
	}
	res, err := s.docs.Search(ctx, s.index, q)
	if err != nil {
		return nil, s.searchError(ctx, q, err)
	}
	resp := &drplanev1.SearchAuditResponse{Total: res.Total, NextPageToken: res.Next}
	for _, h := range res.Hits {
		ev, err := apiEvent(h.Doc)
		if err != nil {
			return nil, apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_INTERNAL, "an indexed audit event does not decode")
		}
		resp.Events = append(resp.Events, ev)
	}
	return resp, nil
}

// query turns a request into a docstore query, checking what the store
// cannot name a field for.
func query(req *drplanev1.SearchAuditRequest) (docstore.Query, error) {
	q := docstore.Query{
		Text: req.GetQuery(), TimeField: fieldTime, Sort: fieldTime, Desc: true,
		Size: int(req.GetPageSize()), After: req.GetPageToken(),
	}
	switch {
	case req.GetPageSize() < 0:
		return q, apierr.InvalidArgument("page_size", "page_size must not be negative")
	case req.GetPageSize() > docstore.MaxSize:
		return q, apierr.InvalidArgument("page_size", "page_size must be at most 1000")
	}
	if req.Since != nil {
		if err := req.GetSince().CheckValid(); err != nil {
			return q, apierr.InvalidArgument("since", "since is not a valid time: "+err.Error())
		}
		q.From = req.GetSince().AsTime()
	}
	if req.Until != nil {
		if err := req.GetUntil().CheckValid(); err != nil {
			return q, apierr.InvalidArgument("until", "until is not a valid time: "+err.Error())
		}
		q.To = req.GetUntil().AsTime()
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return q, apierr.InvalidArgument("until", "until must be after since")
	}
	terms := map[string][]string{}
	for field, vals := range map[string][]string{fieldActor: req.GetActor(), fieldAction: req.GetAction()} {
		for _, v := range vals {
			if v == "" {
				return q, apierr.InvalidArgument(field, field+" filter values must not be empty")
			}
		}
		if len(vals) > 0 {
			terms[field] = vals
		}
	}
	if len(terms) > 0 {
		q.Terms = terms
	}
	return q, nil
}

// searchError maps a failed search to an API error. A refused query is
// blamed on page_token when the same query without the token runs.
func (s *Search) searchError(ctx context.Context, q docstore.Query, err error) error {
	switch {
	case errors.Is(err, docstore.ErrBadQuery):
		reason := err.Error()
		var qe *docstore.QueryError
		if errors.As(err, &qe) {
			reason = qe.Reason
		}
		if q.After != "" {
			probe := q
			probe.After, probe.Size = "", 1
			if _, perr := s.docs.Search(ctx, s.index, probe); perr == nil {
				return apierr.InvalidArgument("page_token", "page_token is not valid for this search: "+reason)
			}
		}
		return apierr.InvalidArgument("query", "bad audit query: "+reason)
	case errors.Is(err, docstore.ErrUnavailable):
		return apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the audit store is unavailable")
	case errors.Is(err, docstore.ErrNotFound):
		return apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the audit index does not exist yet")
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return apierr.Wrap(err, drplanev1.ErrorCode_ERROR_CODE_INTERNAL, "audit search failed")
}
