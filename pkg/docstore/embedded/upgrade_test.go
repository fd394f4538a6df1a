package embedded

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/blevesearch/bleve/v2"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/docstore"
)

// TestUpgradeOldFormat opens an index written the old way (sources under
// internal keys, no format key): the store rebuilds it, and its documents
// read, search and merge as before.
func TestUpgradeOldFormat(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := docstore.Mapping{"actor": docstore.Keyword}
	im, err := bleveMapping(m)
	require.NoError(t, err)
	bi, err := bleve.New(filepath.Join(dir, "audit"), im)
	require.NoError(t, err)
	rawMapping, err := json.Marshal(m)
	require.NoError(t, err)
	b := bi.NewBatch()
	b.SetInternal([]byte(mappingKey), rawMapping)
	for id, src := range map[string]string{
		"1": `{"actor":"alice","note":"first"}`,
		"2": `{"actor":"bob","note":"second"}`,
	} {
		var doc map[string]any
		require.NoError(t, json.Unmarshal([]byte(src), &doc))
		require.NoError(t, b.Index(id, map[string]any{"actor": doc["actor"]}))
		b.SetInternal([]byte(srcPrefix+id), []byte(src))
	}
	require.NoError(t, bi.Batch(b))
	require.NoError(t, bi.Close())

	s, err := Open(Options{Dir: dir, Logger: zerolog.Nop()})
	require.NoError(t, err)
	got, err := s.Get(ctx, "audit", "2")
	require.NoError(t, err)
	require.JSONEq(t, `{"actor":"bob","note":"second"}`, string(got))
	r, err := s.Search(ctx, "audit", docstore.Query{Text: "actor:alice"})
	require.NoError(t, err)
	require.Len(t, r.Hits, 1)
	require.JSONEq(t, `{"actor":"alice","note":"first"}`, string(r.Hits[0].Doc))
	res, err := s.Bulk(ctx, "audit", []docstore.Op{{ID: "1", Doc: json.RawMessage(`{"note":"merged"}`), Merge: true}})
	require.NoError(t, err)
	require.NoError(t, res.Err())
	require.NoError(t, s.Close())

	// Reopened, it is in the current format and the old keys are gone.
	bi, err = bleve.Open(filepath.Join(dir, "audit"))
	require.NoError(t, err)
	format, err := bi.GetInternal([]byte(formatKey))
	require.NoError(t, err)
	require.Equal(t, formatCurrent, string(format))
	old, err := bi.GetInternal([]byte(srcPrefix + "1"))
	require.NoError(t, err)
	require.Nil(t, old)
	src, err := readSource(bi, "1")
	require.NoError(t, err)
	require.JSONEq(t, `{"actor":"alice","note":"merged"}`, string(src))
	require.NoError(t, bi.Close())
}
