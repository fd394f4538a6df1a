package embedded_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/docstore/embedded"
	"github.com/drplane/drplane/pkg/docstore/storetest"
)

func TestContractInMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) docstore.Store {
		s, err := embedded.Open(embedded.Options{Logger: zerolog.Nop()})
		require.NoError(t, err)
		return s
	})
}

func TestContractOnDisk(t *testing.T) {
	storetest.Run(t, func(t *testing.T) docstore.Store {
		s, err := embedded.Open(embedded.Options{Dir: t.TempDir(), Logger: zerolog.Nop()})
		require.NoError(t, err)
		return s
	})
}

// TestReopen checks that documents, the mapping and an added field survive
// closing and reopening the store.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := embedded.Open(embedded.Options{Dir: dir, Logger: zerolog.Nop()})
	require.NoError(t, err)
	require.NoError(t, s.EnsureIndex(ctx, "audit", docstore.Mapping{"actor": docstore.Keyword}))
	res, err := s.Bulk(ctx, "audit", []docstore.Op{
		{ID: "1", Doc: json.RawMessage(`{"actor":"alice","note":"first write"}`)},
		{ID: "2", Doc: json.RawMessage(`{"actor":"bob","note":"second write"}`)},
	})
	require.NoError(t, err)
	require.NoError(t, res.Err())
	require.NoError(t, s.Close())

	s, err = embedded.Open(embedded.Options{Dir: dir, Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	got, err := s.Get(ctx, "audit", "2")
	require.NoError(t, err)
	require.JSONEq(t, `{"actor":"bob","note":"second write"}`, string(got))
	r, err := s.Search(ctx, "audit", docstore.Query{Text: "actor:alice"})
	require.NoError(t, err)
	require.EqualValues(t, 1, r.Total)

	// The field was stored but unmapped; adding it indexes existing documents.
	r, err = s.Search(ctx, "audit", docstore.Query{Text: "note:second"})
	require.NoError(t, err)
	require.EqualValues(t, 0, r.Total)
	require.NoError(t, s.EnsureIndex(ctx, "audit", docstore.Mapping{"actor": docstore.Keyword, "note": docstore.Text}))
	r, err = s.Search(ctx, "audit", docstore.Query{Text: "note:second"})
	require.NoError(t, err)
	require.Equal(t, "2", r.Hits[0].ID)
	require.NoError(t, s.Close())

	s, err = embedded.Open(embedded.Options{Dir: dir, Logger: zerolog.Nop()})
	require.NoError(t, err)
	r, err = s.Search(ctx, "audit", docstore.Query{Text: "note:first"})
	require.NoError(t, err)
	require.EqualValues(t, 1, r.Total)
	require.ErrorIs(t, s.EnsureIndex(ctx, "audit", docstore.Mapping{"note": docstore.Keyword}), docstore.ErrMappingConflict)
}
